"""The one write path: every object that enters a collection comes through here.

`accept` checks the request and records it durably with its status before the client is
answered; `process` (run by the Worker, in the background) stores the objects and completes
the status in one transaction, so a crash at any point loses nothing and stores nothing twice.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import orjson

from . import audit
from .errors import Invalid, InvalidObject, Unavailable, Unprocessable
from .model import ALL, COMPLETE, LAST, AuditEntry, Candidate, Entry, Outcome, Query, Status
from .stix import SDO_TYPES, SRO_TYPES, ObjectFacts, check_object, now_micros
from .store import Store, terms

log = logging.getLogger(__name__)

CONFLICT = "refused: a different object with this id and version is already stored"
UNCHANGED = "already stored, unchanged"


@dataclass(frozen=True, slots=True)
class Writer:
    """Who writes into which collection: what the checks need besides the objects.

    `identities` are the `created_by_ref` values the writer's SDOs and SROs may carry (its
    own identity and those it relays); None for an operator's local load, whose source
    identity the command sets. The server never rewrites an object to make it fit.
    """

    default_rank: int  # the collection's default marking, for objects without a TLP marking
    require_marking: bool = False
    pusher: str = ""  # partner id; '' for a local load
    identity: str = ""
    identities: frozenset[str] | None = None
    custom: bool = True  # custom properties and object types accepted (legal STIX 2.1)

    def refusal(self, facts: ObjectFacts) -> str | None:
        """Why this writer may not store this object here; None when it may."""
        if self.require_marking and facts.rank is None:
            return "this collection requires a TLP marking (object_marking_refs)"
        if facts.custom and not self.custom:
            return "this collection takes no custom properties (x_...) or custom object " \
                   "types (x-...): carry extra facts in a property extension"
        if self.identities is None or facts.type not in SDO_TYPES | SRO_TYPES:
            return None
        if facts.author is None:
            if facts.id == self.identity:  # its own identity object may omit its author
                return None
            return f"created_by_ref is required: set it to this partner's identity " \
                   f"{self.identity}"
        if facts.author not in self.identities:
            return f"created_by_ref {facts.author} is not this partner's identity " \
                   f"({self.identity}) nor one it may relay"
        return None


@dataclass(frozen=True, slots=True)
class Checked:
    """A request body split into storable candidates and itemised failures."""

    candidates: list[Candidate]
    failures: list[dict[str, Any]]


def parse_request(body: bytes) -> list[Any]:
    """The objects of a TAXII envelope or a STIX bundle (stix2's TAXIICollectionSink posts one)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("objects"), list):
        raise Unprocessable("the body must be a TAXII envelope or a STIX bundle: "
                            "a JSON object with an 'objects' list")
    if "type" in document and document["type"] != "bundle":
        raise Unprocessable("a body with a 'type' must be a STIX bundle")
    return document["objects"]


def check_objects(objects: list[Any], writer: Writer) -> Checked:
    candidates, failures = [], []
    for index, obj in enumerate(objects):
        try:
            body = _serialised(obj)
            facts = check_object(obj, body)
            refused = writer.refusal(facts)
        except InvalidObject as exc:
            failures.append(_detail(obj, f"object {index}: {exc.description}"))
            continue
        if refused:
            failures.append(_detail(obj, f"object {index}: {facts.id}: {refused}"))
            continue
        candidates.append(Candidate(
            id=facts.id, type=facts.type, spec_version=facts.spec_version, version=facts.version,
            body=body, rank=writer.default_rank if facts.rank is None else facts.rank,
            h2=facts.h2, refs=facts.refs, pusher=writer.pusher, indexed=terms.index(obj),
        ))
    return Checked(candidates, failures)


def _serialised(obj: Any) -> bytes:
    try:
        body = orjson.dumps(obj)
    except orjson.JSONEncodeError as exc:  # a producer's bug, never a pushed body (JSON)
        raise InvalidObject(f"not a JSON object: {exc}") from None
    # A copy of its own size: orjson's result keeps the capacity of its write buffer (about
    # 8 KB for a 1 KB object), and a load or a push holds thousands of bodies at once.
    return bytes(memoryview(body))


def _detail(obj: Any, message: str) -> dict[str, Any]:
    fields = obj if isinstance(obj, dict) else {}
    ident, version = fields.get("id"), fields.get("modified", fields.get("created"))
    return {"id": ident if isinstance(ident, str) else "",
            "version": version if isinstance(version, str) else "", "message": message}


class Ingest:
    def __init__(self, store: Store,
                 writers: Callable[[str, str], Writer | None] = lambda _p, _c: None, *,
                 on_stored: Callable[[str, int], None] | None = None) -> None:
        """`writers(partner_id, collection_id)` gives the Writer a stored request is checked
        with when it is processed (None: the partner or the collection is gone).
        `on_stored(collection_id, n)` hears of the new versions each write stored, once
        committed (the metrics count them)."""
        self.store = store
        self.writers = writers
        self.on_stored = on_stored
        # Requests accepted by this process, already checked: process() need not parse again.
        self._checked: dict[str, Checked] = {}

    def accept(self, *, api_root: str, collection: str, writer: Writer, body: bytes,
               record: Callable[[Status], AuditEntry] | None = None) -> Status:
        """Check a push and record it durably, with the audit record `record` makes of its
        status in the same transaction; raise Invalid/Unprocessable for a bad body."""
        checked = check_objects(parse_request(body), writer)
        status = Status(
            id=str(uuid.uuid4()), api_root=api_root, collection=collection,
            partner=writer.pusher,
            request_timestamp=now_micros(),
            total_count=len(checked.candidates) + len(checked.failures),
            failures=checked.failures,
            pendings=[{"id": c.id, "version": c.version or ""} for c in checked.candidates],
        )
        if not checked.candidates:
            status.status = COMPLETE
        self.store.save_status(status, None if not checked.candidates else body,
                               record(status) if record else None)
        if checked.candidates:
            self._checked[status.id] = checked
        return status

    def forget(self, status_id: str) -> None:
        """Drop the checked copy of a request another process took over."""
        self._checked.pop(status_id, None)

    def process(self, status_id: str) -> Status | None:
        """Store the objects of one accepted request and complete its status."""
        pending = self.store.pending_request(status_id)
        if pending is None:
            return None
        status, body = pending
        checked = self._checked.pop(status_id, None) or self._recheck(status, body)
        stored: list[int] = []

        def finish(outcomes: list[Outcome]) -> Status:
            stored.append(sum(1 for o in outcomes if o.stored))
            return _complete(status, checked, outcomes)

        done = self.store.write(status.collection, checked.candidates, status_id, finish,
                                _stored)
        if done is not None and self.on_stored is not None and stored:
            self.on_stored(status.collection, stored[-1])
        return done

    def _recheck(self, status: Status, body: bytes) -> Checked:
        """A request accepted by another process (or before a restart): checked again with
        the writer as it is now."""
        objects = parse_request(body)
        writer = self.writers(status.partner, status.collection)
        if writer is None:
            return Checked([], [_detail(o, "refused: the partner or the collection no longer "
                                           "exists") for o in objects])
        return check_objects(objects, writer)

    def held(self, collection: str, ids: list[str]) -> dict[tuple[str, str | None], bytes]:
        """The stored versions of these ids, as {(id, version): body}, with (id, None) for
        an unversioned object: what a pull already holds need not be checked again."""
        found: dict[tuple[str, str | None], bytes] = {}
        for start in range(0, len(ids), 500):
            chunk = tuple(dict.fromkeys(ids[start:start + 500]))
            page = self.store.query(Query(collection=collection, limit=len(chunk) * 64 + 1,
                                          ids=chunk, versions=(ALL,), spec_versions=("2.1",)),
                                    with_body=True)
            for entry in page.entries:
                found[(entry.id, entry.version)] = entry.body
                found.setdefault((entry.id, None), entry.body)
        return found

    def newest(self, collection: str, object_id: str) -> Entry | None:
        """The newest stored version of an object, for the write path's own decisions."""
        page = self.store.query(Query(collection=collection, limit=1, ids=(object_id,),
                                      versions=(LAST,)), with_body=True)
        return page.entries[0] if page.entries else None

    def load(self, *, collection: str, checked: Checked,
             record: Callable[[list[Outcome]], AuditEntry] | None = None) -> list[Outcome]:
        """Store checked objects from a local bulk load (`taxii-exchange ingest`) at once.

        The same checks and the same store write as a push; no status is recorded: the input
        file is the durable copy and the command reports what the store did with each object.
        `record` makes the audit record of the outcomes, written in the same transaction.
        """
        done: list[Outcome] = []

        def finish(outcomes: list[Outcome]) -> Status:
            done.extend(outcomes)
            return Status(id="", api_root="", collection=collection, partner="",
                          request_timestamp=0, total_count=len(outcomes), status=COMPLETE)

        self.store.write(collection, checked.candidates, None, finish,
                         (lambda _status: record(done)) if record else None)
        if self.on_stored is not None:
            self.on_stored(collection, sum(1 for o in done if o.stored))
        return done


def _stored(status: Status) -> AuditEntry:
    """The audit record of a processed push (its acceptance has one of its own)."""
    return audit.entry("stored", status.partner, collection=status.collection,
                       status=status.id, **audit.outcome(status))


def _complete(status: Status, checked: Checked, outcomes: list[Outcome]) -> Status:
    """The final status of a request from what the store did with each object."""
    status.pendings = []
    status.failures = list(checked.failures)
    status.successes = []
    for outcome in outcomes:
        detail = {"id": outcome.id, "version": outcome.version}
        if outcome.conflict:
            detail["message"] = CONFLICT
            status.failures.append(detail)
        else:
            if not outcome.stored:
                detail["message"] = UNCHANGED
            status.successes.append(detail)
    status.status = COMPLETE
    return status


class Worker:
    """Processes accepted requests on one background thread per server process.

    Requests are claimed with a lease, so several processes sharing a store never work the
    same one at once; a request left pending by a crash is picked up when its lease runs out.
    """

    def __init__(self, ingest: Ingest, *, lease_seconds: float = 5.0,
                 sweep_seconds: float = 1.0) -> None:
        self.ingest = ingest
        self.lease_seconds = lease_seconds
        self.sweep_seconds = sweep_seconds
        self._queue: queue.Queue[tuple[str, Future[Status | None]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ingest-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def submit(self, status_id: str) -> Future[Status | None]:
        future: Future[Status | None] = Future()
        self._queue.put((status_id, future))
        return future

    def _run(self) -> None:
        store = self.ingest.store
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self.sweep_seconds)
                except queue.Empty:
                    try:
                        claimed = store.claim_pending(self.lease_seconds)
                    except Unavailable as exc:  # the store is back later: sweep again then
                        log.warning("cannot look for pending requests now: %s", exc)
                        continue
                    for status_id in claimed:
                        self._process(status_id, None)
                    continue
                if item is None:
                    return
                status_id, future = item
                try:
                    claimed = store.claim_pending(self.lease_seconds, status_id)
                except Unavailable as exc:  # left pending: the sweep takes it later
                    future.set_exception(exc)
                    continue
                if claimed:
                    self._process(status_id, future)
                else:
                    self.ingest.forget(status_id)
                    future.set_result(None)
        finally:
            store.close()

    def _process(self, status_id: str, future: Future[Status | None] | None) -> None:
        try:
            status = self.ingest.process(status_id)
        except Exception as exc:  # left pending: retried when the lease runs out
            log.exception("processing request %s failed; it stays pending", status_id)
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(status)
