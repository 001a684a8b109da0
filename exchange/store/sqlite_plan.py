"""SQLite reads as SQL: every read is index range scans in date_added order, never a
whole-collection pass, and a reader's visibility is applied inside those scans.

A reader who may see everything reads one range of one index (the newest versions, the
oldest, all, one type, or a list of ids). A reader who may not is served by one range per
TLP rank it may see on an index that leads with the rank, plus one per rank on the index of
its own pushes, each cut to the page size and merged by date_added: a page costs the same
whatever share of the collection the reader may see.

Selectors in a restricted view (rules.py explains the columns), for a reader cleared to t:
- last: `rank <= t < newer` (the newest version at or below t), unless the reader pushed the
  newest version, which it then gets whatever its rank (its own scan: `last = 1`, above t);
- first: the same with `older`;
- all, or explicit versions: `rank <= t`, and its own pushes above t.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from ..model import ALL, FIRST, LAST, Query


@functools.lru_cache(maxsize=8192)  # a write hashes the same few referenced ids again and again
def id_hash(object_id: str) -> int:
    """A signed 64-bit hash of an id: index keys stay small and inserts cheap, where the id
    text (about 50 bytes, random) made the id index the main cost of every write."""
    digest = hashlib.blake2b(object_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def select(key: int, query: Query, with_body: bool, me: int, *, every: bool = False,
           not_from: int = -1) -> tuple[str, list[Any]]:
    """SQL and arguments for one read. `me` is the reader's pusher key (-1: none), `not_from`
    the pusher key whose versions are left out (-1: none). `every` (a delete) lifts the page
    size and takes every spec_version of what it matches."""
    limit = -1 if every else query.limit + 1
    columns = "id, version, added, spec" + (", body" if with_body else "")
    view = query.visibility
    if query.refers_to:
        return _referrers(key, query, columns, limit, every, me, not_from)
    if view is None or view.everything:
        return _everything(key, query, columns, limit, every)
    return _restricted(key, query, columns, limit, every, view.max_rank, me, view.onward,
                       not_from)


def _common(query: Query, every: bool) -> tuple[str, list[Any]]:
    """The spec_version and paging terms every scan shares."""
    where, args = "", list[Any]()
    if query.spec_versions:
        where += f" AND spec IN ({_marks(query.spec_versions)})"
        args.extend(query.spec_versions)
    elif not every:
        where += " AND spec_latest = 1"
    if query.after is not None:
        where += " AND added > ?"
        args.append(query.after)
    return where, args


def _ids(query: Query) -> tuple[str, list[Any]]:
    where = f" AND idh IN ({_marks(query.ids)}) AND id IN ({_marks(query.ids)})"
    args: list[Any] = [id_hash(i) for i in query.ids]
    args.extend(query.ids)
    if query.types:  # match[id] and match[type] together: both must hold
        where += f" AND type IN ({_marks(query.types)})"
        args.extend(query.types)
    return where, args


# -- a reader who may see everything --------------------------------------------------------
def _everything(key: int, query: Query, columns: str, limit: int,
                every: bool) -> tuple[str, list[Any]]:
    """A list of ids is looked up on the (coll, idh) index; a list of types is one range scan
    per type on (coll, type, added), merged, so a page never sorts more than types x limit
    rows; otherwise the newest, oldest or all versions by date_added."""
    where, args = "coll = ?", list[Any]([key])
    selected, selected_args = _selectors(query.versions)
    if selected:
        where += f" AND ({selected})"
        args.extend(selected_args)
    common, common_args = _common(query, every)
    where += common
    args.extend(common_args)
    if query.ids:
        more, more_args = _ids(query)
        sql = f"SELECT {columns} FROM objects INDEXED BY objects_id WHERE {where}{more} " \
              "ORDER BY added LIMIT ?"
        return sql, [*args, *more_args, limit]
    if len(query.types) == 1:
        sql = f"SELECT {columns} FROM objects INDEXED BY objects_type WHERE {where} " \
              "AND type = ? ORDER BY added LIMIT ?"
        return sql, [*args, query.types[0], limit]
    if query.types:
        scans, scan_args = [], []
        for kind in query.types:
            scans.append(f"SELECT * FROM (SELECT {columns}, added AS k FROM objects INDEXED BY "
                         f"objects_type WHERE {where} AND type = ? ORDER BY added LIMIT ?)")
            scan_args += [*args, kind, limit]
        sql = f"SELECT {columns} FROM ({' UNION ALL '.join(scans)}) ORDER BY k LIMIT ?"
        return sql, [*scan_args, limit]
    return f"SELECT {columns} FROM objects WHERE {where} ORDER BY added LIMIT ?", [*args, limit]


def _selectors(versions: tuple[str, ...]) -> tuple[str, list[Any]]:
    """match[version] as flags and version keys ('' when every version is wanted)."""
    if ALL in versions:
        return "", []
    terms = [f"{flag} = 1" for flag in (LAST, FIRST) if flag in versions]
    keys = [v for v in versions if v not in (LAST, FIRST)]
    if keys:
        terms.append(f"vkey IN ({_marks(keys)})")
    return " OR ".join(terms), keys


# -- a reader who may not ---------------------------------------------------------------------
def _restricted(key: int, query: Query, columns: str, limit: int, every: bool, t: int,
                me: int, onward: bool, not_from: int) -> tuple[str, list[Any]]:
    seen, seen_args = _within(query.versions, t, me)
    if onward:
        seen += " AND h2 = 0"
    if not_from >= 0:  # a filter inside the scan: a push reads only what arrived since
        seen += " AND pusher != ?"
        seen_args = [*seen_args, not_from]
    own, own_args = _selectors(query.versions)  # its own pushes, any rank
    own = own or "1"
    common, common_args = _common(query, every)
    if query.ids:  # a few versions of a few ids: one lookup, the whole predicate per row
        more, more_args = _ids(query)
        where = f"coll = ? AND ((rank <= ? AND {seen}) OR (pusher = ? AND ({own})))"
        sql = f"SELECT {columns} FROM objects INDEXED BY objects_id WHERE {where}{common}" \
              f"{more} ORDER BY added LIMIT ?"
        return sql, [key, t, *seen_args, me, *own_args, *common_args, *more_args, limit]

    scans: list[tuple[str, list[Any]]] = []
    for kind in query.types or (None,):
        for rank in range(t + 1):
            if kind is not None:
                index, where, args = "objects_type_rank", "coll = ? AND type = ? AND rank = ?", \
                    [key, kind, rank]
            elif query.versions == (LAST,):  # the partial index holds no superseded version
                index, where, args = "objects_rank_last", "coll = ? AND rank = ? AND " \
                    "rank < newer", [key, rank]
            else:
                index, where, args = "objects_rank", "coll = ? AND rank = ?", [key, rank]
            scans.append((f"SELECT seq, added FROM objects INDEXED BY {index} WHERE {where} "
                          f"AND {seen}{common} ORDER BY added LIMIT ?",
                          [*args, *seen_args, *common_args, limit]))
    if me >= 0:
        # Its own pushes, less what the scans above already give.
        types = f" AND type IN ({_marks(query.types)})" if query.types else ""
        # At or below t the scans above give all of its own, but the H2 ones an onward view
        # skips.
        ranks = range(5) if onward else range(t + 1, 5)
        for rank in ranks:
            scans.append((
                "SELECT seq, added FROM objects INDEXED BY objects_pusher WHERE coll = ? AND "
                f"pusher = ? AND rank = ? AND ({own}) AND NOT (rank <= ? AND {seen}){types}"
                f"{common} ORDER BY added LIMIT ?",
                [key, me, rank, *own_args, t, *seen_args, *query.types, *common_args, limit]))
    union = " UNION ALL ".join(f"SELECT * FROM ({sql})" for sql, _ in scans)
    args = [arg for _, scan_args in scans for arg in scan_args]
    outer = ", ".join(f"o.{c.strip()}" for c in columns.split(","))
    # No ORDER BY on the join: sorting would move every body again. The store sorts the page
    # (by date_added, the third column) after reading it.
    sql = f"SELECT {outer} FROM (SELECT seq, added FROM ({union}) ORDER BY added LIMIT ?) m " \
          "JOIN objects o ON o.seq = m.seq"
    return sql, [*args, limit]


# -- versions that reference one id ---------------------------------------------------------
def _referrers(key: int, query: Query, columns: str, limit: int, every: bool, me: int,
               not_from: int) -> tuple[str, list[Any]]:
    """One range of the refs table (coll, dst, seq) joined row by row to the versions, with
    the reader's whole predicate applied to each row inside that scan (as an id lookup is).

    The refs rows come in seq order, and within a collection seq order is date_added order
    (both only grow: a write takes seqs above every stored one and dates above the
    collection's clock), so the scan needs no sort, and a `next` resumes with one seek: past
    the seq of the last version added at or before `after`, found on (coll, added)."""
    if query.ids or query.types:
        raise ValueError("refers_to does not combine with ids or types")
    view = query.visibility
    if view is None or view.everything:
        where, args = _selectors(query.versions)
        where = f"({where})" if where else "1"
    else:
        seen, seen_args = _within(query.versions, view.max_rank, me)
        if view.onward:
            seen += " AND o.h2 = 0"
        if not_from >= 0:
            seen += " AND o.pusher != ?"
            seen_args = [*seen_args, not_from]
        own, own_args = _selectors(query.versions)
        where = f"((o.rank <= ? AND {seen}) OR (o.pusher = ? AND ({own or '1'})))"
        args = [view.max_rank, *seen_args, me, *own_args]
    common, common_args = _common(query, every)
    start, start_args = "", list[Any]()
    if query.after is not None:
        start = " AND r.seq > coalesce((SELECT seq FROM objects INDEXED BY objects_added " \
                "WHERE coll = ? AND added <= ? ORDER BY added DESC LIMIT 1), 0)"
        start_args = [key, query.after]
    outer = ", ".join(f"o.{c.strip()}" for c in columns.split(","))
    # CROSS JOIN keeps refs the outer loop: the scan is the refs range, never the objects.
    sql = f"SELECT {outer} FROM refs r CROSS JOIN objects o ON o.seq = r.seq " \
          f"WHERE r.coll = ? AND r.dst = ?{start} AND o.coll = ? AND {where}{common} " \
          "ORDER BY r.seq LIMIT ?"
    return sql, [key, id_hash(query.refers_to), *start_args, key, *args, *common_args, limit]


def _within(versions: tuple[str, ...], t: int, me: int) -> tuple[str, list[Any]]:
    """The selector for versions at or below the reader's rank t, as one SQL term."""
    if ALL in versions:
        return "1", []
    terms: list[str] = []
    args: list[Any] = []
    # The newest version at or below t, unless the reader pushed a newer one (its own scan
    # gives that). Written so the reader's own newest versions pass: a scan rejects only the
    # rare older version that the reader itself superseded.
    if LAST in versions:
        terms.append("(newer > ? AND (last = 1 OR top != ?))")
        args += [t, me]
    if FIRST in versions:
        terms.append("(older > ? AND (first = 1 OR bottom != ?))")
        args += [t, me]
    keys = [v for v in versions if v not in (LAST, FIRST)]
    if keys:
        terms.append(f"vkey IN ({_marks(keys)})")
        args += keys
    return "(" + " OR ".join(terms) + ")", args


def _marks(values: Any) -> str:
    return ",".join("?" * len(values))
