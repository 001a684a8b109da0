"""The SQLite store's parts as backend-neutral records, and back (`Store.dump`/`restore`).

Records name collections and partners by their ids, never by this file's compact keys, so a
copy can go to another file or another backend. Every page is one keyset range over a
primary key or the (coll, added) index: a copy of any size reads each row once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import orjson

from ..stix import references
from .copy import PARTS

_OBJECT = ("id, type, vkey, version, spec, added, base, bh2, pusher, rank, h2, last, first, "
           "spec_latest, newer, older, top, bottom, body")
_BEFORE_ALL = -(2**63)


def dump(conn: sqlite3.Connection, part: str, after: Any, limit: int,
         pusher_id: Callable[[int], str]) -> list[dict[str, Any]]:
    if part == "objects":
        return _dump_objects(conn, after, limit, pusher_id)
    if part == "statuses":
        rows = conn.execute(
            "SELECT id, api_root, coll, partner, requested, state, doc, request, lease "
            "FROM statuses WHERE id > ? ORDER BY id LIMIT ?", (after or "", limit))
        return [{"id": i, "api_root": root, "collection": coll, "partner": partner,
                 "requested": requested, "state": state, "doc": _blob(doc),
                 "request": None if request is None else _blob(request), "lease": lease}
                for i, root, coll, partner, requested, state, doc, request, lease in rows]
    if part == "audit":
        rows = conn.execute("SELECT seq, at, partner, body, hash FROM audit WHERE seq > ? "
                            "ORDER BY seq LIMIT ?", (after or 0, limit))
        return [{"seq": seq, "at": at, "partner": str(partner), "body": _blob(body),
                 "hash": _blob(digest)} for seq, at, partner, body, digest in rows]
    if part == "state":
        rows = conn.execute("SELECT name, doc, lease, holder FROM state WHERE name > ? "
                            "ORDER BY name LIMIT ?", (after or "", limit))
        return [{"name": name, "doc": None if doc is None else orjson.loads(doc),
                 "lease": lease, "holder": holder} for name, doc, lease, holder in rows]
    raise ValueError(f"no store part {part!r} (parts: {', '.join(PARTS)})")


def _dump_objects(conn: sqlite3.Connection, after: Any, limit: int,
                  pusher_id: Callable[[int], str]) -> list[dict[str, Any]]:
    first_coll, first_added = (after[0], after[1]) if after else ("", _BEFORE_ALL)
    found: list[dict[str, Any]] = []
    colls = conn.execute("SELECT key, id FROM colls WHERE id >= ? ORDER BY id",
                         (first_coll,)).fetchall()
    for key, coll in colls:
        if len(found) >= limit:
            break
        since = first_added if coll == first_coll else _BEFORE_ALL
        for (ident, kind, vkey, version, spec, added, base, bh2, pusher, rank, h2, last, first,
             spec_latest, newer, older, top, bottom, body) in conn.execute(
                f"SELECT {_OBJECT} FROM objects INDEXED BY objects_added "
                "WHERE coll = ? AND added > ? ORDER BY added LIMIT ?",
                (key, since, limit - len(found))):
            found.append({
                "collection": coll, "id": ident, "type": kind, "vkey": vkey,
                "version": version, "spec": spec, "added": added, "base": base,
                "base_h2": bool(bh2), "pusher": pusher_id(pusher), "rank": rank,
                "h2": bool(h2), "last": bool(last), "first": bool(first),
                "spec_latest": bool(spec_latest), "newer": newer, "older": older,
                "top": pusher_id(top), "bottom": pusher_id(bottom),
                # The refs table keeps hashes of ids, so the ids come from the body itself.
                "refs": list(references(orjson.loads(body))), "body": bytes(body)})
    return found


def restore(conn: sqlite3.Connection, part: str, records: list[dict[str, Any]],
            coll_key: Callable[[str], int], pusher_key: Callable[[str], int]) -> None:
    """Inside the caller's write transaction; objects are the store's own (SQLiteStore)."""
    if part == "statuses":
        conn.executemany(
            "INSERT OR REPLACE INTO statuses (id, api_root, coll, partner, requested, state, "
            "doc, request, lease) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(r["id"], r["api_root"], r["collection"], r["partner"], r["requested"],
              r["state"], r["doc"], r["request"], r["lease"]) for r in records])
    elif part == "audit":
        conn.executemany("INSERT OR REPLACE INTO audit (seq, at, partner, body, hash) "
                         "VALUES (?, ?, ?, ?, ?)",
                         [(r["seq"], r["at"], r["partner"], r["body"], r["hash"])
                          for r in records])
    elif part == "state":
        conn.executemany("INSERT OR REPLACE INTO state (name, doc, lease, holder) "
                         "VALUES (?, ?, ?, ?)",
                         [(r["name"], None if r["doc"] is None else orjson.dumps(r["doc"]),
                           r["lease"], r["holder"]) for r in records])
    else:
        raise ValueError(f"no store part {part!r} (parts: {', '.join(PARTS)})")


def _blob(value: object) -> bytes:
    """A BLOB as written, or what an edit made of it (SQLite's string functions give TEXT):
    copied as it is, so the audit check on the copy finds what it finds on the original."""
    return value if isinstance(value, bytes) else str(value).encode()
