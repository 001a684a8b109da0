"""MongoDB reads as finds: the plans of sqlite_plan.py, each scan one indexed `find` with a
sort on date_added and a limit, never an aggregation.

A reader who may see everything: one find (or one per type, merged). A reader who may not:
one find per TLP rank it may see (and per type) on an index that leads with (coll, rank,
added) or (coll, type, rank, added), plus one per rank on (coll, pusher, rank, added) for its
own pushes, each cut to the page size and merged by date_added in Python. The visibility
predicate is part of each find's filter, so the server applies it inside the index scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..model import ALL, FIRST, LAST, Query

Filter = dict[str, Any]

# (name, keys): created idempotently at open. Every read below has an equality prefix on one
# of these and a range (or sort) on `added`.
INDEXES: list[tuple[str, list[tuple[str, int]], dict[str, Any]]] = [
    ("added", [("coll", 1), ("added", 1)], {"unique": True}),
    ("id", [("coll", 1), ("id", 1), ("vkey", 1)], {}),
    ("latest", [("coll", 1), ("last", 1), ("sl", 1), ("added", 1)], {}),
    ("first", [("coll", 1), ("first", 1), ("sl", 1), ("added", 1)], {}),
    ("type", [("coll", 1), ("type", 1), ("added", 1)], {}),
    ("rank", [("coll", 1), ("rank", 1), ("added", 1)], {}),
    ("type_rank", [("coll", 1), ("type", 1), ("rank", 1), ("added", 1)], {}),
    ("pusher", [("coll", 1), ("pusher", 1), ("rank", 1), ("added", 1)], {}),
    # Who references what: raising a referenced object's rank finds its referrers.
    ("refs", [("coll", 1), ("refs", 1)], {}),
]


@dataclass(frozen=True, slots=True)
class Scan:
    """One find: its filter, sorted by date_added, at most `limit` (0: no limit)."""

    filter: Filter
    limit: int


def scans(query: Query, *, every: bool = False) -> list[Scan]:
    """The finds of one read; their results merged by date_added and cut to the page. `every`
    (a delete) lifts the page size and takes every spec_version of what it matches."""
    limit = 0 if every else query.limit + 1
    view = query.visibility
    if view is None or view.everything:
        return _everything(query, limit, every)
    return _restricted(query, limit, every)


def _and(*terms: Filter) -> Filter:
    kept = [t for t in terms if t]
    return kept[0] if len(kept) == 1 else {"$and": kept} if kept else {}


def _common(query: Query, every: bool) -> Filter:
    """The spec_version and paging terms every scan shares."""
    term: Filter = {}
    if query.spec_versions:
        term["spec"] = {"$in": list(query.spec_versions)}
    elif not every:
        term["sl"] = True
    if query.after is not None:
        term["added"] = {"$gt": query.after}
    return term


def _selectors(versions: tuple[str, ...]) -> Filter:
    """match[version] as flags and version keys ({} when every version is wanted)."""
    if ALL in versions:
        return {}
    terms: list[Filter] = [{flag: True} for flag in (LAST, FIRST) if flag in versions]
    keys = [v for v in versions if v not in (LAST, FIRST)]
    if keys:
        terms.append({"vkey": {"$in": keys}})
    return terms[0] if len(terms) == 1 else {"$or": terms}


def _ids(query: Query) -> Filter:
    term: Filter = {"id": {"$in": list(query.ids)}}
    if query.types:  # match[id] and match[type] together: both must hold
        term["type"] = {"$in": list(query.types)}
    return term


def _everything(query: Query, limit: int, every: bool) -> list[Scan]:
    base = _and({"coll": query.collection}, _selectors(query.versions), _common(query, every))
    if query.ids:
        return [Scan(_and(base, _ids(query)), limit)]
    if query.types:  # one range per type on (coll, type, added), merged
        return [Scan(_and(base, {"type": kind}), limit) for kind in query.types]
    return [Scan(base, limit)]


def _within(query: Query, t: int, me: str | None) -> Filter:
    """The versions at or below the reader's rank t it may see, as one filter term."""
    view = query.visibility
    assert view is not None
    terms: list[Filter] = []
    versions = query.versions
    if ALL not in versions:
        # The newest version at or below t, unless the reader pushed a newer one (its own
        # scan gives that).
        if LAST in versions:
            terms.append(_and({"newer": {"$gt": t}},
                              {"$or": [{"last": True}, {"top": {"$ne": me}}]} if me else {}))
        if FIRST in versions:
            terms.append(_and({"older": {"$gt": t}},
                              {"$or": [{"first": True}, {"bottom": {"$ne": me}}]} if me else {}))
        keys = [v for v in versions if v not in (LAST, FIRST)]
        if keys:
            terms.append({"vkey": {"$in": keys}})
    seen: Filter = terms[0] if len(terms) == 1 else {"$or": terms} if terms else {}
    extra: Filter = {}
    if view.onward:
        extra["h2"] = False
    if view.not_from:  # a push reads only what arrived since, not what the peer sent
        extra["pusher"] = {"$ne": view.not_from}
    return _and(seen, extra)


def _restricted(query: Query, limit: int, every: bool) -> list[Scan]:
    view = query.visibility
    assert view is not None
    t, me = view.max_rank, view.pusher or None
    seen = _within(query, t, me)
    own = _selectors(query.versions)  # its own pushes, any rank
    common = _common(query, every)
    if query.ids:  # a few versions of a few ids: one lookup, the whole predicate per doc
        either: list[Filter] = [_and({"rank": {"$lte": t}}, seen)]
        if me:
            either.append(_and({"pusher": me}, own))
        return [Scan(_and({"coll": query.collection}, _ids(query),
                          {"$or": either} if len(either) > 1 else either[0], common), limit)]
    found: list[Scan] = []
    for kind in query.types or (None,):
        for rank in range(t + 1):
            head: Filter = {"coll": query.collection}
            if kind is not None:
                head["type"] = kind
            head["rank"] = rank
            found.append(Scan(_and(head, seen, common), limit))
    if me:
        # Its own pushes, less what the scans above already give: above t all of them; at or
        # below t (an onward view skips H2 ones there) those the scans above left out.
        ranks = range(5) if view.onward else range(t + 1, 5)
        for rank in ranks:
            if rank <= t and not seen:
                continue
            head = {"coll": query.collection, "pusher": me, "rank": rank}
            if query.types:
                head["type"] = {"$in": list(query.types)}
            found.append(Scan(_and(head, own, {"$nor": [seen]} if rank <= t else {},
                                   common), limit))
    return found


def expired_scans(collection: str, cutoffs: list[int | None] | tuple[int | None, ...],
                  limit: int) -> list[Scan]:
    """Retention: one range of the (coll, added) index per distinct cutoff, for the ranks
    that cutoff applies to (`cutoffs[rank]`; None keeps that rank)."""
    groups: dict[int, list[int]] = {}
    for rank, cutoff in enumerate(cutoffs):
        if cutoff is not None:
            groups.setdefault(cutoff, []).append(rank)
    return [Scan({"coll": collection, "added": {"$lt": cutoff}, "base": {"$in": ranks}}, limit)
            for cutoff, ranks in groups.items()]
