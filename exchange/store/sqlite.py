"""The embedded store: one SQLite file in WAL mode, one connection per thread.

Each object version is a row holding its JSON bytes. The facts reads need (latest version,
first version, latest spec_version, date_added, and the visibility facts of store/rules.py)
are decided at write time and indexed, so every read is index range scans: a page costs the
same at 10 thousand or 10 million objects, and at any share of the collection a reader may
see.
"""

from __future__ import annotations

import fcntl
import functools
import itertools
import logging
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigError, Unavailable
from ..markings import handling_codes, marking_rank
from ..model import (
    AMBER,
    COMPLETE,
    AuditEntry,
    AuditRecord,
    Candidate,
    Entry,
    Outcome,
    Page,
    Query,
    Status,
)
from ..stix import references
from . import chain, sqlite_dump
from .rules import NONE, Row, Versions, stamp
from .sqlite_plan import id_hash, select
from .terms import MARK, Indexed, index

log = logging.getLogger(__name__)

# One write hashes each id several times (looking it up, finding its referrers, inserting it
# and the references to it): the recent ones are kept.
_hashed = functools.lru_cache(maxsize=32_768)(id_hash)
_second = operator.itemgetter(1)

SCHEMA_VERSION = 5
# Statements are split on ';' for migrations (executescript would commit halfway): none may
# appear in a comment.
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS colls (
    key INTEGER PRIMARY KEY,     -- compact collection key used in every objects index
    id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS pushers (
    key INTEGER PRIMARY KEY,     -- compact partner key (0: a local load, no partner)
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
    base INTEGER NOT NULL,       -- TLP rank of its own markings (or the collection default)
    bh2 INTEGER NOT NULL,        -- its own handling code is H2
    rank INTEGER NOT NULL,       -- effective rank: with what it references (rules.py)
    h2 INTEGER NOT NULL,         -- effective H2
    newer INTEGER NOT NULL,      -- lowest effective rank of newer versions ({NONE}: none)
    older INTEGER NOT NULL,      -- lowest effective rank of older versions
    pusher INTEGER NOT NULL,     -- pushers.key of who stored it
    top INTEGER NOT NULL,        -- pusher of the id's newest version
    bottom INTEGER NOT NULL,     -- pusher of the id's oldest version
    body BLOB NOT NULL,
    src INTEGER NOT NULL DEFAULT 0,  -- id_hash of created_by_ref (0: none), for the filter
    vfrom INTEGER,               -- an indicator's valid_from, microseconds (NULL: not one)
    vuntil INTEGER               -- its valid_until (terms.FOREVER: none)
);
CREATE INDEX IF NOT EXISTS objects_id ON objects (coll, idh);
CREATE UNIQUE INDEX IF NOT EXISTS objects_added ON objects (coll, added);
CREATE INDEX IF NOT EXISTS objects_latest ON objects (coll, added)
    WHERE last = 1 AND spec_latest = 1;
CREATE INDEX IF NOT EXISTS objects_first ON objects (coll, added)
    WHERE first = 1 AND spec_latest = 1;
CREATE INDEX IF NOT EXISTS objects_type ON objects (coll, type, added);
-- Readers who may not see everything: one range per rank they may see, merged by date_added.
-- The columns after `added` let a scan decide "the newest version I may see" from the index
-- alone, and only the rows of the page are read for their bodies.
CREATE INDEX IF NOT EXISTS objects_rank ON objects (coll, rank, added, spec_latest, h2);
CREATE INDEX IF NOT EXISTS objects_rank_last ON objects (coll, rank, added, newer, last, top,
    spec_latest, h2) WHERE rank < newer;
CREATE INDEX IF NOT EXISTS objects_type_rank ON objects (coll, type, rank, added, newer, last,
    top, spec_latest, h2);
CREATE INDEX IF NOT EXISTS objects_pusher ON objects (coll, pusher, rank, added);
CREATE INDEX IF NOT EXISTS objects_src ON objects (coll, src, added);
-- What each version can be found by (store/terms.py), decided when it is written: an exact
-- value or a CIDR range is one range of this index, newest first.
CREATE TABLE IF NOT EXISTS terms (
    coll INTEGER NOT NULL,
    term TEXT NOT NULL,
    added INTEGER NOT NULL,      -- objects.added of the version
    PRIMARY KEY (coll, term, added)
) WITHOUT ROWID;
-- Domains and URLs for prefix and substring search: a trigram index whose rowid is the
-- version's seq. Contentless: the text is recomputed from the body to remove it.
CREATE VIRTUAL TABLE IF NOT EXISTS grams USING fts5(v, tokenize = 'trigram', content = '');
-- Who references what (not authors or markings): raising a referenced object's rank finds
-- the objects that reference it.
CREATE TABLE IF NOT EXISTS refs (
    coll INTEGER NOT NULL,
    dst INTEGER NOT NULL,        -- id_hash of the referenced id
    seq INTEGER NOT NULL,        -- objects.seq of the referring version
    PRIMARY KEY (coll, dst, seq)
) WITHOUT ROWID;
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
CREATE TABLE IF NOT EXISTS state (
    name TEXT PRIMARY KEY,       -- e.g. a peer's pull bookmark
    doc BLOB,                    -- JSON
    lease REAL,                  -- unix time until which `holder` holds it
    holder TEXT
);
-- The audit trail: append-only, each record chained to the one before (store/chain.py).
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,     -- 1, 2, 3... without gaps
    at INTEGER NOT NULL,         -- microseconds, as in the body
    partner TEXT NOT NULL,       -- as in the body
    body BLOB NOT NULL,          -- canonical JSON, what the hash covers
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
"""

_ROW = ("seq, id, type, vkey, version, spec, added, base, bh2, pusher, rank, h2, last, first, "
        "spec_latest, newer, older, top, bottom")


class SQLiteStore:
    def __init__(self, path: str | Path, *, bulk: bool = False,
                 busy_seconds: float = 30.0) -> None:
        """`bulk`: a local load from input files, which stay the durable copy. Commits are not
        flushed to disk one by one (WAL, synchronous=NORMAL): a crash can lose the last
        transactions but never corrupts the file, and loading the input again restores them.
        The server never uses it: an accepted push must survive a crash."""
        self.path = str(path)
        self.bulk = bulk
        self.busy_seconds = busy_seconds  # how long a write waits for another's lock
        self._local = threading.local()
        self._keys: dict[str, int] = {}  # collection id -> colls.key (never changes)
        self._pushers: dict[str, int] = {"": 0}  # partner id -> pushers.key (never changes)
        self._pusher_ids: dict[int, str] = {0: ""}

    # -- connections -------------------------------------------------------------------
    def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(f"{self.path} was written by a newer version (schema {version})")
        if version == 0 and _columns(conn, "objects") and "idh" not in _columns(conn, "objects"):
            _migrate_v1(conn)
            version = 2
        if version == 2 or (version == 0 and "rank" not in _columns(conn, "objects")
                            and _columns(conn, "objects")):
            self._migrate_v2(conn)
            version = 4
        if version < 5 and _columns(conn, "objects"):
            self._migrate_v4(conn)
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        turn = getattr(self._local, "turn", None)
        if turn is not None:
            os.close(turn)
            self._local.turn = None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE for writes).
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_seconds,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: an accepted push survives power loss (see `bulk` for local loads).
            conn.execute(f"PRAGMA synchronous={'NORMAL' if self.bulk else 'FULL'}")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_seconds * 1000)}")
            conn.execute("PRAGMA cache_size=-8192")  # per connection: one per thread
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction, in this thread's turn (`_turn`). `durable=False` for one that
        can be redone from what is already durable (a lease; the objects of an accepted push,
        whose body is): its commit skips the fsync, and the next durable commit's fsync covers
        it, since the log is written in order."""
        conn = self._conn()
        relaxed = not durable and not self.bulk
        if relaxed:
            conn.execute("PRAGMA synchronous=NORMAL")
        turn = self._turn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            if turn is not None:
                fcntl.flock(turn, fcntl.LOCK_UN)
            if relaxed:
                conn.execute("PRAGMA synchronous=FULL")

    def _turn(self) -> int | None:
        """Wait for the writer before this one, in any thread or process, to finish.

        SQLite's own lock makes a writer that finds it taken sleep and try again (after 1,
        2, 5, 10 ... up to 100 ms), so under many small pushes and reads writers sleep while
        the lock is free and the unlucky ones wait seconds. A lock on a file beside the
        store, taken blocking, wakes the next writer as soon as the last one commits (a
        process that dies drops it). Each thread opens the file itself: locks on separate
        open files exclude each other within one process too."""
        if self.path == ":memory:":
            return None
        fd: int | None = getattr(self._local, "turn", None)
        if fd is None:
            fd = self._local.turn = os.open(f"{self.path}-writer", os.O_RDWR | os.O_CREAT,
                                            0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def _key(self, conn: sqlite3.Connection, collection: str, *, create: bool) -> int | None:
        return _compact(conn, "colls", self._keys, collection, create)

    def _pusher(self, conn: sqlite3.Connection, partner: str, *, create: bool) -> int | None:
        key = _compact(conn, "pushers", self._pushers, partner, create)
        if key is not None:
            self._pusher_ids[key] = partner
        return key

    def _pusher_id(self, conn: sqlite3.Connection, key: int) -> str:
        partner = self._pusher_ids.get(key)
        if partner is None:
            partner = conn.execute("SELECT id FROM pushers WHERE key = ?", (key,)).fetchone()[0]
            self._pushers[partner], self._pusher_ids[key] = key, partner
        return partner

    # -- reads -------------------------------------------------------------------------
    def ping(self) -> int:
        # An open connection goes on reading a file that was deleted or whose folder went
        # away, while a process started now could not open it: the path must still be there.
        if self.path != ":memory:" and not os.path.exists(self.path):
            raise Unavailable(f"the store file {self.path} is not there", 5)
        row = self._conn().execute(
            "SELECT count(*) FROM statuses WHERE state = 'pending'").fetchone()
        return int(row[0])

    def query(self, query: Query, *, with_body: bool) -> Page:
        conn = self._conn()
        key = self._key(conn, query.collection, create=False)
        if key is None:
            return Page([], False)
        sql, args = self._select(conn, key, query, with_body)
        rows = conn.execute(sql, args).fetchall()
        # A merged read comes back unordered; a range scan is in order.
        rows.sort(key=_added, reverse=query.newest_first)
        more = len(rows) > query.limit
        entries = [Entry(*row) for row in rows[: query.limit]]
        return Page(entries, more)

    def explain(self, query: Query) -> str:
        """The query plan of a read, for tests that hold every read to index range scans."""
        conn = self._conn()
        sql, args = self._select(conn, self._key(conn, query.collection, create=False) or 0,
                                 query, True)
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
        return "\n".join(str(row[-1]) for row in rows)

    def _select(self, conn: sqlite3.Connection, key: int, query: Query, with_body: bool,
                *, every: bool = False) -> tuple[str, list[Any]]:
        me = skip = None
        if query.visibility is not None and query.visibility.pusher:
            me = self._pusher(conn, query.visibility.pusher, create=False)
        if query.visibility is not None and query.visibility.not_from:
            skip = self._pusher(conn, query.visibility.not_from, create=False)
        return select(key, query, with_body, -1 if me is None else me, every=every,
                      not_from=-1 if skip is None else skip)

    # -- writes ------------------------------------------------------------------------
    def write(self, collection: str, candidates: Sequence[Candidate], status_id: str | None,
              finish: Callable[[list[Outcome]], Status],
              audit: Callable[[Status], AuditEntry] | None = None) -> Status | None:
        # A push's objects can be stored again from its recorded body (a power loss before
        # the next durable commit leaves the request pending, and a worker redoes it).
        with self._write(durable=status_id is None) as conn:
            if status_id is not None:
                row = conn.execute("SELECT state FROM statuses WHERE id = ?",
                                   (status_id,)).fetchone()
                if row is not None and row[0] == COMPLETE:
                    return None  # another process finished this request first
            key = self._key(conn, collection, create=True)
            assert key is not None
            clock = conn.execute("SELECT added FROM clock WHERE coll = ?", (collection,)).fetchone()
            working = Versions(_Backend(self, conn, key))
            working.load((c.id for c in candidates), bodies=True)
            outcomes, added = stamp(working, candidates, clock[0] if clock else 0)
            working.settle()
            self._flush(conn, key, working)
            conn.execute(
                "INSERT INTO clock (coll, added) VALUES (?, ?) "
                "ON CONFLICT (coll) DO UPDATE SET added = excluded.added",
                (collection, added),
            )
            status = finish(outcomes)
            if status_id is not None:
                _save_status(conn, status, None)
            if audit is not None:
                _append(conn, [audit(status)])
        return status

    def delete(self, query: Query, audit: Callable[[int], AuditEntry] | None = None) -> int:
        """Delete every version `query` selects (its limit aside); return how many went, with
        `audit` of that number recorded in the same transaction when any went."""
        with self._write() as conn:
            key = self._key(conn, query.collection, create=False)
            if key is None:
                return 0
            sql, args = self._select(conn, key, query, False, every=True)
            chosen = {(row[0], row[2]) for row in conn.execute(sql, args)}
            if not chosen:
                return 0
            if audit is not None:
                _append(conn, [audit(len(chosen))])
            self._remove(conn, key, chosen)
        return len(chosen)

    def expired(self, collection: str, cutoffs: Sequence[int | None],
                limit: int = 1000) -> list[tuple[str, str, int]]:
        """(id, version, date_added) of the oldest versions past retention: added before
        the cutoff of their own TLP rank (`cutoffs[rank]`; None keeps that rank)."""
        conn = self._conn()
        key = self._key(conn, collection, create=False)
        return [] if key is None else _expired(conn, key, cutoffs, limit)

    def purge(self, collection: str, cutoffs: Sequence[int | None], limit: int = 1000,
              audit: Callable[[list[tuple[str, str, int]]], AuditEntry] | None = None
              ) -> int:
        """Delete up to `limit` of the oldest versions past retention (see `expired`), as
        `delete` does (flags, references and the ranks of referrers follow), with `audit`
        of what went in the same transaction. Readers' `next` stays valid: it resumes after
        a date_added, and what went was added before the newest of what is left."""
        with self._write() as conn:
            key = self._key(conn, collection, create=False)
            gone = [] if key is None else _expired(conn, key, cutoffs, limit)
            if key is None or not gone:
                return 0
            self._remove(conn, key, {(ident, added) for ident, _, added in gone})
            if audit is not None:
                _append(conn, [audit(gone)])
        return len(gone)

    def _remove(self, conn: sqlite3.Connection, key: int, chosen: set[tuple[str, int]]) -> None:
        """Delete these (id, date_added) versions; flags, references and the effective ranks
        of what referenced them follow."""
        working = Versions(_Backend(self, conn, key))
        working.drop(chosen)
        self._flush(conn, key, working)

    def _flush(self, conn: sqlite3.Connection, key: int, working: Versions) -> None:
        """Write what the working set decided: new rows, their references, changed flags."""
        self._delete_rows(conn, key, working.removed, working.refs, working.backend.body)
        self._insert_rows(conn, key, working.rows_to_insert())
        conn.executemany(
            "UPDATE objects SET rank = ?, h2 = ?, last = ?, first = ?, spec_latest = ?, "
            "newer = ?, older = ?, top = ?, bottom = ? WHERE seq = ?",
            [(r.rank, r.h2, r.last, r.first, r.spec_latest, r.newer, r.older,
              self._pusher(conn, r.top, create=True), self._pusher(conn, r.bottom, create=True),
              r.key) for r in working.rows_to_update()])

    def _delete_rows(self, conn: sqlite3.Connection, key: int, rows: Iterable[Row],
                     refs: Callable[[Row], Iterable[str]], body: Callable[[Row], bytes]) -> None:
        """Delete versions with their references and search terms."""
        for row in rows:
            facts = index(orjson.loads(row.body if row.body is not None else body(row)))
            conn.execute("DELETE FROM objects WHERE seq = ?", (row.key,))
            conn.executemany("DELETE FROM refs WHERE coll = ? AND dst = ? AND seq = ?",
                             [(key, id_hash(ref), row.key) for ref in refs(row)])
            conn.executemany("DELETE FROM terms WHERE coll = ? AND term = ? AND added = ?",
                             [(key, term, row.added) for term in facts.terms])
            if facts.texts:  # a contentless index forgets a row given what it was given
                conn.execute("INSERT INTO grams (grams, rowid, v) VALUES ('delete', ?, ?)",
                             (row.key, _text(facts)))

    def _insert_rows(self, conn: sqlite3.Connection, key: int, new: list[Row]) -> None:
        """Insert versions (their derived facts decided) with their references and search
        terms, each taking the next seq."""
        if not new:
            return
        seq = conn.execute("SELECT coalesce(max(seq), 0) FROM objects").fetchone()[0]
        for row in new:
            seq += 1
            row.key = seq
        pairs = [(r, r.found or index(orjson.loads(r.body or b"{}"))) for r in new]
        pushers = {p: self._pusher(conn, p, create=True)
                   for p in {name for r in new for name in (r.pusher, r.top, r.bottom)}}
        conn.executemany(
            "INSERT INTO objects (seq, coll, idh, id, type, vkey, version, spec, added, "
            "last, first, spec_latest, base, bh2, rank, h2, newer, older, pusher, top, "
            "bottom, body, src, vfrom, vuntil) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.key, key, _hashed(r.id), r.id, r.type, r.vkey, r.version, r.spec, r.added,
              r.last, r.first, r.spec_latest, r.base, r.base_h2, r.rank, r.h2, r.newer,
              r.older, pushers[r.pusher], pushers[r.top], pushers[r.bottom], r.body,
              _source(facts), facts.valid_from, facts.valid_until) for r, facts in pairs])
        # In key order: each page of these indexes (random hashes, terms) is then visited
        # once per write, not once per row.
        # (The rows come in seq and date_added order, which a stable sort keeps.)
        conn.executemany("INSERT OR IGNORE INTO refs (coll, dst, seq) VALUES (?, ?, ?)",
                         sorted(((key, _hashed(ref), r.key) for r in new for ref in r.refs or ()),
                                key=_second))
        conn.executemany("INSERT OR IGNORE INTO terms (coll, term, added) VALUES (?, ?, ?)",
                         sorted(((key, term, r.added) for r, facts in pairs
                                 for term in facts.terms), key=_second))
        conn.executemany("INSERT INTO grams (rowid, v) VALUES (?, ?)",
                         [(r.key, _text(facts)) for r, facts in pairs if facts.texts])

    # -- statuses ----------------------------------------------------------------------
    def save_status(self, status: Status, request: bytes | None,
                    audit: AuditEntry | None = None) -> None:
        with self._write() as conn:
            _save_status(conn, status, request)
            if audit is not None:
                _append(conn, [audit])

    # -- the audit trail ---------------------------------------------------------------
    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        if entries:
            with self._write() as conn:
                _append(conn, entries)

    def prune_audit(self, through: int, entry: AuditEntry) -> int:
        with self._write() as conn:
            row = conn.execute("SELECT hash FROM audit WHERE seq = ?", (through,)).fetchone()
            if row is None:
                return 0
            base = orjson.dumps({"seq": through, "hash": _bytes(row[0]).hex()})
            gone = conn.execute("DELETE FROM audit WHERE seq <= ?", (through,)).rowcount
            conn.execute("INSERT INTO state (name, doc) VALUES ('audit:base', ?) "
                         "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc", (base,))
            _append(conn, [entry])
        return int(gone)

    def audit_records(self, after: int = 0, limit: int = 1000,
                      since: int | None = None) -> list[AuditRecord]:
        sql = "SELECT seq, at, partner, body, hash FROM audit WHERE seq > ?"
        args: list[Any] = [after]
        if since is not None:  # the first record at or after `since`, then in order
            first = self._conn().execute("SELECT min(seq) FROM audit WHERE at >= ?",
                                         (since,)).fetchone()[0]
            args[0] = max(after, (first or 2**62) - 1)
        rows = self._conn().execute(f"{sql} ORDER BY seq LIMIT ?", [*args, limit]).fetchall()
        return [AuditRecord(seq, at, str(partner), _bytes(body), _bytes(digest))
                for seq, at, partner, body, digest in rows]

    def audit_newest(self, before: int | None = None, limit: int = 1000) -> list[AuditRecord]:
        rows = self._conn().execute(
            "SELECT seq, at, partner, body, hash FROM audit WHERE seq < ? ORDER BY seq DESC "
            "LIMIT ?", (2**62 if before is None else before, limit)).fetchall()
        return [AuditRecord(seq, at, str(partner), _bytes(body), _bytes(digest))
                for seq, at, partner, body, digest in rows]

    def get_status(self, api_root: str, status_id: str) -> Status | None:
        row = self._conn().execute(
            "SELECT id, api_root, coll, partner, requested, state, doc FROM statuses "
            "WHERE id = ? AND api_root = ?", (status_id, api_root)).fetchone()
        return _status(row) if row else None

    def claim_pending(self, lease_seconds: float, status_id: str | None = None) -> list[str]:
        now = time.time()
        with self._write(durable=False) as conn:  # a lost lease is taken again
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

    # -- named state (bookmarks) and leases ---------------------------------------------
    def get_state(self, name: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT doc FROM state WHERE name = ?", (name,)).fetchone()
        return orjson.loads(row[0]) if row and row[0] is not None else None

    def put_state(self, name: str, doc: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO state (name, doc) VALUES (?, ?) ON CONFLICT (name) "
                         "DO UPDATE SET doc = excluded.doc", (name, orjson.dumps(doc)))

    def claim(self, name: str, lease_seconds: float, holder: str,
              gone: Callable[[str], bool] = lambda holder: False) -> bool:
        now = time.time()
        with self._write() as conn:
            row = conn.execute("SELECT lease, holder FROM state WHERE name = ?",
                               (name,)).fetchone()
            if row is not None and row[0] is not None and row[0] > now and row[1] != holder \
                    and not gone(row[1] or ""):
                return False
            conn.execute("INSERT INTO state (name, lease, holder) VALUES (?, ?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET lease = excluded.lease, "
                         "holder = excluded.holder", (name, now + lease_seconds, holder))
        return True

    def release(self, name: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute("UPDATE state SET lease = NULL, holder = NULL WHERE name = ? "
                         "AND holder = ?", (name, holder))

    # -- copying between stores --------------------------------------------------------
    def dump(self, part: str, after: Any, limit: int) -> list[dict[str, Any]]:
        conn = self._conn()
        names = self._pusher_ids

        def pusher_id(key: int) -> str:
            return names[key] if key in names else self._pusher_id(conn, key)

        return sqlite_dump.dump(conn, part, after, limit, pusher_id)

    def restore(self, part: str, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        with self._write() as conn:
            def coll_key(collection: str) -> int:
                key = self._key(conn, collection, create=True)
                assert key is not None
                return key

            def pusher_key(partner: str) -> int:
                key = self._pusher(conn, partner, create=True)
                assert key is not None
                return key

            if part == "objects":
                self._restore_objects(conn, records)
            else:
                sqlite_dump.restore(conn, part, records, coll_key, pusher_key)

    def _restore_objects(self, conn: sqlite3.Connection, records: list[dict[str, Any]]) -> None:
        """Versions as dumped, derived facts and all, through the same row writes as `write`
        (references and search terms come along). One already there under the same
        (collection, date_added) is replaced: a copy run again doubles nothing."""
        clocks: dict[str, int] = {}
        for collection, group in itertools.groupby(records, key=lambda r: r["collection"]):
            key = self._key(conn, collection, create=True)
            assert key is not None
            rows = [Row(id=r["id"], type=r["type"], vkey=r["vkey"], version=r["version"],
                        spec=r["spec"], added=r["added"], base=r["base"],
                        base_h2=r["base_h2"], pusher=r["pusher"], rank=r["rank"], h2=r["h2"],
                        body=r["body"], refs=tuple(r["refs"]), last=r["last"],
                        first=r["first"], spec_latest=r["spec_latest"], newer=r["newer"],
                        older=r["older"], top=r["top"], bottom=r["bottom"]) for r in group]
            there = conn.execute(
                f"SELECT seq, added, body FROM objects WHERE coll = ? AND added IN "
                f"({_marks(rows)})", [key, *(r.added for r in rows)]).fetchall()
            old = [Row(id="", type="", vkey="", version="", spec="", added=added, base=0,
                       base_h2=False, pusher="", rank=0, h2=False, key=seq, body=bytes(body),
                       refs=references(orjson.loads(body))) for seq, added, body in there]
            self._delete_rows(conn, key, old, lambda row: row.refs or (),
                              lambda row: row.body or b"{}")
            self._insert_rows(conn, key, rows)
            clocks[collection] = max([clocks.get(collection, 0), *(r.added for r in rows)])
        conn.executemany("INSERT INTO clock (coll, added) VALUES (?, ?) ON CONFLICT (coll) "
                         "DO UPDATE SET added = max(added, excluded.added)", list(clocks.items()))

    def backup(self, path: str | Path) -> int:
        """Write a consistent copy of the file to `path` while servers go on reading and
        writing it; return its size. SQLite's online backup runs in one step: one read
        transaction, which in WAL mode never blocks a writer (a backup in several steps
        starts over whenever another process writes, and may never end on a busy server).
        The copy is written beside `path` and moved there only once it passes
        `PRAGMA integrity_check`, so `path` is always a whole backup. It is readable by its
        owner only: it holds everything the store does."""
        target = Path(path)
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        copy = sqlite3.connect(partial, isolation_level=None)
        try:
            self._conn().backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            copy.close()
        if verdict != "ok":
            partial.unlink()
            raise Unavailable(f"the backup failed its integrity check ({verdict})", 1)
        os.replace(partial, target)
        return target.stat().st_size

    # -- migration ---------------------------------------------------------------------
    def _migrate_v2(self, conn: sqlite3.Connection) -> None:
        """Add the visibility facts to a schema 2 file. Objects keep their date_added; an
        object without a TLP marking is taken as AMBER (the collection's default marking
        was not recorded before)."""
        log.warning("migrating %s to schema %d (visibility facts)", self.path, SCHEMA_VERSION)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("ALTER TABLE objects RENAME TO objects_v2")
            for index in ("objects_id", "objects_added", "objects_latest", "objects_first",
                          "objects_type"):
                conn.execute(f"DROP INDEX IF EXISTS {index}")
            for statement in SCHEMA.split(";"):  # executescript would commit halfway
                if statement.strip():
                    conn.execute(statement)
            rows = conn.execute("SELECT seq, coll, idh, id, type, vkey, version, spec, added, "
                                "last, first, spec_latest, body FROM objects_v2 ORDER BY seq")
            colls: dict[int, set[str]] = {}
            while chunk := rows.fetchmany(5000):
                values: list[tuple[Any, ...]] = []
                refs: list[tuple[int, int, int]] = []
                for (seq, coll, idh, ident, kind, vkey, version, spec, added, last, first,
                     spec_latest, body) in chunk:
                    obj = orjson.loads(body)
                    marked = marking_rank(obj)
                    base = AMBER if marked is None else marked
                    h2 = "H2" in handling_codes(obj)
                    values.append((seq, coll, idh, ident, kind, vkey, version, spec, added,
                                   last, first, spec_latest, base, h2, base, h2,
                                   NONE, NONE, 0, 0, 0, body))
                    refs.extend((coll, id_hash(ref), seq) for ref in references(obj))
                    colls.setdefault(coll, set()).add(ident)
                conn.executemany(
                    "INSERT INTO objects (seq, coll, idh, id, type, vkey, version, spec, added, "
                    "last, first, spec_latest, base, bh2, rank, h2, newer, older, pusher, top, "
                    "bottom, body) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
                conn.executemany("INSERT OR IGNORE INTO refs (coll, dst, seq) VALUES (?, ?, ?)",
                                 refs)
            conn.execute("DROP TABLE objects_v2")
            for coll, ids in colls.items():
                ordered = sorted(ids)
                for start in range(0, len(ordered), 2000):
                    working = Versions(_Backend(self, conn, coll))
                    working.recompute(ordered[start:start + 2000])
                    working.settle()
                    self._flush(conn, coll, working)
            conn.execute("PRAGMA user_version = 4")  # the search index follows (v4 to v5)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


    def _migrate_v4(self, conn: sqlite3.Connection) -> None:
        """Add the search index and the filter columns to a schema 4 file: every stored
        version's terms, text, source and validity, read from its body once."""
        log.warning("migrating %s to schema %d (search index)", self.path, SCHEMA_VERSION)
        conn.execute("BEGIN IMMEDIATE")
        try:
            have = _columns(conn, "objects")
            for column, kind in (("src", "INTEGER NOT NULL DEFAULT 0"), ("vfrom", "INTEGER"),
                                 ("vuntil", "INTEGER")):
                if column not in have:
                    conn.execute(f"ALTER TABLE objects ADD COLUMN {column} {kind}")
            for statement in SCHEMA.split(";"):  # executescript would commit halfway
                if statement.strip():
                    conn.execute(statement)
            conn.execute("DELETE FROM terms")
            conn.execute("DELETE FROM grams")
            rows = conn.execute("SELECT seq, coll, added, body FROM objects ORDER BY seq")
            while chunk := rows.fetchmany(5000):
                updates: list[tuple[Any, ...]] = []
                found: list[tuple[int, str, int]] = []
                texts: list[tuple[int, str]] = []
                for seq, coll, added, body in chunk:
                    facts = index(orjson.loads(_bytes(body)))
                    updates.append((_source(facts), facts.valid_from, facts.valid_until, seq))
                    found.extend((coll, term, added) for term in facts.terms)
                    if facts.texts:
                        texts.append((seq, _text(facts)))
                conn.executemany("UPDATE objects SET src = ?, vfrom = ?, vuntil = ? "
                                 "WHERE seq = ?", updates)
                conn.executemany("INSERT OR IGNORE INTO terms (coll, term, added) "
                                 "VALUES (?, ?, ?)", found)
                conn.executemany("INSERT INTO grams (rowid, v) VALUES (?, ?)", texts)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class _Backend:
    """The rules' view of one collection inside one write transaction."""

    def __init__(self, store: SQLiteStore, conn: sqlite3.Connection, key: int) -> None:
        self.store, self.conn, self.key = store, conn, key

    def load(self, ids: Iterable[str], *, bodies: bool) -> dict[str, list[Row]]:
        wanted = set(ids)
        found: dict[str, list[Row]] = {}
        hashes = sorted({_hashed(i) for i in wanted})
        columns = _ROW + (", body" if bodies else "")
        for start in range(0, len(hashes), 500):
            chunk = hashes[start:start + 500]
            for values in self.conn.execute(
                    f"SELECT {columns} FROM objects INDEXED BY objects_id "
                    f"WHERE coll = ? AND idh IN ({_marks(chunk)})", (self.key, *chunk)):
                if values[1] in wanted:  # the id itself settles a hash collision
                    found.setdefault(values[1], []).append(self._row(values, bodies))
        return found

    def _row(self, values: Sequence[Any], bodies: bool) -> Row:
        (seq, ident, kind, vkey, version, spec, added, base, bh2, pusher, rank, h2, last,
         first, spec_latest, newer, older, top, bottom) = values[:19]
        names = self.store._pusher_ids

        def name(conn: sqlite3.Connection, key: int) -> str:
            return names[key] if key in names else self.store._pusher_id(conn, key)

        return Row(id=ident, type=kind, vkey=vkey, version=version, spec=spec, added=added,
                   base=base, base_h2=bool(bh2), pusher=name(self.conn, pusher), rank=rank,
                   h2=bool(h2), key=seq, body=values[19] if bodies else None,
                   last=bool(last), first=bool(first), spec_latest=bool(spec_latest),
                   newer=newer, older=older, top=name(self.conn, top),
                   bottom=name(self.conn, bottom))

    def newest_facts(self, ids: Iterable[str]) -> dict[str, tuple[int, bool]]:
        wanted = set(ids)
        found: dict[str, tuple[int, bool]] = {}
        hashes = sorted({_hashed(i) for i in wanted})
        for start in range(0, len(hashes), 500):
            chunk = hashes[start:start + 500]
            for ident, rank, h2 in self.conn.execute(
                    "SELECT id, rank, h2 FROM objects INDEXED BY objects_id "
                    f"WHERE coll = ? AND idh IN ({_marks(chunk)}) AND last = 1 "
                    "AND spec_latest = 1", (self.key, *chunk)):
                if ident in wanted:  # the id itself settles a hash collision
                    found[ident] = (rank, bool(h2))
        return found

    def body(self, row: Row) -> bytes:
        found = self.conn.execute("SELECT body FROM objects WHERE seq = ?", (row.key,))
        body: bytes = found.fetchone()[0]
        return body

    def referrers(self, ids: Iterable[str]) -> set[str]:
        hashes = sorted({_hashed(i) for i in ids})
        found: set[str] = set()
        for start in range(0, len(hashes), 500):
            chunk = hashes[start:start + 500]
            found.update(row[0] for row in self.conn.execute(
                "SELECT DISTINCT o.id FROM refs r JOIN objects o ON o.seq = r.seq "
                f"WHERE r.coll = ? AND r.dst IN ({_marks(chunk)})", (self.key, *chunk)))
        return found


def _compact(conn: sqlite3.Connection, table: str, known: dict[str, int], value: str,
             create: bool) -> int | None:
    """The small integer standing for a collection or partner id in every index (it never
    changes once given; `create` only inside a write transaction)."""
    key = known.get(value)
    if key is None:
        row = conn.execute(f"SELECT key FROM {table} WHERE id = ?", (value,)).fetchone()
        if row is None and create:
            row = conn.execute(f"INSERT INTO {table} (id) VALUES (?) RETURNING key",
                               (value,)).fetchone()
        if row is None:
            return None
        key = known[value] = row[0]
    return key


def _source(facts: Indexed) -> int:
    return _hashed(facts.source) if facts.source else 0


def _text(facts: Indexed) -> str:
    """One version's domains and URLs as the trigram index holds them: each after the mark, so
    that a prefix search is a phrase that starts with it."""
    return "\n".join(MARK + text for text in facts.texts)


def _added(row: Sequence[Any]) -> int:
    added: int = row[2]
    return added


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Move a schema 1 file (collection ids and object ids as index keys) to schema 2."""
    conn.create_function("id_hash", 1, id_hash, deterministic=True)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE objects RENAME TO objects_v1")
        for index in ("objects_version", "objects_added", "objects_latest", "objects_first",
                      "objects_type"):
            conn.execute(f"DROP INDEX IF EXISTS {index}")
        conn.execute("CREATE TABLE IF NOT EXISTS colls (key INTEGER PRIMARY KEY, "
                     "id TEXT NOT NULL UNIQUE)")
        conn.execute("CREATE TABLE objects (seq INTEGER PRIMARY KEY, coll INTEGER NOT NULL, "
                     "idh INTEGER NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL, "
                     "vkey TEXT NOT NULL, version TEXT NOT NULL, spec TEXT NOT NULL, "
                     "added INTEGER NOT NULL, last INTEGER NOT NULL, first INTEGER NOT NULL, "
                     "spec_latest INTEGER NOT NULL, body BLOB NOT NULL)")
        conn.execute("INSERT INTO colls (id) SELECT DISTINCT coll FROM objects_v1")
        conn.execute(
            "INSERT INTO objects (seq, coll, idh, id, type, vkey, version, spec, added, last, "
            "first, spec_latest, body) SELECT o.seq, c.key, id_hash(o.id), o.id, o.type, o.vkey, "
            "o.version, o.spec, o.added, o.last, o.first, o.spec_latest, o.body "
            "FROM objects_v1 o JOIN colls c ON c.id = o.coll")
        conn.execute("DROP TABLE objects_v1")
        conn.execute("PRAGMA user_version = 2")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _expired(conn: sqlite3.Connection, key: int, cutoffs: Sequence[int | None],
             limit: int) -> list[tuple[str, str, int]]:
    """One range of the date_added index per distinct cutoff, oldest first."""
    groups: dict[int, list[int]] = {}
    for rank, cutoff in enumerate(cutoffs):
        if cutoff is not None:
            groups.setdefault(cutoff, []).append(rank)
    found: list[tuple[str, str, int]] = []
    for cutoff, ranks in groups.items():
        marks = ", ".join("?" * len(ranks))
        found += conn.execute(
            f"SELECT id, version, added FROM objects INDEXED BY objects_added "
            f"WHERE coll = ? AND added < ? AND base IN ({marks}) ORDER BY added LIMIT ?",
            (key, cutoff, *ranks, limit)).fetchall()
    found.sort(key=lambda row: row[2])
    return found[:limit]


def _bytes(value: object) -> bytes:
    """A BLOB as written, or what an edit made of it (SQLite's string functions give TEXT):
    the audit check must see the edit, not fail on it."""
    return value if isinstance(value, bytes) else str(value).encode()


def _append(conn: sqlite3.Connection, entries: Sequence[AuditEntry]) -> None:
    """Chain entries after the last record, inside the caller's write transaction (which
    holds SQLite's write lock, so two processes cannot take the same number)."""
    last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, previous = last or (0, chain.GENESIS)
    records = chain.extend(seq, previous, entries)
    conn.executemany("INSERT INTO audit (seq, at, partner, body, hash) VALUES (?, ?, ?, ?, ?)",
                     [(r.seq, r.at, r.partner, r.body, r.hash) for r in records])


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


def _unavailable_when_busy(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except sqlite3.OperationalError as exc:  # locked past busy_seconds, disk full, I/O
            raise Unavailable(f"the store cannot answer now ({exc}); try again", 1) from exc
    return run


# Driver errors become the project's own: a locked or failing file is a 503 the client may
# retry, never a raw sqlite3 error (a 500). Opening stays as it is: a server that cannot open
# its store must not start.
for _name in ("ping", "query", "write", "delete", "expired", "purge", "save_status", "get_status",
              "claim_pending", "pending_request", "get_state", "put_state", "claim", "release",
              "append_audit", "audit_records", "audit_newest", "prune_audit", "dump", "restore",
              "backup"):
    setattr(SQLiteStore, _name, _unavailable_when_busy(getattr(SQLiteStore, _name)))
