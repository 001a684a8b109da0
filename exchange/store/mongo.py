"""The scale-out store: MongoDB through pymongo, for several stateless server processes.

One document per object version holds its JSON bytes (BSON binary, never parsed on a read)
and the facts store/rules.py decides at write time, in compact fields. Every read is a few
plain indexed finds with a sort on date_added and a keyset range (mongo_plan.py); there is no
aggregation on any request path, so a page costs the same at 10 thousand or 10 million
objects. Every change of more than one document is one transaction with majority write
concern; the per-collection date_added clock is a document each write transaction updates,
so writers in several processes take turns on it (a write conflict makes the later one
retry) and date_added stays strictly increasing per collection in commit order.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, MongoClient, ReturnDocument, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from ..errors import Unavailable
from ..model import (
    COMPLETE,
    PENDING,
    AuditEntry,
    AuditRecord,
    Candidate,
    Entry,
    Outcome,
    Page,
    Query,
    Status,
)
from . import chain
from .copy import PARTS
from .mongo_plan import INDEXES, RETIRED, Scan, expired_scans, scans
from .rules import Row, Versions, stamp
from .terms import grams, index

DEFAULT_DATABASE = "taxii_exchange"
SELECTION_MS = 3000  # how long an operation waits for a reachable server before a 503
WRITE_CONFLICT = 112  # the server's error code
CONFLICT_SECONDS = 60.0  # how long a write retries after write conflicts before it fails
T = TypeVar("T")
FACTS = 1  # the version of what `_facts` keeps of each version
# Fields a page needs; the body only when asked. (jongodb ignores projections: nothing here
# relies on a field being left out.)
_ENTRY = {"_id": 1, "id": 1, "version": 1, "added": 1, "spec": 1}
_ROW_FIELDS = ("id", "type", "vkey", "version", "spec", "added", "base", "bh2", "pusher",
               "rank", "h2", "last", "first", "sl", "newer", "older", "top", "bottom", "refs")
# Dumped object records name the facts as store/rules.py does.
_DUMP_NAMES = {"coll": "collection", "bh2": "base_h2", "sl": "spec_latest"}
_LOAD_NAMES = {v: k for k, v in _DUMP_NAMES.items()}


class MongoStore:
    def __init__(self, uri: str, *, client: Callable[[], MongoClient[Any]] | None = None
                 ) -> None:
        """`uri`: any pymongo URI (replica set options included); the database is its path
        (default taxii_exchange). `client` makes the client instead (tests: mongomock)."""
        self.uri = uri
        self._make = client
        self._client: MongoClient[Any] | None = None
        self._db: Database[Any] | None = None
        self._opened_by = 0  # the thread that opened it
        # Writes of one process take turns: they would conflict on the clock document anyway.
        self._writing = threading.RLock()

    # -- connections -------------------------------------------------------------------
    def open(self) -> None:
        if self._make is not None:
            client = self._make()
        else:
            options: dict[str, Any] = {"w": "majority"}
            if "serverselectiontimeoutms" not in self.uri.lower():
                options["serverSelectionTimeoutMS"] = SELECTION_MS
            client = MongoClient(self.uri, **options)
        self._client, self._opened_by = client, threading.get_ident()
        self._db = client.get_default_database(DEFAULT_DATABASE)
        try:
            for name, keys, extra in INDEXES:
                self._db.objects.create_index(keys, name=name, **extra)
            for name in RETIRED:
                if name in self._db.objects.index_information():
                    self._db.objects.drop_index(name)
            self._add_facts()
            self._db.statuses.create_index([("state", ASCENDING), ("lease", ASCENDING)],
                                           name="pending")
            self._db.audit.create_index([("at", ASCENDING)], name="at")
        except ConnectionFailure as exc:
            raise Unavailable(f"the MongoDB store is not reachable ({exc})", 1) from exc

    def _add_facts(self) -> None:
        """Give versions written before the search fields existed their facts, once per
        database (the `meta` document says it was done, so later starts read one document):
        without them a search or a filter would pass over those versions."""
        if (self.db.meta.find_one({"_id": "facts"}) or {}).get("version", 0) >= FACTS:
            return
        for doc in self.db.objects.find({"grams": {"$exists": False}}, {"_id": 1, "body": 1}):
            self.db.objects.update_one({"_id": doc["_id"]},
                                       {"$set": _facts(bytes(doc["body"]))})
        self.db.meta.update_one({"_id": "facts"}, {"$set": {"version": FACTS}}, upsert=True)

    def close(self) -> None:
        """Close the client, when called where it was opened. The client is shared by every
        thread of the process: a thread that ends (the ingest worker closes its store as
        SQLite's connections are per thread) leaves it to the others."""
        if self._client is not None and threading.get_ident() == self._opened_by:
            self._client.close()
            self._client = self._db = None

    @property
    def db(self) -> Database[Any]:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    def ping(self) -> int:
        """The number of pushes waiting (a range of the (state, lease) index); raises
        Unavailable unless the server answers (readiness)."""
        return int(self.db.statuses.count_documents({"state": PENDING}))

    def _transaction(self, work: Callable[[ClientSession], T]) -> T:
        """Run `work` in one transaction, again from the start when another writer took the
        same clock, status or audit number first (a write conflict), for up to
        CONFLICT_SECONDS. Unlike pymongo's `with_transaction`, a lost connection is not
        retried for two minutes: it is Unavailable now, and the client retries later."""
        assert self._client is not None
        deadline = time.monotonic() + CONFLICT_SECONDS
        with self._writing, self._client.start_session() as session:
            for attempt in itertools.count():
                if attempt:  # writers that retry at once can keep aborting each other
                    time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** attempt)))
                session.start_transaction(read_concern=ReadConcern("snapshot"),
                                          write_concern=WriteConcern("majority"))
                try:
                    result = work(session)
                except BaseException as exc:
                    if session.in_transaction:
                        session.abort_transaction()
                    if _conflict(exc, deadline):
                        continue
                    raise
                try:
                    session.commit_transaction()
                except PyMongoError as exc:
                    if _conflict(exc, deadline):
                        continue
                    raise
                return result
            raise AssertionError("unreachable")

    # -- reads -------------------------------------------------------------------------
    def query(self, query: Query, *, with_body: bool) -> Page:
        docs = self._run(scans(query), None, with_body)
        more = len(docs) > query.limit
        return Page([_entry(d, with_body) for d in docs[: query.limit]], more)

    def _run(self, plan: list[Scan], session: ClientSession | None, with_body: bool,
             limit: int | None = None) -> list[dict[str, Any]]:
        """The scans' documents merged by date_added (all scans of a plan run in one
        direction), cut to the longest scan's limit."""
        projection = {**_ENTRY, "body": 1} if with_body and len(plan) == 1 else _ENTRY
        found = []
        for scan in plan:
            cursor = self.db.objects.find(scan.filter, projection, session=session,
                                          sort=[("added", _direction(scan))], limit=scan.limit)
            found.append(list(cursor))
        cut = max((s.limit for s in plan), default=0) if limit is None else limit
        descending = any(scan.descending for scan in plan)
        docs = list(heapq.merge(*found, key=lambda d: d["added"], reverse=descending))
        if cut:
            docs = docs[:cut]
        if with_body and any("body" not in d for d in docs):
            # Bodies of the page only, not of every scan's cut.
            bodies = {d["_id"]: d["body"] for d in self.db.objects.find(
                {"_id": {"$in": [d["_id"] for d in docs]}}, {"_id": 1, "body": 1},
                session=session)}
            for doc in docs:
                doc["body"] = bodies[doc["_id"]]
        return docs

    def explain(self, plan: list[Scan]) -> list[dict[str, Any]]:
        """The server's winning plan of each find, for tests that hold every read to index
        scans (where the server has explain)."""
        found = []
        for scan in plan:
            command: dict[str, Any] = {"find": "objects", "filter": scan.filter,
                                       "sort": {"added": _direction(scan)}}
            if scan.limit:
                command["limit"] = scan.limit
            answer = self.db.command("explain", command, verbosity="queryPlanner")
            found.append(answer["queryPlanner"]["winningPlan"])
        return found

    # -- writes ------------------------------------------------------------------------
    def write(self, collection: str, candidates: Sequence[Candidate], status_id: str | None,
              finish: Callable[[list[Outcome]], Status],
              audit: Callable[[Status], AuditEntry] | None = None) -> Status | None:
        def work(session: ClientSession) -> Status | None:
            if status_id is not None:
                saved = self.db.statuses.find_one({"_id": status_id}, {"state": 1},
                                                  session=session)
                if saved is not None and saved["state"] == COMPLETE:
                    return None  # another process finished this request first
            clock = self._hold_clock(session, collection)
            working = Versions(_Backend(self, session, collection))
            working.load((c.id for c in candidates), bodies=True)
            outcomes, added = stamp(working, candidates, clock)
            working.settle()
            self._flush(session, collection, working)
            self.db.clocks.update_one({"_id": collection}, {"$set": {"added": added}},
                                      session=session)
            status = finish(outcomes)
            if status_id is not None:
                _save_status(self.db, session, status, None)
            if audit is not None:
                self._append(session, [audit(status)])
            return status

        return self._transaction(work)

    def _hold_clock(self, session: ClientSession, collection: str) -> int:
        """The collection's clock, written first thing in the transaction: a concurrent writer
        of the same collection conflicts here, and retries, before doing any work."""
        doc = self.db.clocks.find_one_and_update(
            {"_id": collection}, {"$inc": {"writes": 1}}, upsert=True,
            return_document=ReturnDocument.AFTER, session=session)
        return int(doc.get("added", 0))

    def delete(self, query: Query, audit: Callable[[int], AuditEntry] | None = None) -> int:
        def work(session: ClientSession) -> int:
            self._hold_clock(session, query.collection)
            chosen = {(d["id"], d["added"])
                      for d in self._run(scans(query, every=True), session, False, limit=0)}
            if not chosen:
                return 0
            if audit is not None:
                self._append(session, [audit(len(chosen))])
            self._remove(session, query.collection, chosen)
            return len(chosen)

        return self._transaction(work)

    def expired(self, collection: str, cutoffs: Sequence[int | None],
                limit: int = 1000) -> list[tuple[str, str, int]]:
        return self._expired(None, collection, cutoffs, limit)

    def _expired(self, session: ClientSession | None, collection: str,
                 cutoffs: Sequence[int | None], limit: int) -> list[tuple[str, str, int]]:
        """One range of the (coll, added) index per distinct cutoff, oldest first."""
        plan = expired_scans(collection, tuple(cutoffs), limit)
        return [(d["id"], d["version"], d["added"])
                for d in self._run(plan, session, False, limit=limit)]

    def purge(self, collection: str, cutoffs: Sequence[int | None], limit: int = 1000,
              audit: Callable[[list[tuple[str, str, int]]], AuditEntry] | None = None
              ) -> int:
        def work(session: ClientSession) -> int:
            self._hold_clock(session, collection)
            gone = self._expired(session, collection, cutoffs, limit)
            if not gone:
                return 0
            self._remove(session, collection, {(ident, added) for ident, _, added in gone})
            if audit is not None:
                self._append(session, [audit(gone)])
            return len(gone)

        return self._transaction(work)

    def _remove(self, session: ClientSession, collection: str,
                chosen: set[tuple[str, int]]) -> None:
        """Delete these (id, date_added) versions; flags, references and the effective ranks
        of what referenced them follow."""
        working = Versions(_Backend(self, session, collection))
        working.drop(chosen)
        self._flush(session, collection, working)

    def _flush(self, session: ClientSession, collection: str, working: Versions) -> None:
        """Write what the working set decided: new documents, changed facts, removals."""
        objects = self.db.objects
        if working.removed:
            objects.delete_many({"_id": {"$in": [r.key for r in working.removed]}},
                                session=session)
        new = working.rows_to_insert()
        if new:
            for row in new:
                row.key = ObjectId()
            objects.insert_many([_document(collection, r, working.refs(r)) for r in new],
                                session=session)
        changed = [UpdateOne({"_id": r.key}, {"$set": {
            "rank": r.rank, "h2": r.h2, "last": r.last, "first": r.first, "sl": r.spec_latest,
            "newer": r.newer, "older": r.older, "top": r.top, "bottom": r.bottom}})
            for r in working.rows_to_update()]
        if changed:
            objects.bulk_write(changed, session=session)

    # -- statuses ----------------------------------------------------------------------
    def save_status(self, status: Status, request: bytes | None,
                    audit: AuditEntry | None = None) -> None:
        if audit is None:  # one document: atomic on its own
            _save_status(self.db, None, status, request)
            return

        def work(session: ClientSession) -> None:
            _save_status(self.db, session, status, request)
            self._append(session, [audit])

        self._transaction(work)

    def get_status(self, api_root: str, status_id: str) -> Status | None:
        doc = self.db.statuses.find_one({"_id": status_id, "api_root": api_root})
        return _status(doc) if doc else None

    def claim_pending(self, lease_seconds: float, status_id: str | None = None) -> list[str]:
        """Each claim is one conditional update of one status: of two processes claiming at
        once, one takes it."""
        now = time.time()
        free: dict[str, Any] = {"state": PENDING,
                                "$or": [{"lease": None}, {"lease": {"$lt": now}}]}
        if status_id is not None:
            free["_id"] = status_id
        claimed = []
        for doc in list(self.db.statuses.find(free, {"_id": 1})):
            taken = self.db.statuses.find_one_and_update(
                {**free, "_id": doc["_id"]}, {"$set": {"lease": now + lease_seconds}},
                projection={"_id": 1})
            if taken is not None:
                claimed.append(doc["_id"])
        return claimed

    def pending_request(self, status_id: str) -> tuple[Status, bytes] | None:
        doc = self.db.statuses.find_one({"_id": status_id, "state": PENDING})
        if doc is None or doc.get("request") is None:
            return None
        return _status(doc), bytes(doc["request"])

    # -- named state (bookmarks) and leases ---------------------------------------------
    def get_state(self, name: str) -> dict[str, Any] | None:
        doc = self.db.state.find_one({"_id": name})
        if doc is None or doc.get("doc") is None:
            return None
        loaded: dict[str, Any] = orjson.loads(doc["doc"])
        return loaded

    def put_state(self, name: str, doc: dict[str, Any]) -> None:
        self.db.state.update_one({"_id": name}, {"$set": {"doc": orjson.dumps(doc)}},
                                 upsert=True)

    def claim(self, name: str, lease_seconds: float, holder: str,
              gone: Callable[[str], bool] = lambda holder: False) -> bool:
        """Compare and set on one document: taken only if it is still as it was read."""
        for _ in range(10):
            now = time.time()
            doc = self.db.state.find_one({"_id": name})
            lease, held_by = (doc.get("lease"), doc.get("holder")) if doc else (None, None)
            if lease is not None and lease > now and held_by != holder \
                    and not gone(held_by or ""):
                return False
            update = {"$set": {"lease": now + lease_seconds, "holder": holder}}
            if doc is None:
                try:
                    self.db.state.insert_one({"_id": name, "doc": None,
                                              **update["$set"]})
                    return True
                except DuplicateKeyError:
                    continue  # another process created it first: read it again
            if self.db.state.update_one({"_id": name, "lease": lease, "holder": held_by},
                                        update).matched_count:
                return True
        return False

    def release(self, name: str, holder: str) -> None:
        self.db.state.update_one({"_id": name, "holder": holder},
                                 {"$set": {"lease": None, "holder": None}})

    # -- the audit trail ---------------------------------------------------------------
    def _append(self, session: ClientSession, entries: Sequence[AuditEntry]) -> None:
        """Chain entries after the last record inside the caller's transaction. Numbers are
        the documents' _id: two transactions taking the same number conflict, and the later
        one retries with the next."""
        last = self.db.audit.find_one({}, sort=[("_id", DESCENDING)], session=session)
        seq, previous = (last["_id"], bytes(last["hash"])) if last else (0, chain.GENESIS)
        records = chain.extend(seq, previous, entries)
        self.db.audit.insert_many([{"_id": r.seq, "at": r.at, "partner": r.partner,
                                    "body": r.body, "hash": r.hash} for r in records],
                                  session=session)

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        if entries:
            self._transaction(lambda session: self._append(session, entries))

    def prune_audit(self, through: int, entry: AuditEntry) -> int:
        def work(session: ClientSession) -> int:
            row = self.db.audit.find_one({"_id": through}, session=session)
            if row is None:
                return 0
            base = orjson.dumps({"seq": through, "hash": bytes(row["hash"]).hex()})
            gone = self.db.audit.delete_many({"_id": {"$lte": through}}, session=session)
            self.db.state.update_one({"_id": "audit:base"}, {"$set": {"doc": base}},
                                     upsert=True, session=session)
            self._append(session, [entry])
            return int(gone.deleted_count)

        return self._transaction(work)

    def audit_records(self, after: int = 0, limit: int = 1000,
                      since: int | None = None) -> list[AuditRecord]:
        if since is not None:  # the first record at or after `since`, then in order
            first = self.db.audit.find_one({"at": {"$gte": since}}, {"_id": 1},
                                           sort=[("_id", ASCENDING)])
            after = max(after, (first["_id"] if first else 2**62) - 1)
        docs = self.db.audit.find({"_id": {"$gt": after}}, sort=[("_id", ASCENDING)],
                                  limit=limit)
        return [AuditRecord(d["_id"], d["at"], str(d["partner"]), bytes(d["body"]),
                            bytes(d["hash"])) for d in docs]

    def audit_newest(self, before: int | None = None, limit: int = 1000) -> list[AuditRecord]:
        where = {} if before is None else {"_id": {"$lt": before}}
        docs = self.db.audit.find(where, sort=[("_id", DESCENDING)], limit=limit)
        return [AuditRecord(d["_id"], d["at"], str(d["partner"]), bytes(d["body"]),
                            bytes(d["hash"])) for d in docs]

    # -- copying between stores -----------------------------------------------------------
    def dump(self, part: str, after: Any, limit: int) -> list[dict[str, Any]]:
        """One page of `part`, in key order after `after` (None: from the start)."""
        if part == "objects":
            where: dict[str, Any] = {}
            if after is not None:
                coll, added = after
                where = {"$or": [{"coll": {"$gt": coll}},
                                 {"coll": coll, "added": {"$gt": added}}]}
            docs = self.db.objects.find(where, sort=[("coll", ASCENDING), ("added", ASCENDING)],
                                        limit=limit)
            return [_dumped_object(d) for d in docs]
        if part not in _PARTS:
            raise ValueError(f"no store part {part!r} (parts: {', '.join(PARTS)})")
        table, key = _PARTS[part]
        where = {} if after is None else {"_id": {"$gt": after}}
        found = self.db[table].find(where, sort=[("_id", ASCENDING)], limit=limit)
        records = [{key: d["_id"], **{k: _plain(v) for k, v in d.items() if k != "_id"}}
                   for d in found]
        if part == "state":  # a document, as get_state gives it (kept here as JSON bytes)
            for record in records:
                record.setdefault("lease", None)
                record.setdefault("holder", None)
                if record.get("doc") is not None:
                    record["doc"] = orjson.loads(record["doc"])
                record.setdefault("doc", None)
        return records

    def restore(self, part: str, records: list[dict[str, Any]]) -> None:
        """Write records as `dump` gives them; one already there is replaced (a copy can be
        resumed), and each collection's clock moves to at least what was restored."""
        if not records:
            return
        if part == "objects":
            newest: dict[str, int] = {}
            for record in records:
                doc = {_LOAD_NAMES.get(k, k): v for k, v in record.items()}
                doc["refs"] = list(doc.get("refs") or ())
                doc.update(_facts(doc["body"]))
                self.db.objects.replace_one({"coll": doc["coll"], "added": doc["added"]}, doc,
                                            upsert=True)
                newest[doc["coll"]] = max(newest.get(doc["coll"], 0), doc["added"])
            for coll, added in newest.items():
                clock = self.db.clocks.find_one({"_id": coll})
                if clock is None or clock.get("added", 0) < added:
                    self.db.clocks.update_one({"_id": coll}, {"$set": {"added": added}},
                                              upsert=True)
            return
        if part not in _PARTS:
            raise ValueError(f"no store part {part!r} (parts: {', '.join(PARTS)})")
        table, key = _PARTS[part]
        for record in records:
            doc = {k: v for k, v in record.items() if k != key}
            if part == "state" and doc.get("doc") is not None:
                doc["doc"] = orjson.dumps(doc["doc"])
            self.db[table].replace_one({"_id": record[key]}, doc, upsert=True)


_PARTS = {"statuses": ("statuses", "id"), "audit": ("audit", "seq"), "state": ("state", "name")}


class _Backend:
    """The rules' view of one collection inside one write transaction."""

    def __init__(self, store: MongoStore, session: ClientSession, collection: str) -> None:
        self.store, self.session, self.collection = store, session, collection

    def load(self, ids: Iterable[str], *, bodies: bool) -> dict[str, list[Row]]:
        found: dict[str, list[Row]] = {}
        wanted = sorted(set(ids))
        projection = None if bodies else {"body": 0}
        for start in range(0, len(wanted), 1000):
            for doc in self.store.db.objects.find(
                    {"coll": self.collection, "id": {"$in": wanted[start:start + 1000]}},
                    projection, session=self.session):
                found.setdefault(doc["id"], []).append(_row(doc, bodies))
        return found

    def body(self, row: Row) -> bytes:
        doc = self.store.db.objects.find_one({"_id": row.key}, {"body": 1},
                                             session=self.session)
        assert doc is not None
        return bytes(doc["body"])

    def referrers(self, ids: Iterable[str]) -> set[str]:
        wanted = sorted(set(ids))
        found: set[str] = set()
        for start in range(0, len(wanted), 1000):
            found.update(doc["id"] for doc in self.store.db.objects.find(
                {"coll": self.collection, "refs": {"$in": wanted[start:start + 1000]}},
                {"id": 1}, session=self.session))
        return found


def _row(doc: dict[str, Any], bodies: bool) -> Row:
    return Row(id=doc["id"], type=doc["type"], vkey=doc["vkey"], version=doc["version"],
               spec=doc["spec"], added=doc["added"], base=doc["base"], base_h2=doc["bh2"],
               pusher=doc["pusher"], rank=doc["rank"], h2=doc["h2"], key=doc["_id"],
               body=bytes(doc["body"]) if bodies else None, refs=tuple(doc["refs"]),
               last=doc["last"], first=doc["first"], spec_latest=doc["sl"],
               newer=doc["newer"], older=doc["older"], top=doc["top"], bottom=doc["bottom"])


def _document(collection: str, row: Row, refs: Sequence[str]) -> dict[str, Any]:
    return {"_id": row.key, "coll": collection, "id": row.id, "type": row.type,
            "vkey": row.vkey, "version": row.version, "spec": row.spec, "added": row.added,
            "base": row.base, "bh2": row.base_h2, "pusher": row.pusher, "rank": row.rank,
            "h2": row.h2, "last": row.last, "first": row.first, "sl": row.spec_latest,
            "newer": row.newer, "older": row.older, "top": row.top, "bottom": row.bottom,
            "refs": list(refs), "body": row.body, **_facts(row.body or b"{}")}


def _facts(body: bytes) -> dict[str, Any]:
    """What a version is found by (store/terms.py), decided once when it is written: the
    pages' filters and the search read these fields inside their finds."""
    facts = index(orjson.loads(body))
    return {"src": facts.source, "vfrom": facts.valid_from, "vuntil": facts.valid_until,
            "terms": sorted(facts.terms), "texts": list(facts.texts),
            "grams": sorted(grams(*facts.texts))}


def _direction(scan: Scan) -> int:
    return DESCENDING if scan.descending else ASCENDING


def _entry(doc: dict[str, Any], with_body: bool) -> Entry:
    return Entry(doc["id"], doc["version"], doc["added"], doc["spec"],
                 bytes(doc["body"]) if with_body else b"")


def _dumped_object(doc: dict[str, Any]) -> dict[str, Any]:
    record = {_DUMP_NAMES.get(k, k): _plain(doc[k]) for k in ("coll", *_ROW_FIELDS)}
    record["refs"] = list(doc["refs"])
    record["body"] = bytes(doc["body"])
    return record


def _plain(value: Any) -> Any:
    """BSON binary as bytes (pymongo gives bytes already; a subtype may come as Binary)."""
    return bytes(value) if isinstance(value, bytes) else value


def _save_status(db: Database[Any], session: ClientSession | None, status: Status,
                 request: bytes | None) -> None:
    doc = orjson.dumps({"total": status.total_count, "successes": status.successes,
                        "failures": status.failures, "pendings": status.pendings})
    db.statuses.update_one({"_id": status.id}, {
        "$set": {"state": status.status, "doc": doc, "request": request, "lease": None},
        "$setOnInsert": {"api_root": status.api_root, "collection": status.collection,
                         "partner": status.partner, "requested": status.request_timestamp}},
        upsert=True, session=session)


def _status(doc: dict[str, Any]) -> Status:
    details = orjson.loads(doc["doc"])
    return Status(id=doc["_id"], api_root=doc["api_root"], collection=doc["collection"],
                  partner=doc["partner"], request_timestamp=doc["requested"],
                  status=doc["state"], total_count=details["total"],
                  successes=details["successes"], failures=details["failures"],
                  pendings=details["pendings"])


def _conflict(exc: BaseException, deadline: float) -> bool:
    """Whether a failed transaction is worth running again: a write conflict (the server
    labels it transient), not a lost server, and there is time left."""
    transient = isinstance(exc, PyMongoError) and not isinstance(exc, ConnectionFailure) and (
        exc.has_error_label("TransientTransactionError")
        # WriteConflict: MongoDB labels it transient; jongodb sends the code alone.
        or isinstance(exc, OperationFailure) and exc.code == WRITE_CONFLICT)
    return transient and time.monotonic() < deadline


def _unavailable_when_unreachable(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        # ServerSelectionTimeoutError, AutoReconnect, NetworkTimeout are ConnectionFailures.
        except ConnectionFailure as exc:
            raise Unavailable(f"the store cannot answer now ({type(exc).__name__}); try again",
                              1) from exc
    return run


# Driver errors become the project's own: an unreachable or failing-over replica set is a
# 503 the client may retry, never a raw pymongo error (a 500).
for _name in ("ping", "query", "write", "delete", "expired", "purge", "save_status",
              "get_status", "claim_pending", "pending_request", "get_state", "put_state",
              "claim", "release", "append_audit", "audit_records", "prune_audit", "dump",
              "restore"):
    setattr(MongoStore, _name, _unavailable_when_unreachable(getattr(MongoStore, _name)))
