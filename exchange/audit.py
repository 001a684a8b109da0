"""The audit trail: who read, wrote or changed what, when, from where, with what result.

Records are canonical JSON, chained by hash in the store (store/chain.py). A write's record is
written in the write's own transaction; reads are many and small, so their records are
batched (`Trail`) and appended about twice a second in one transaction: a crash loses at most
that last half second of read records, never a write's. `verify` walks the chain and names
every record that was edited, inserted or deleted.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .model import AuditEntry, Entry, Outcome, Status
from .periodic import Periodic
from .stix import format_micros, now_micros
from .store import Store
from .store.chain import GENESIS, link

log = logging.getLogger(__name__)

LISTED = 100  # a page with more objects is recorded by count, digest and date_added range


def entry(kind: str, partner: str, at: int | None = None, **fields: Any) -> AuditEntry:
    """A record of `kind` (read, status, push, stored, delete, transfer, pull, ingest,
    purge, throttled, admin) made at `at` (now); fields that are None are left out."""
    at = now_micros() if at is None else at
    doc = {"at": format_micros(at), "kind": kind, "partner": partner,
           **{name: value for name, value in fields.items() if value is not None}}
    return AuditEntry(at, partner, orjson.dumps(doc))


def objects(entries: Sequence[Entry]) -> dict[str, Any]:
    """What a page handed over: every id and version, or for a large page their count, a
    digest, and the date_added range, which names the same versions in the collection."""
    if len(entries) <= LISTED:
        return {"count": len(entries), "versions": [[e.id, e.version] for e in entries]}
    digest = hashlib.sha256("\n".join(f"{e.id} {e.version}" for e in entries).encode())
    return {"count": len(entries), "sha256": digest.hexdigest(),
            "added": [format_micros(entries[0].date_added),
                      format_micros(entries[-1].date_added)]}


def outcome(status: Status) -> dict[str, Any]:
    """What a processed push did: counts, and the versions stored."""
    stored = [(d["id"], d["version"]) for d in status.successes if "message" not in d]
    return {"total": status.total_count, "unchanged": len(status.successes) - len(stored),
            "failed": len(status.failures), **listed(stored)}


def outcomes(done: Sequence[Outcome]) -> dict[str, Any]:
    """What a load did (a pull, a feed): counts, and the versions stored."""
    stored = [(o.id, o.version) for o in done if o.stored and not o.conflict]
    return {"unchanged": sum(not o.stored and not o.conflict for o in done),
            "conflicts": sum(o.conflict for o in done), **listed(stored)}


def listed(versions: Sequence[tuple[str, str]], count: str = "stored") -> dict[str, Any]:
    """(id, version) pairs, listed while few, else counted with a digest."""
    if len(versions) <= LISTED:
        return {count: len(versions), "versions": [list(v) for v in versions]}
    text = "\n".join(f"{ident} {version}" for ident, version in versions)
    return {count: len(versions), "sha256": hashlib.sha256(text.encode()).hexdigest()}


def reconcile(store: Store, kind: str, current: dict[str, Any], by: str = "") -> int:
    """Record administrative changes: each `kind` (partner, collection) added, changed (with
    the fields that changed) or removed since the last reconcile, whoever made the change
    (a command, or an edit of the file a server noticed). Values are never recorded, only
    field names, and digests kept in the store's state; returns the number of records."""
    name = f"audit:{kind}s"
    before: dict[str, dict[str, str]] = store.get_state(name) or {}
    now = {key: {field: _digest(value) for field, value in _fields(item).items()}
           for key, item in current.items()}
    entries = []
    for key in sorted(before.keys() | now.keys()):
        old, new = before.get(key), now.get(key)
        if old == new:
            continue
        change = "added" if old is None else "removed" if new is None else "changed"
        fields = None if old is None or new is None else \
            sorted(f for f in old.keys() | new.keys() if old.get(f) != new.get(f))
        entries.append(entry("admin", "", change=f"{kind} {change}", name=key, fields=fields,
                             by=by or None))
    if entries:
        store.append_audit(entries)
        store.put_state(name, now)
    return len(entries)


def _fields(item: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    return dict(item)


def _digest(value: Any) -> str:
    def plain(found: Any) -> Any:
        if isinstance(found, frozenset | set):
            return sorted(found, key=str)
        return str(found)

    return hashlib.sha256(orjson.dumps(value, default=plain, option=orjson.OPT_SORT_KEYS)
                          ).hexdigest()


class Trail:
    """Read records, batched: `later` keeps the facts (a deque append); a thread turns them
    into records and appends them to the store, off the request's path."""

    def __init__(self, store: Store, *, interval: float = 0.5, batch: int = 2000) -> None:
        self.store = store
        self.interval = interval
        self.batch = batch
        self._waiting: collections.deque[tuple[Any, ...]] = collections.deque()
        self._flusher = Periodic("audit-trail", interval, self.flush, store)

    def later(self, kind: str, partner: str, **fields: Any) -> None:
        """A record made now and written later: serialized by the flushing thread."""
        self._waiting.append((now_micros(), kind, partner, fields))  # a deque: no lock needed
        if len(self._waiting) >= self.batch:
            self._flusher.wake()

    def start(self) -> None:
        self._flusher.start()

    def stop(self) -> None:
        self._flusher.stop(timeout=None)
        self.flush()

    def flush(self) -> bool:
        """Append what waits; False (records kept for the next flush) when the store fails."""
        facts: list[tuple[Any, ...]] = []
        with contextlib.suppress(IndexError):
            while True:
                facts.append(self._waiting.popleft())
        if not facts:
            return True
        try:
            self.store.append_audit([entry(kind, partner, at, **fields)
                                     for at, kind, partner, fields in facts])
        except Exception:
            log.exception("could not append %d audit records; will retry", len(facts))
            self._waiting.extendleft(reversed(facts))
            return False
        return True


@dataclass
class Verdict:
    records: int = 0
    head: tuple[int, str] = (0, GENESIS.hex())  # the last record: its number and hash
    problems: list[str] = field(default_factory=list)


def verify(store: Store, anchor: tuple[int, str] | None = None) -> Verdict:
    """Walk the chain from the first record. Each record must be numbered one after the one
    before, hash to its stored hash from the stored hash before it (so an edit is named at
    the record edited, not at every one after), and agree with its columns. `anchor` (a
    number and hash noted earlier, outside the store) must still be there: a rewrite of the
    whole chain from some record on cannot keep it."""
    verdict = Verdict()
    base = store.get_state("audit:base")  # what a prune left as the chain's start
    previous_seq, previous_hash = (base["seq"], bytes.fromhex(base["hash"])) if base \
        else (0, GENESIS)
    pruned_through = None  # what the last prune record says it left as the start
    anchor_seen = base is not None and anchor is not None and anchor[0] <= base["seq"]
    while True:
        batch = store.audit_records(after=previous_seq, limit=5000)
        if not batch:
            break
        for record in batch:
            verdict.records += 1
            if record.seq != previous_seq + 1:
                missing = (f"record {previous_seq + 1}" if record.seq == previous_seq + 2 else
                           f"records {previous_seq + 1} to {record.seq - 1}")
                verdict.problems.append(f"{missing} deleted")
            elif link(previous_hash, record.body) != record.hash:
                verdict.problems.append(f"record {record.seq} edited or inserted: its hash "
                                        "does not follow from the record before")
            try:
                doc = orjson.loads(record.body)
                agrees = doc.get("partner") == record.partner and doc.get("at") == \
                    format_micros(record.at)
            except orjson.JSONDecodeError:
                agrees = False
            if not agrees:
                verdict.problems.append(f"record {record.seq} edited: its time or partner "
                                        "differs from its body")
            elif doc.get("change") == "audit pruned":
                pruned_through = doc.get("through")
            if anchor is not None and record.seq == anchor[0]:
                anchor_seen = True
                if record.hash.hex() != anchor[1]:
                    verdict.problems.append(f"record {record.seq} is not the anchored one: "
                                            "the chain was rewritten")
            previous_seq, previous_hash = record.seq, record.hash
    if (base["seq"] if base else None) != pruned_through:
        verdict.problems.append(f"the chain starts after record {base['seq'] if base else 0}, "
                                f"but the last prune recorded says {pruned_through}")
    if anchor is not None and not anchor_seen:
        verdict.problems.append(f"record {anchor[0]} (the anchor) is gone: the chain was cut "
                                "short")
    verdict.head = (previous_seq, previous_hash.hex())
    return verdict


def prune(store: Store, before: int, *, dry_run: bool = False, by: str = "") -> tuple[int, int]:
    """Delete the oldest records made before `before` (microseconds): records 1..N where N is
    the last of an unbroken run from the start made before it. The chain goes on from N's
    hash (verify starts there), and a record says what went. Returns (how many, N)."""
    through, after = 0, 0
    while True:
        batch = store.audit_records(after=after, limit=5000)
        older = next((r for r in batch if r.at >= before), None)
        through = (older.seq - 1) if older else (batch[-1].seq if batch else through)
        if older or not batch:
            break
        after = batch[-1].seq
    first = store.audit_records(limit=1)
    count = through - first[0].seq + 1 if first and through >= first[0].seq else 0
    if dry_run or count <= 0:
        return max(count, 0), through
    done = store.prune_audit(through, entry("admin", "", change="audit pruned",
                                            through=through, by=by or None))
    return done, through


@dataclass(frozen=True, slots=True)
class Wanted:
    """Which records an administrator looks for; empty fields match every record."""

    partner: str = ""
    face: str = ""  # 'ui' for the pages; 'api' for what has no face (the TAXII API, commands)
    kind: str = ""  # read, push, stored, ingest, admin...
    collection: str = ""
    since: int | None = None  # microseconds, inclusive
    until: int | None = None  # microseconds, exclusive

    def __call__(self, doc: dict[str, Any], at: int) -> bool:
        face = doc.get("face", "api")
        return (not self.partner or doc.get("partner") == self.partner) and \
            (not self.face or face == self.face) and \
            (not self.kind or doc.get("kind") == self.kind) and \
            (not self.collection or doc.get("collection") == self.collection) and \
            (self.since is None or at >= self.since) and \
            (self.until is None or at < self.until)


def newest(store: Store, wanted: Wanted, before: int | None = None, limit: int = 50,
           budget: int = 20_000) -> tuple[list[dict[str, Any]], int | None]:
    """Up to `limit` records `wanted` selects, newest first, from below record `before`, and
    where to go on from (None: nothing older). At most `budget` records are looked at per
    call, so a rare filter answers in bounded time and the next call goes on from there.
    Records are in time order but for clock steps, so the walk stops at the first record older
    than `since`."""
    found: list[dict[str, Any]] = []
    looked = 0
    while looked < budget:
        batch = store.audit_newest(before, min(1000, budget - looked))
        if not batch:
            return found, None
        for record in batch:
            looked += 1
            before = record.seq
            if wanted.since is not None and record.at < wanted.since:
                return found, None
            doc = orjson.loads(record.body)
            if wanted(doc, record.at):
                found.append({"seq": record.seq, **doc})
                if len(found) == limit:
                    return found, record.seq if record.seq > 1 else None
    return found, before


def export(store: Store, since: int | None = None, partner: str | None = None
           ) -> Iterator[dict[str, Any]]:
    """Records made at or after `since` (microseconds), of one partner if given, in order,
    each with its number and hash."""
    after = 0
    while True:
        batch = store.audit_records(after=after, limit=5000, since=since)
        if not batch:
            return
        for record in batch:
            if (since is None or record.at >= since) and partner in (None, record.partner):
                yield {"seq": record.seq, **orjson.loads(record.body),
                       "hash": record.hash.hex()}
        after = batch[-1].seq
