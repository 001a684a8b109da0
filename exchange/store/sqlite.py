"""The embedded store: one SQLite file in WAL mode, one connection per thread.

Each object version is a row holding its JSON bytes. The facts reads need (latest version,
first version, latest spec_version, date_added) are decided at write time and indexed, so
every read is a single index range scan: a page costs the same at 10 thousand or 10 million
objects.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from ..model import ALL, COMPLETE, FIRST, LAST, Candidate, Entry, Outcome, Page, Query, Status
from ..stix import format_micros, now_micros, version_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY,
    coll TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    vkey TEXT NOT NULL,          -- version as a sortable key (stix.version_key)
    version TEXT NOT NULL,       -- version as the object states it
    spec TEXT NOT NULL,
    added INTEGER NOT NULL,      -- date_added in microseconds, unique per collection
    last INTEGER NOT NULL,       -- 1 on the newest version of the id
    first INTEGER NOT NULL,      -- 1 on the oldest version of the id
    spec_latest INTEGER NOT NULL,-- 1 on the newest spec_version of this id and version
    body BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS objects_version ON objects (coll, id, vkey, spec);
CREATE UNIQUE INDEX IF NOT EXISTS objects_added ON objects (coll, added);
CREATE INDEX IF NOT EXISTS objects_latest ON objects (coll, added)
    WHERE last = 1 AND spec_latest = 1;
CREATE INDEX IF NOT EXISTS objects_first ON objects (coll, added)
    WHERE first = 1 AND spec_latest = 1;
CREATE INDEX IF NOT EXISTS objects_type ON objects (coll, type, added);
CREATE TABLE IF NOT EXISTS clock (coll TEXT PRIMARY KEY, added INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS statuses (
    id TEXT PRIMARY KEY,
    api_root TEXT NOT NULL,
    coll TEXT NOT NULL,
    partner TEXT NOT NULL,
    requested INTEGER NOT NULL,
    state TEXT NOT NULL,
    doc BLOB NOT NULL,           -- total and the three lists of status details, as JSON
    request BLOB,                -- the accepted body, kept until it is processed
    lease REAL                   -- processing lease (unix time) so one process works a request
);
CREATE INDEX IF NOT EXISTS statuses_pending ON statuses (state) WHERE state = 'pending';
"""

_FLAGS = """
UPDATE objects SET
    last = (vkey = (SELECT max(vkey) FROM objects WHERE coll = :c AND id = :i)),
    first = (vkey = (SELECT min(vkey) FROM objects WHERE coll = :c AND id = :i)),
    spec_latest = (spec = (SELECT max(o.spec) FROM objects o
                           WHERE o.coll = :c AND o.id = :i AND o.vkey = objects.vkey))
WHERE coll = :c AND id = :i
"""


class SQLiteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._opened = False

    # -- connections -------------------------------------------------------------------
    def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        conn.executescript(SCHEMA)
        self._opened = True

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE for writes).
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # an accepted push survives power loss
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA cache_size=-8192")  # per connection: one per thread
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- reads -------------------------------------------------------------------------
    def query(self, query: Query, *, with_body: bool) -> Page:
        columns = "id, version, added, spec" + (", body" if with_body else "")
        sql, args = _select(query, columns)
        rows = self._conn().execute(sql, (*args, query.limit + 1)).fetchall()
        more = len(rows) > query.limit
        entries = [Entry(*row) for row in rows[: query.limit]]
        return Page(entries, more)

    def explain(self, query: Query) -> str:
        """The query plan of a read, for tests that hold every read to an index scan."""
        sql, args = _select(query, "id, version, added, spec, body")
        rows = self._conn().execute(f"EXPLAIN QUERY PLAN {sql}",
                                    (*args, query.limit + 1)).fetchall()
        return "\n".join(str(row[-1]) for row in rows)

    # -- writes ------------------------------------------------------------------------
    def write(self, collection: str, candidates: Sequence[Candidate], status_id: str,
              finish: Callable[[list[Outcome]], Status]) -> Status | None:
        with self._write() as conn:
            row = conn.execute("SELECT state FROM statuses WHERE id = ?", (status_id,)).fetchone()
            if row is not None and row[0] == COMPLETE:
                return None  # another process finished this request first
            clock = conn.execute("SELECT added FROM clock WHERE coll = ?", (collection,)).fetchone()
            last_added = max(clock[0] if clock else 0, now_micros() - 1)
            known = _stored_versions(conn, collection, {c.id for c in candidates})
            outcomes = []
            for candidate in candidates:
                rows = known.setdefault(candidate.id, [])
                outcome, used = self._write_one(conn, collection, candidate, last_added + 1, rows)
                outcomes.append(outcome)
                last_added += used
            conn.execute(
                "INSERT INTO clock (coll, added) VALUES (?, ?) "
                "ON CONFLICT (coll) DO UPDATE SET added = excluded.added",
                (collection, last_added),
            )
            status = finish(outcomes)
            _save_status(conn, status, None)
        return status

    def _write_one(self, conn: sqlite3.Connection, collection: str, candidate: Candidate,
                   added: int, existing: list[tuple[Any, ...]]) -> tuple[Outcome, int]:
        """Store one candidate; `existing` (its id's stored versions) is updated in place."""
        if candidate.version is None:  # unversioned: one version, stamped with its date_added
            same = existing
            version = format_micros(added)
        else:
            vkey = version_key(candidate.version)
            same = [r for r in existing if r[0] == vkey and r[2] == candidate.spec_version]
            version = candidate.version
        if same:
            identical = _canonical(same[0][3]) == candidate.canonical
            return Outcome(candidate.id, same[0][1], stored=False, conflict=not identical), 0
        key = version_key(version)
        conn.execute(
            "INSERT INTO objects (coll, id, type, vkey, version, spec, added, last, first, "
            "spec_latest, body) VALUES (?, ?, ?, ?, ?, ?, ?, 1, 1, 1, ?)",
            (collection, candidate.id, candidate.type, key, version,
             candidate.spec_version, added, candidate.body),
        )
        if existing:
            conn.execute(_FLAGS, {"c": collection, "i": candidate.id})
        existing.append((key, version, candidate.spec_version, candidate.body))
        return Outcome(candidate.id, version, stored=True), 1

    def delete(self, collection: str, object_id: str, versions: tuple[str, ...],
               spec_versions: tuple[str, ...]) -> int:
        # Without match[spec_version], a delete takes every spec version of what it matches.
        where, args = _where(collection, versions, spec_versions, every_spec=True)
        with self._write() as conn:
            gone = conn.execute(f"DELETE FROM objects WHERE {where} AND id = ?",
                                (*args, object_id)).rowcount
            if gone:
                conn.execute(_FLAGS, {"c": collection, "i": object_id})
        return gone

    # -- statuses ----------------------------------------------------------------------
    def save_status(self, status: Status, request: bytes | None) -> None:
        with self._write() as conn:
            _save_status(conn, status, request)

    def get_status(self, api_root: str, status_id: str) -> Status | None:
        row = self._conn().execute(
            "SELECT id, api_root, coll, partner, requested, state, doc FROM statuses "
            "WHERE id = ? AND api_root = ?", (status_id, api_root)).fetchone()
        return _status(row) if row else None

    def claim_pending(self, lease_seconds: float, status_id: str | None = None) -> list[str]:
        now = time.time()
        with self._write() as conn:
            sql = "SELECT id FROM statuses WHERE state = 'pending' AND " \
                  "(lease IS NULL OR lease < ?)"
            args: list[Any] = [now]
            if status_id is not None:
                sql += " AND id = ?"
                args.append(status_id)
            ids = [row[0] for row in conn.execute(sql, args).fetchall()]
            conn.executemany("UPDATE statuses SET lease = ? WHERE id = ?",
                             [(now + lease_seconds, i) for i in ids])
        return ids

    def pending_request(self, status_id: str) -> tuple[Status, bytes] | None:
        row = self._conn().execute(
            "SELECT id, api_root, coll, partner, requested, state, doc, request FROM statuses "
            "WHERE id = ? AND state = 'pending'", (status_id,)).fetchone()
        if row is None or row[7] is None:
            return None
        return _status(row[:7]), row[7]


def _select(query: Query, columns: str) -> tuple[str, list[Any]]:
    """One read as SQL: an index range scan in date_added order. The caller binds the last
    parameter, LIMIT (page size + 1).

    A list of ids is looked up on the (coll, id, ...) index; a list of types is one range scan
    per type on (coll, type, added), merged, so a page never sorts more than types x limit rows.
    """
    where, args = _where(query.collection, query.versions, query.spec_versions)
    if query.after is not None:
        where += " AND added > ?"
        args.append(query.after)
    if query.ids:
        where += f" AND id IN ({_marks(query.ids)})"
        args.extend(query.ids)
        if query.types:  # match[id] and match[type] together: both must hold
            where += f" AND type IN ({_marks(query.types)})"
            args.extend(query.types)
        sql = f"SELECT {columns} FROM objects INDEXED BY objects_version WHERE {where} " \
              "ORDER BY added LIMIT ?"
        return sql, args
    if len(query.types) == 1:
        sql = f"SELECT {columns} FROM objects INDEXED BY objects_type WHERE {where} " \
              "AND type = ? ORDER BY added LIMIT ?"
        return sql, [*args, query.types[0]]
    if query.types:
        scans, scan_args = [], []
        for kind in query.types:
            scans.append(f"SELECT * FROM (SELECT {columns}, added AS k FROM objects INDEXED BY "
                         f"objects_type WHERE {where} AND type = ? ORDER BY added LIMIT ?)")
            scan_args += [*args, kind, query.limit + 1]
        sql = f"SELECT {columns} FROM ({' UNION ALL '.join(scans)}) ORDER BY k LIMIT ?"
        return sql, scan_args
    return f"SELECT {columns} FROM objects WHERE {where} ORDER BY added LIMIT ?", args


def _stored_versions(conn: sqlite3.Connection, collection: str,
                     ids: set[str]) -> dict[str, list[tuple[Any, ...]]]:
    """The stored versions of many ids, fetched in a few index lookups rather than one each."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    wanted = sorted(ids)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        for row in conn.execute(
                "SELECT id, vkey, version, spec, body FROM objects WHERE coll = ? AND id IN "
                f"({_marks(chunk)})", (collection, *chunk)):
            found.setdefault(row[0], []).append(row[1:])
    return found


def _where(collection: str, versions: tuple[str, ...], spec_versions: tuple[str, ...],
           every_spec: bool = False) -> tuple[str, list[Any]]:
    """The collection, version and spec_version terms shared by reads and deletes."""
    where, args = "coll = ?", [collection]
    if ALL not in versions:
        terms = [f"{flag} = 1" for flag in (LAST, FIRST) if flag in versions]
        keys = [v for v in versions if v not in (LAST, FIRST)]
        if keys:
            terms.append(f"vkey IN ({_marks(keys)})")
            args.extend(keys)
        where += " AND " + (terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")")
    if spec_versions:
        where += f" AND spec IN ({_marks(spec_versions)})"
        args.extend(spec_versions)
    elif not every_spec:
        where += " AND spec_latest = 1"
    return where, args


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _canonical(body: bytes) -> bytes:
    return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)


def _save_status(conn: sqlite3.Connection, status: Status, request: bytes | None) -> None:
    doc = orjson.dumps({"total": status.total_count, "successes": status.successes,
                        "failures": status.failures, "pendings": status.pendings})
    conn.execute(
        "INSERT INTO statuses (id, api_root, coll, partner, requested, state, doc, request) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
        "doc = excluded.doc, request = excluded.request, lease = NULL",
        (status.id, status.api_root, status.collection, status.partner,
         status.request_timestamp, status.status, doc, request),
    )


def _status(row: Sequence[Any]) -> Status:
    doc = orjson.loads(row[6])
    return Status(id=row[0], api_root=row[1], collection=row[2], partner=row[3],
                  request_timestamp=row[4], status=row[5], total_count=doc["total"],
                  successes=doc["successes"], failures=doc["failures"], pendings=doc["pendings"])

