"""The embedded store: one SQLite file in WAL mode, one connection per thread.

Each object version is a row holding its JSON bytes. The facts reads need (latest version,
first version, latest spec_version, date_added) are decided at write time and indexed, so
every read is a single index range scan: a page costs the same at 10 thousand or 10 million
objects.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigError
from ..model import ALL, COMPLETE, FIRST, LAST, Candidate, Entry, Outcome, Page, Query, Status
from ..stix import format_micros, now_micros, version_key

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS colls (
    key INTEGER PRIMARY KEY,     -- compact collection key used in every objects index
    id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY,
    coll INTEGER NOT NULL,       -- colls.key
    idh INTEGER NOT NULL,        -- 64-bit hash of id (id_hash): a compact key for id lookups
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
CREATE INDEX IF NOT EXISTS objects_id ON objects (coll, idh);
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

# The rows of one id: its hash narrows the index range, the id itself settles collisions.
_ONE_ID = "coll = :c AND idh = :h AND id = :i"
_FLAGS = f"""
UPDATE objects SET
    last = (vkey = (SELECT max(vkey) FROM objects WHERE {_ONE_ID})),
    first = (vkey = (SELECT min(vkey) FROM objects WHERE {_ONE_ID})),
    spec_latest = (spec = (SELECT max(o.spec) FROM objects o
                           WHERE o.coll = :c AND o.idh = :h AND o.id = :i
                           AND o.vkey = objects.vkey))
WHERE {_ONE_ID}
"""


def id_hash(object_id: str) -> int:
    """A signed 64-bit hash of an id: index keys stay small and inserts cheap, where the id
    text (about 50 bytes, random) made the id index the main cost of every write."""
    digest = hashlib.blake2b(object_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SQLiteStore:
    def __init__(self, path: str | Path, *, bulk: bool = False) -> None:
        """`bulk`: a local load from input files, which stay the durable copy. Commits are not
        flushed to disk one by one (WAL, synchronous=NORMAL): a crash can lose the last
        transactions but never corrupts the file, and loading the input again restores them.
        The server never uses it: an accepted push must survive a crash."""
        self.path = str(path)
        self.bulk = bulk
        self._local = threading.local()
        self._opened = False
        self._keys: dict[str, int] = {}  # collection id -> colls.key (never changes)

    # -- connections -------------------------------------------------------------------
    def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and _has_v1_objects(conn):
            _migrate_v1(conn)
        elif version > SCHEMA_VERSION:
            raise ConfigError(f"{self.path} was written by a newer version (schema {version})")
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
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
            # FULL: an accepted push survives power loss (see `bulk` for local loads).
            conn.execute(f"PRAGMA synchronous={'NORMAL' if self.bulk else 'FULL'}")
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

    def _key(self, conn: sqlite3.Connection, collection: str, *, create: bool) -> int | None:
        key = self._keys.get(collection)
        if key is None:
            row = conn.execute("SELECT key FROM colls WHERE id = ?", (collection,)).fetchone()
            if row is None and create:  # only inside a write transaction
                row = conn.execute("INSERT INTO colls (id) VALUES (?) RETURNING key",
                                   (collection,)).fetchone()
            if row is None:
                return None
            key = self._keys[collection] = row[0]
        return key

    # -- reads -------------------------------------------------------------------------
    def query(self, query: Query, *, with_body: bool) -> Page:
        conn = self._conn()
        key = self._key(conn, query.collection, create=False)
        if key is None:
            return Page([], False)
        columns = "id, version, added, spec" + (", body" if with_body else "")
        sql, args = _select(key, query, columns)
        rows = conn.execute(sql, (*args, query.limit + 1)).fetchall()
        more = len(rows) > query.limit
        entries = [Entry(*row) for row in rows[: query.limit]]
        return Page(entries, more)

    def explain(self, query: Query) -> str:
        """The query plan of a read, for tests that hold every read to an index scan."""
        sql, args = _select(0, query, "id, version, added, spec, body")
        rows = self._conn().execute(f"EXPLAIN QUERY PLAN {sql}",
                                    (*args, query.limit + 1)).fetchall()
        return "\n".join(str(row[-1]) for row in rows)

    # -- writes ------------------------------------------------------------------------
    def write(self, collection: str, candidates: Sequence[Candidate], status_id: str | None,
              finish: Callable[[list[Outcome]], Status]) -> Status | None:
        with self._write() as conn:
            if status_id is not None:
                row = conn.execute("SELECT state FROM statuses WHERE id = ?",
                                   (status_id,)).fetchone()
                if row is not None and row[0] == COMPLETE:
                    return None  # another process finished this request first
            key = self._key(conn, collection, create=True)
            assert key is not None
            clock = conn.execute("SELECT added FROM clock WHERE coll = ?", (collection,)).fetchone()
            added = max(clock[0] if clock else 0, now_micros() - 1)
            hashes = {c.id: id_hash(c.id) for c in candidates}
            known = _stored_versions(conn, key, hashes)
            outcomes, rows, reflag = [], [], set()
            for candidate in candidates:
                existing = known.setdefault(candidate.id, [])
                outcome, row = _place(candidate, added + 1, existing)
                outcomes.append(outcome)
                if row is not None:
                    added += 1
                    rows.append((key, hashes[candidate.id], candidate.id, *row))
                    if len(existing) > 1:
                        reflag.add(candidate.id)
            conn.executemany(
                "INSERT INTO objects (coll, idh, id, type, vkey, version, spec, added, last, "
                "first, spec_latest, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 1, 1, ?)", rows)
            conn.executemany(_FLAGS, [{"c": key, "h": hashes[i], "i": i} for i in reflag])
            conn.execute(
                "INSERT INTO clock (coll, added) VALUES (?, ?) "
                "ON CONFLICT (coll) DO UPDATE SET added = excluded.added",
                (collection, added),
            )
            status = finish(outcomes)
            if status_id is not None:
                _save_status(conn, status, None)
        return status

    def delete(self, collection: str, object_id: str, versions: tuple[str, ...],
               spec_versions: tuple[str, ...]) -> int:
        with self._write() as conn:
            key = self._key(conn, collection, create=False)
            if key is None:
                return 0
            # Without match[spec_version], a delete takes every spec version of what it matches.
            where, args = _where(key, versions, spec_versions, every_spec=True)
            one = {"c": key, "h": id_hash(object_id), "i": object_id}
            gone = conn.execute(f"DELETE FROM objects WHERE {where} AND idh = ? AND id = ?",
                                (*args, one["h"], object_id)).rowcount
            if gone:
                conn.execute(_FLAGS, one)
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


def _select(key: int, query: Query, columns: str) -> tuple[str, list[Any]]:
    """One read as SQL: an index range scan in date_added order. The caller binds the last
    parameter, LIMIT (page size + 1).

    A list of ids is looked up on the (coll, idh) index; a list of types is one range scan
    per type on (coll, type, added), merged, so a page never sorts more than types x limit rows.
    """
    where, args = _where(key, query.versions, query.spec_versions)
    if query.after is not None:
        where += " AND added > ?"
        args.append(query.after)
    if query.ids:
        where += f" AND idh IN ({_marks(query.ids)}) AND id IN ({_marks(query.ids)})"
        args.extend(id_hash(i) for i in query.ids)
        args.extend(query.ids)
        if query.types:  # match[id] and match[type] together: both must hold
            where += f" AND type IN ({_marks(query.types)})"
            args.extend(query.types)
        sql = f"SELECT {columns} FROM objects INDEXED BY objects_id WHERE {where} " \
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


def _place(candidate: Candidate, added: int, existing: list[tuple[Any, ...]],
           ) -> tuple[Outcome, tuple[Any, ...] | None]:
    """What to do with one candidate given its id's stored versions (updated in place): the
    outcome, and the row values to insert (None when nothing is stored)."""
    if candidate.version is None:  # unversioned: one version, stamped with its date_added
        same = existing
        version = format_micros(added)
    else:
        vkey = version_key(candidate.version)
        same = [r for r in existing if r[0] == vkey and r[2] == candidate.spec_version]
        version = candidate.version
    if same:
        stored = same[0][3]
        identical = stored == candidate.body or canonical(stored) == canonical(candidate.body)
        return Outcome(candidate.id, same[0][1], stored=False, conflict=not identical), None
    key = version_key(version)
    existing.append((key, version, candidate.spec_version, candidate.body))
    row = (candidate.type, key, version, candidate.spec_version, added, candidate.body)
    return Outcome(candidate.id, version, stored=True), row


def _stored_versions(conn: sqlite3.Connection, key: int,
                     hashes: dict[str, int]) -> dict[str, list[tuple[Any, ...]]]:
    """The stored versions of many ids, fetched in a few index lookups rather than one each."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    wanted = sorted(set(hashes.values()))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        for row in conn.execute(
                "SELECT id, vkey, version, spec, body FROM objects INDEXED BY objects_id "
                f"WHERE coll = ? AND idh IN ({_marks(chunk)})", (key, *chunk)):
            if row[0] in hashes:
                found.setdefault(row[0], []).append(row[1:])
    return found


def _where(key: int, versions: tuple[str, ...], spec_versions: tuple[str, ...],
           every_spec: bool = False) -> tuple[str, list[Any]]:
    """The collection, version and spec_version terms shared by reads and deletes."""
    where, args = "coll = ?", list[Any]([key])
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


def canonical(body: bytes) -> bytes:
    """Key-sorted JSON: tells an identical re-post from a conflicting one."""
    return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)


def _has_v1_objects(conn: sqlite3.Connection) -> bool:
    columns = [row[1] for row in conn.execute("PRAGMA table_info(objects)")]
    return bool(columns) and "idh" not in columns


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Move a schema 1 file (collection ids and object ids as index keys) to schema 2."""
    conn.create_function("id_hash", 1, id_hash, deterministic=True)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE objects RENAME TO objects_v1")
        for index in ("objects_version", "objects_added", "objects_latest", "objects_first",
                      "objects_type"):
            conn.execute(f"DROP INDEX IF EXISTS {index}")
        # One statement at a time: executescript would commit halfway.
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO colls (id) SELECT DISTINCT coll FROM objects_v1")
        conn.execute(
            "INSERT INTO objects (seq, coll, idh, id, type, vkey, version, spec, added, last, "
            "first, spec_latest, body) SELECT o.seq, c.key, id_hash(o.id), o.id, o.type, o.vkey, "
            "o.version, o.spec, o.added, o.last, o.first, o.spec_latest, o.body "
            "FROM objects_v1 o JOIN colls c ON c.id = o.coll")
        conn.execute("DROP TABLE objects_v1")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


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

