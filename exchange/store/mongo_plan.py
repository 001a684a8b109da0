"""MongoDB reads as finds: the plans of sqlite_plan.py, each scan one indexed `find` with a
sort on date_added (ascending, or descending for `newest_first`) and a limit, never an
aggregation.

A reader who may see everything: one find (or one per type, merged). A reader who may not:
one find per TLP rank it may see (and per type) on an index that leads with (coll, rank,
added) or (coll, type, rank, added), plus one per rank on (coll, pusher, rank, added) for its
own pushes, each cut to the page size and merged by date_added in Python. The visibility
predicate is part of each find's filter, so the server applies it inside the index scan.

Reads that find versions by something else than their rank (a list of ids, the versions
that reference an id, a search) are one find on that thing's index, with the reader's whole
predicate and the pages' filters in the same filter, so a page still holds `limit` versions
and `more` is right. The pages' filters are fields decided at write time (mongo.py `_facts`):
`src` (created_by_ref), `vfrom`/`vuntil` (an indicator's validity), `terms` (exact values and
names; a CIDR is one range of them), `texts` (domains and URLs: a prefix is one range of
them) and `grams` (their trigrams: a substring needs all of the query's, then the text is
confirmed with an escaped `$regex` on `texts` in the same find).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..model import ALL, FIRST, LAST, Query, Search
from . import refuse_unknown
from .terms import grams

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
    # Who references what: raising a referenced object's rank finds its referrers, and the
    # object pages read an object's referrers in date_added order (refers_to).
    ("referrers", [("coll", 1), ("refs", 1), ("added", 1)], {}),
    ("source", [("coll", 1), ("src", 1), ("added", 1)], {}),
    # The search: each a multikey index whose point or range on the array field comes with
    # date_added order (an equality on one term or one trigram reads newest first directly).
    ("terms", [("coll", 1), ("terms", 1), ("added", 1)], {}),
    ("texts", [("coll", 1), ("texts", 1), ("added", 1)], {}),
    ("grams", [("coll", 1), ("grams", 1), ("added", 1)], {}),
]
# Indexes of earlier versions of this store, dropped at open.
RETIRED = ("refs",)

# The Query fields the plans below answer; any other field set makes a read fail rather than
# be ignored (a filter silently dropped would show an analyst what they did not ask for).
HANDLED = frozenset({"limit", "ids", "types", "versions", "spec_versions", "after",
                     "refers_to", "newest_first", "before", "ranks", "source", "valid_at",
                     "search", "collection", "visibility"})


@dataclass(frozen=True, slots=True)
class Scan:
    """One find: its filter, sorted by date_added (descending when `descending`), at most
    `limit` (0: no limit)."""

    filter: Filter
    limit: int
    descending: bool = False


def scans(query: Query, *, every: bool = False) -> list[Scan]:
    """The finds of one read; their results merged by date_added and cut to the page. `every`
    (a delete) lifts the page size and takes every spec_version of what it matches."""
    refuse_unknown(query, HANDLED)
    limit = 0 if every else query.limit + 1
    view = query.visibility
    if query.refers_to or query.search is not None or query.ids:
        return [Scan(_one_by_one(query, every), limit, query.newest_first)]
    if view is None or view.everything:
        return _everything(query, limit, every)
    return _restricted(query, limit, every)


def _and(*terms: Filter) -> Filter:
    kept = [t for t in terms if t]
    return kept[0] if len(kept) == 1 else {"$and": kept} if kept else {}


def _common(query: Query, every: bool) -> Filter:
    """The spec_version, paging and filter terms every scan shares."""
    term: Filter = {}
    if query.spec_versions:
        term["spec"] = {"$in": list(query.spec_versions)}
    elif not every:
        term["sl"] = True
    added: Filter = {}
    if query.after is not None:
        added["$gt"] = query.after
    if query.before is not None:
        added["$lt"] = query.before
    if added:
        term["added"] = added
    if query.source:
        term["src"] = query.source
    if query.valid_at is not None:  # as SQLite: valid from (inclusive) until (exclusive)
        term["vfrom"] = {"$lte": query.valid_at}
        term["vuntil"] = {"$gt": query.valid_at}
    return term


def _types(query: Query) -> tuple[str, ...]:
    """Only indicators have a validity: asking for it asks for indicators."""
    if query.valid_at is not None and not query.types:
        return ("indicator",)
    return query.types


def _ranks(query: Query) -> Filter:
    return {"rank": {"$in": list(query.ranks)}} if query.ranks else {}


def _selectors(versions: tuple[str, ...]) -> Filter:
    """match[version] as flags and version keys ({} when every version is wanted)."""
    if ALL in versions:
        return {}
    terms: list[Filter] = [{flag: True} for flag in (LAST, FIRST) if flag in versions]
    keys = [v for v in versions if v not in (LAST, FIRST)]
    if keys:
        terms.append({"vkey": {"$in": keys}})
    return terms[0] if len(terms) == 1 else {"$or": terms}


def _everything(query: Query, limit: int, every: bool) -> list[Scan]:
    base = _and({"coll": query.collection}, _selectors(query.versions), _ranks(query),
                _common(query, every))
    # one range per type on (coll, type, added), merged
    return [Scan(_and(base, {"type": kind}), limit, query.newest_first)
            for kind in _types(query)] or [Scan(base, limit, query.newest_first)]


# -- reads that find versions by ids, references or search terms -----------------------------
def _one_by_one(query: Query, every: bool) -> Filter:
    """One find on the index of what the read names (ids, a referenced id, search terms), with
    the reader's whole predicate and the filters checked on each version it finds."""
    if query.refers_to and (query.ids or query.types):
        raise ValueError("refers_to does not combine with ids or types")
    found: Filter = {}
    if query.ids:
        found["id"] = {"$in": list(query.ids)}
    if query.refers_to:
        found["refs"] = query.refers_to
    if _types(query):  # match[id] and match[type] together: both must hold
        found["type"] = {"$in": list(_types(query))}
    view = query.visibility
    if view is None or view.everything:
        seen = _and(_selectors(query.versions), _ranks(query))
    else:
        seen = _visible(query, view.max_rank, view.pusher or None)
    return _and({"coll": query.collection}, found, _searched(query.search), seen,
                _common(query, every))


def _searched(search: Search | None) -> Filter:
    if search is None:
        return {}
    if search.text and search.prefix:  # one range of the texts index: the text's successors
        return {"texts": {"$elemMatch": {"$gte": search.text, "$lt": _after(search.text)}}}
    if search.text:
        # Every trigram of the text (the index finds the versions holding one of them, newest
        # first), then the substring itself in one of the version's texts.
        return {"grams": {"$all": sorted(grams(search.text))},
                "texts": {"$regex": re.escape(search.text)}}
    if search.low:  # a CIDR: one range of terms, held by one element of the array
        return {"terms": {"$elemMatch": {"$gte": search.low, "$lte": search.high}}}
    if len(search.terms) == 1:
        return {"terms": search.terms[0]}
    return {"terms": {"$in": list(search.terms)}}


def _after(text: str) -> str:
    """The least string above every string that starts with `text` (BSON strings compare as
    UTF-8 bytes, which is code point order)."""
    point = ord(text[-1]) + 1
    if 0xD800 <= point <= 0xDFFF:  # surrogates are not characters: the next one is
        point = 0xE000
    return text[:-1] + chr(point)


# -- a reader who may not see everything -------------------------------------------------------
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


def _visible(query: Query, t: int, me: str | None) -> Filter:
    """The whole visibility predicate of one version for a restricted reader: at or below t
    as `_within` says, or its own push; and the TLP filter."""
    either: list[Filter] = [_and({"rank": {"$lte": t}}, _within(query, t, me))]
    if me:
        either.append(_and({"pusher": me}, _selectors(query.versions)))
    return _and({"$or": either} if len(either) > 1 else either[0], _ranks(query))


def _restricted(query: Query, limit: int, every: bool) -> list[Scan]:
    view = query.visibility
    assert view is not None
    t, me = view.max_rank, view.pusher or None
    seen = _within(query, t, me)
    own = _selectors(query.versions)  # its own pushes, any rank
    common = _common(query, every)
    types = _types(query)
    found: list[Scan] = []
    for kind in types or (None,):
        for rank in range(t + 1):
            if query.ranks and rank not in query.ranks:
                continue
            head: Filter = {"coll": query.collection}
            if kind is not None:
                head["type"] = kind
            head["rank"] = rank
            found.append(Scan(_and(head, seen, common), limit, query.newest_first))
    if me:
        # Its own pushes, less what the scans above already give: above t all of them; at or
        # below t (an onward view skips H2 ones there) those the scans above left out.
        ranks = range(5) if view.onward else range(t + 1, 5)
        for rank in ranks:
            if (rank <= t and not seen) or (query.ranks and rank not in query.ranks):
                continue
            head = {"coll": query.collection, "pusher": me, "rank": rank}
            if types:
                head["type"] = {"$in": list(types)}
            found.append(Scan(_and(head, own, {"$nor": [seen]} if rank <= t else {},
                                   common), limit, query.newest_first))
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
