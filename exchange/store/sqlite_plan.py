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

Every scan runs in date_added order, ascending or (`newest_first`) descending. The pages'
filters are terms of the same scans: TLP picks which per-rank ranges are read (a residual
`rank IN` for a reader who sees everything), the source and validity are columns decided at
write time and checked per index entry, and a search walks the terms index (exact values,
CIDR ranges) or the trigram index (prefixes, substrings) newest first, joining each hit to
its version row and applying the reader's whole predicate there, so a page still holds
`limit` rows and `more` is right.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from ..model import ALL, FIRST, LAST, Query, Search
from . import refuse_unknown
from .terms import MARK

# The Query fields the plans below answer; any other field set makes a read fail rather than
# be ignored.
HANDLED = frozenset({"limit", "ids", "types", "versions", "spec_versions", "after",
                     "refers_to", "newest_first", "before", "ranks", "source", "valid_at",
                     "search", "collection", "visibility"})


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
    refuse_unknown(query, HANDLED)
    limit = -1 if every else query.limit + 1
    columns = "id, version, added, spec" + (", body" if with_body else "")
    view = query.visibility
    if query.refers_to:
        return _referrers(key, query, columns, limit, every, me, not_from)
    if query.search is not None:
        return _search(key, query, query.search, columns, limit, me, not_from)
    if view is None or view.everything:
        return _everything(key, query, columns, limit, every)
    return _restricted(key, query, columns, limit, every, view.max_rank, me, view.onward,
                       not_from)


def _common(query: Query, every: bool, p: str = "") -> tuple[str, list[Any]]:
    """The spec_version, paging and filter terms every scan shares (`p`: the objects table's
    alias in a join)."""
    where, args = "", list[Any]()
    if query.spec_versions:
        where += f" AND {p}spec IN ({_marks(query.spec_versions)})"
        args.extend(query.spec_versions)
    elif not every:
        where += f" AND {p}spec_latest = 1"
    if query.after is not None:
        where += f" AND {p}added > ?"
        args.append(query.after)
    if query.before is not None:
        where += f" AND {p}added < ?"
        args.append(query.before)
    if query.source:
        where += f" AND {p}src = ?"
        args.append(id_hash(query.source))
    if query.valid_at is not None:
        where += f" AND {p}vfrom <= ? AND {p}vuntil > ?"
        args += [query.valid_at, query.valid_at]
    return where, args


def _order(query: Query) -> str:
    return "DESC" if query.newest_first else ""


def _types(query: Query) -> tuple[str, ...]:
    """Only indicators have a validity: asking for it asks for indicators."""
    if query.valid_at is not None and not query.types:
        return ("indicator",)
    return query.types


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
    rows; a source one range on (coll, src, added); otherwise the newest, oldest or all
    versions by date_added."""
    where, args = _seen_all(key, query, every)
    order, types = _order(query), _types(query)
    if query.ids:
        more, more_args = _ids(query)
        sql = f"SELECT {columns} FROM objects INDEXED BY objects_id WHERE {where}{more} " \
              f"ORDER BY added {order} LIMIT ?"
        return sql, [*args, *more_args, limit]
    if len(types) == 1:
        sql = f"SELECT {columns} FROM objects INDEXED BY objects_type WHERE {where} " \
              f"AND type = ? ORDER BY added {order} LIMIT ?"
        return sql, [*args, types[0], limit]
    if types:
        scans, scan_args = [], []
        for kind in types:
            scans.append(f"SELECT * FROM (SELECT {columns}, added AS k FROM objects INDEXED BY "
                         f"objects_type WHERE {where} AND type = ? ORDER BY added {order} "
                         "LIMIT ?)")
            scan_args += [*args, kind, limit]
        sql = f"SELECT {columns} FROM ({' UNION ALL '.join(scans)}) ORDER BY k {order} LIMIT ?"
        return sql, [*scan_args, limit]
    if query.source:
        return f"SELECT {columns} FROM objects INDEXED BY objects_src WHERE {where} " \
               f"ORDER BY added {order} LIMIT ?", [*args, limit]
    return f"SELECT {columns} FROM objects WHERE {where} ORDER BY added {order} LIMIT ?", \
        [*args, limit]


def _seen_all(key: int, query: Query, every: bool, p: str = "") -> tuple[str, list[Any]]:
    """The whole predicate of a row for a reader who sees everything."""
    where, args = f"{p}coll = ?", list[Any]([key])
    selected, selected_args = _selectors(query.versions, p)
    if selected:
        where += f" AND ({selected})"
        args.extend(selected_args)
    if query.ranks:
        where += f" AND {p}rank IN ({_marks(query.ranks)})"
        args.extend(query.ranks)
    common, common_args = _common(query, every, p)
    return where + common, [*args, *common_args]


def _selectors(versions: tuple[str, ...], p: str = "") -> tuple[str, list[Any]]:
    """match[version] as flags and version keys ('' when every version is wanted)."""
    if ALL in versions:
        return "", []
    terms = [f"{p}{flag} = 1" for flag in (LAST, FIRST) if flag in versions]
    keys = [v for v in versions if v not in (LAST, FIRST)]
    if keys:
        terms.append(f"{p}vkey IN ({_marks(keys)})")
    return " OR ".join(terms), keys


# -- a reader who may not ---------------------------------------------------------------------
def _ranks(query: Query, t: int) -> list[int]:
    """The per-rank ranges a reader cleared to t reads: all it may see, or the TLP filter's."""
    return [r for r in range(t + 1) if not query.ranks or r in query.ranks]


def _restricted(key: int, query: Query, columns: str, limit: int, every: bool, t: int,
                me: int, onward: bool, not_from: int) -> tuple[str, list[Any]]:
    seen, seen_args = _seen(query.versions, t, me, onward, not_from)
    own, own_args = _selectors(query.versions)  # its own pushes, any rank
    own = own or "1"
    common, common_args = _common(query, every)
    order, types = _order(query), _types(query)
    if query.ids:  # a few versions of a few ids: one lookup, the whole predicate per row
        more, more_args = _ids(query)
        where, where_args = _visible_row(key, query, t, me, onward, not_from, every)
        sql = f"SELECT {columns} FROM objects INDEXED BY objects_id WHERE {where}" \
              f"{more} ORDER BY added {order} LIMIT ?"
        return sql, [*where_args, *more_args, limit]

    scans: list[tuple[str, list[Any]]] = []
    for kind in types or (None,):
        for rank in _ranks(query, t):
            if kind is not None:
                index, where, args = "objects_type_rank", "coll = ? AND type = ? AND rank = ?", \
                    [key, kind, rank]
            elif query.versions == (LAST,):  # the partial index holds no superseded version
                index, where, args = "objects_rank_last", "coll = ? AND rank = ? AND " \
                    "rank < newer", [key, rank]
            else:
                index, where, args = "objects_rank", "coll = ? AND rank = ?", [key, rank]
            scans.append((f"SELECT seq, added FROM objects INDEXED BY {index} WHERE {where} "
                          f"AND {seen}{common} ORDER BY added {order} LIMIT ?",
                          [*args, *seen_args, *common_args, limit]))
    if me >= 0:
        # Its own pushes, less what the scans above already give.
        kinds = f" AND type IN ({_marks(types)})" if types else ""
        # At or below t the scans above give all of its own, but the H2 ones an onward view
        # skips.
        for rank in range(5) if onward else range(t + 1, 5):
            if query.ranks and rank not in query.ranks:
                continue
            scans.append((
                "SELECT seq, added FROM objects INDEXED BY objects_pusher WHERE coll = ? AND "
                f"pusher = ? AND rank = ? AND ({own}) AND NOT (rank <= ? AND {seen}){kinds}"
                f"{common} ORDER BY added {order} LIMIT ?",
                [key, me, rank, *own_args, t, *seen_args, *types, *common_args, limit]))
    if not scans:  # the TLP filter names no rank this reader may see
        return f"SELECT {columns} FROM objects WHERE 0", []
    union = " UNION ALL ".join(f"SELECT * FROM ({sql})" for sql, _ in scans)
    args = [arg for _, scan_args in scans for arg in scan_args]
    outer = ", ".join(f"o.{c.strip()}" for c in columns.split(","))
    # No ORDER BY on the join: sorting would move every body again. The store sorts the page
    # (by date_added, the third column) after reading it.
    sql = f"SELECT {outer} FROM (SELECT seq, added FROM ({union}) ORDER BY added {order} " \
          "LIMIT ?) m JOIN objects o ON o.seq = m.seq"
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
        where, args = _selectors(query.versions, "o.")
        common, common_args = _common(query, every, "o.")
        where = f"o.coll = ? AND ({where or '1'}){common}"
        args = [key, *args, *common_args]
    else:
        where, args = _visible_row(key, query, view.max_rank, me, view.onward, not_from,
                                   every, "o.")
    start, start_args = "", list[Any]()
    if query.after is not None:
        start = " AND r.seq > coalesce((SELECT seq FROM objects INDEXED BY objects_added " \
                "WHERE coll = ? AND added <= ? ORDER BY added DESC LIMIT 1), 0)"
        start_args = [key, query.after]
    outer = ", ".join(f"o.{c.strip()}" for c in columns.split(","))
    # CROSS JOIN keeps refs the outer loop: the scan is the refs range, never the objects.
    sql = f"SELECT {outer} FROM refs r CROSS JOIN objects o ON o.seq = r.seq " \
          f"WHERE r.coll = ? AND r.dst = ?{start} AND {where} " \
          "ORDER BY r.seq LIMIT ?"
    return sql, [key, id_hash(query.refers_to), *start_args, *args, limit]


def _seen(versions: tuple[str, ...], t: int, me: int, onward: bool, not_from: int,
          p: str = "") -> tuple[str, list[Any]]:
    """What a restricted reader sees at or below its rank t, as one SQL term."""
    seen, args = _within(versions, t, me, p)
    if onward:
        seen += f" AND {p}h2 = 0"
    if not_from >= 0:  # a filter inside the scan: a push reads only what arrived since
        seen += f" AND {p}pusher != ?"
        args = [*args, not_from]
    return seen, args


def _visible_row(key: int, query: Query, t: int, me: int, onward: bool, not_from: int,
                 every: bool, p: str = "") -> tuple[str, list[Any]]:
    """The whole predicate of one row for a restricted reader, for reads that find rows by
    something else than rank (ids, search terms): at or below t as `_seen` says, or its own."""
    seen, seen_args = _seen(query.versions, t, me, onward, not_from, p)
    own, own_args = _selectors(query.versions, p)
    own = own or "1"
    common, common_args = _common(query, every, p)
    where = f"{p}coll = ? AND (({p}rank <= ? AND {seen}) OR ({p}pusher = ? AND ({own})))"
    args: list[Any] = [key, t, *seen_args, me, *own_args]
    if query.ranks:
        where += f" AND {p}rank IN ({_marks(query.ranks)})"
        args.extend(query.ranks)
    return where + common, [*args, *common_args]


def _within(versions: tuple[str, ...], t: int, me: int, p: str = "") -> tuple[str, list[Any]]:
    """The selector for versions at or below the reader's rank t, as one SQL term."""
    if ALL in versions:
        return "1", []
    terms: list[str] = []
    args: list[Any] = []
    # The newest version at or below t, unless the reader pushed a newer one (its own scan
    # gives that). Written so the reader's own newest versions pass: a scan rejects only the
    # rare older version that the reader itself superseded.
    if LAST in versions:
        terms.append(f"({p}newer > ? AND ({p}last = 1 OR {p}top != ?))")
        args += [t, me]
    if FIRST in versions:
        terms.append(f"({p}older > ? AND ({p}first = 1 OR {p}bottom != ?))")
        args += [t, me]
    keys = [v for v in versions if v not in (LAST, FIRST)]
    if keys:
        terms.append(f"{p}vkey IN ({_marks(keys)})")
        args += keys
    return "(" + " OR ".join(terms) + ")", args


# -- a search -----------------------------------------------------------------------------------
def _search(key: int, query: Query, search: Search, columns: str, limit: int, me: int,
            not_from: int) -> tuple[str, list[Any]]:
    """Hits of the terms index (one range per exact term, or the CIDR's range) or of the
    trigram index, each joined to its version row, which must pass the reader's whole
    predicate and the filters before it counts towards the page."""
    view = query.visibility
    if view is None or view.everything:
        where, args = _seen_all(key, query, False, "o.")
    else:
        where, args = _visible_row(key, query, view.max_rank, me, view.onward, not_from,
                                   False, "o.")
    if _types(query):
        where += f" AND o.type IN ({_marks(_types(query))})"
        args = [*args, *_types(query)]
    order = _order(query)
    scans: list[tuple[str, list[Any]]] = []
    if search.text:
        return _text(key, query, search, columns, limit, where, args)
    ranges = [(term, term) for term in search.terms] or [(search.low, search.high)]
    for low, high in ranges:
        match = "t.term = ?" if low == high else "t.term BETWEEN ? AND ?"
        terms = [low] if low == high else [low, high]
        scans.append((
            "SELECT o.seq AS seq, o.added AS added FROM terms t JOIN objects o INDEXED BY "
            f"objects_added ON o.coll = t.coll AND o.added = t.added WHERE t.coll = ? AND "
            f"{match} AND {where} ORDER BY t.added {order} LIMIT ?",
            [key, *terms, *args, limit]))
    outer = ", ".join(f"o.{c.strip()}" for c in columns.split(","))
    if len(scans) == 1:  # one range: its rows as they come, bodies of the page only
        sql, scan_args = scans[0]
        return sql.replace("SELECT o.seq AS seq, o.added AS added", f"SELECT {outer}"), \
            scan_args
    union = " UNION ".join(f"SELECT * FROM ({sql})" for sql, _ in scans)
    sql = f"SELECT {outer} FROM (SELECT seq, added FROM ({union}) ORDER BY added {order} " \
          "LIMIT ?) m JOIN objects o ON o.seq = m.seq"
    return sql, [*[a for _, scan_args in scans for a in scan_args], limit]


def _text(key: int, query: Query, search: Search, columns: str, limit: int, where: str,
          args: list[Any]) -> tuple[str, list[Any]]:
    """A prefix or substring of a domain or URL: the trigram index yields its hits by rowid,
    which is the version's seq, so they come in date_added order within a collection (a
    collection's seqs and date_addeds grow together) and the scan stops at the page's end.
    The date-added bounds become seq bounds through one seek on (coll, added)."""
    outer = ", ".join(f"o.{c.strip()}" for c in columns.split(","))
    phrase = (MARK if search.prefix else "") + search.text
    bounds, bound_args = "", list[Any]()
    if query.before is not None:
        bounds += " AND g.rowid < coalesce((SELECT seq FROM objects INDEXED BY objects_added " \
                  "WHERE coll = ? AND added >= ? ORDER BY added LIMIT 1), ?)"
        bound_args += [key, query.before, 2**62]
    if query.after is not None:
        bounds += " AND g.rowid > coalesce((SELECT seq FROM objects INDEXED BY objects_added " \
                  "WHERE coll = ? AND added <= ? ORDER BY added DESC LIMIT 1), ?)"
        bound_args += [key, query.after, -1]
    sql = f"SELECT {outer} FROM grams g JOIN objects o ON o.seq = g.rowid WHERE grams MATCH ?" \
          f"{bounds} AND {where} ORDER BY g.rowid {_order(query)} LIMIT ?"
    return sql, [_phrase(phrase), *bound_args, *args, limit]


def _phrase(text: str) -> str:
    """An FTS5 phrase that matches the text as it is (quotes doubled)."""
    return '"' + text.replace('"', '""') + '"'


def _marks(values: Any) -> str:
    return ",".join("?" * len(values))
