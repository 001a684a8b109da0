"""Sync with peers: pull what is new into a local collection, push what a peer may see.

Pull: pages of the peer's collection added after the pull bookmark are checked and stored
through the one write path, as the peer's pushes would be (the peer is a partner: its writes
must name its identity or one it relays for), and the bookmark moves only once a page is
stored. Push: what the policy lets the peer see in the local collection (its clearance, RED
recipients, no H2 unless `send_h2`, never what the peer itself stored here), added after the
push bookmark, in envelopes under the peer's `max_content_length`; the bookmark moves once
the peer's status is complete. A run cut short (a crash, the peer down) resumes from the
bookmark: nothing is skipped, and what is fetched or sent again changes nothing.

Each run leaves a record (`sync:PEER:DIRECTION` in the store): when it ran, what moved, the
last error. Several server processes may run `serve`: a lease lets one of them run each peer.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import audit
from ..collections import CollectionDef, Collections
from ..errors import ConfigError, ExchangeError, Forbidden
from ..ingest import Ingest, check_objects
from ..model import ALL, AuditEntry, Filters, Outcome
from ..periodic import Periodic
from ..policy.gate import Gate
from ..policy.partners import Partner
from ..store import Store
from ..store.rules import canonical
from .peers import PULL, PUSH, Peer
from .remote import PeerError, Remote

log = logging.getLogger(__name__)
_SAMPLE = 20  # failures kept in a run record
# A run holds its peer and direction for this long, renewed after every page: a process that
# dies (killed, the host lost) gives them up within this time.
LEASE_SECONDS = 120.0
_ENVELOPE_MARGIN = 1024  # bytes kept free under the peer's max_content_length


@dataclass(slots=True)
class Run:
    """One sync of one peer in one direction."""

    peer: str
    direction: str
    started: float = field(default_factory=time.time)
    objects: int = 0  # pulled or pushed and taken by the other side
    unchanged: int = 0  # already there
    failed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    bookmark: Any = None
    skipped: bool = False  # another process was syncing this peer and direction
    renew: Callable[[], bool] = field(default=lambda: True, repr=False)  # keeps its lease

    def hold(self) -> None:
        """Renew the run's lease; stop if another process has taken the sync over."""
        if not self.renew():
            raise PeerError("another process took over this sync (its lease ran out)")

    def fail(self, items: Iterable[dict[str, Any]]) -> None:
        for item in items:
            self.failed += 1
            if len(self.failures) < _SAMPLE:
                self.failures.append(item)

    def line(self) -> str:
        if self.skipped:
            return f"{self.peer} {self.direction}: another process is syncing it; skipped"
        verb = "pulled" if self.direction == PULL else "pushed"
        text = (f"{self.peer} {self.direction}: {verb} {self.objects}, unchanged "
                f"{self.unchanged}, failed {self.failed}")
        return text + (f"; error: {self.error}" if self.error else "")


class Federation:
    def __init__(self, store: Store, gate: Gate, ingest: Ingest, collections: Collections,
                 partners: Callable[[str], Partner | None], peers: dict[str, Peer],
                 remote: Callable[[Peer], Remote] = Remote) -> None:
        self.store, self.gate, self.ingest = store, gate, ingest
        self.collections, self.partners, self.peers = collections, partners, peers
        self.remote = remote

    def run(self, names: Iterable[str] | None = None,
            directions: Iterable[str] = (PULL, PUSH)) -> list[Run]:
        """Sync the named peers (all by default), each in its configured directions."""
        wanted = list(names) if names is not None else list(self.peers)
        unknown = [n for n in wanted if n not in self.peers]
        if unknown:
            raise ConfigError(f"no peer {', '.join(unknown)}; known: "
                              f"{', '.join(self.peers) or 'none'}")
        runs = []
        for name in wanted:
            peer = self.peers[name]
            for direction in directions:
                if direction in peer.directions:
                    runs.append(self.sync(peer, direction))
        return runs

    def sync(self, peer: Peer, direction: str) -> Run:
        """One run, unless another process holds this peer and direction."""
        key = f"sync:{peer.name}:{direction}"
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"
        if not self.store.claim(f"lease:{key}", LEASE_SECONDS, holder, _dead):
            return Run(peer.name, direction, skipped=True)
        try:
            return self._sync(peer, direction, key,
                              lambda: self.store.claim(f"lease:{key}", LEASE_SECONDS, holder))
        finally:
            self.store.release(f"lease:{key}", holder)

    def _sync(self, peer: Peer, direction: str, key: str, renew: Callable[[], bool]) -> Run:
        record = self.store.get_state(key) or {}
        run = Run(peer.name, direction, bookmark=record.get("bookmark"), renew=renew)
        remote: Remote | None = None
        try:
            partner, collection = self._parties(peer)
            remote = self.remote(peer)
            if direction == PULL:
                self._pull(peer, partner, collection, remote, run, key, record)
            else:
                self._push(peer, partner, collection, remote, run, key, record)
        except (PeerError, ConfigError, Forbidden) as exc:
            run.error = exc.description if isinstance(exc, ExchangeError) else str(exc)
        except Exception as exc:  # a sync must leave a record whatever happened
            log.exception("sync of %s (%s) failed", peer.name, direction)
            run.error = f"internal error: {exc!r}"
        finally:
            if remote is not None:
                remote.close()
        if not run.skipped:
            self._record(key, record, run)
        return run

    def forget(self, name: str, direction: str) -> None:
        """Drop a peer's bookmark in one direction: the next run starts from the beginning."""
        key = f"sync:{name}:{direction}"
        record = self.store.get_state(key)
        if record is not None:
            self.store.put_state(key, {k: v for k, v in record.items() if k != "bookmark"})

    def status(self) -> list[dict[str, Any]]:
        """Every peer and direction with its record (empty when it never ran)."""
        found = []
        for peer in self.peers.values():
            for direction in peer.directions:
                record = self.store.get_state(f"sync:{peer.name}:{direction}") or {}
                found.append({"peer": peer.name, "direction": direction, **record})
        return found

    # -- the two directions ----------------------------------------------------------------
    def _pull(self, peer: Peer, partner: Partner, collection: CollectionDef, remote: Remote,
              run: Run, key: str, record: dict[str, Any]) -> None:
        access = self.gate.access(partner, collection)
        if not access.write:
            raise ConfigError(f"peer {peer.name} may not write to {collection.id}: add "
                              f"partner:{peer.name} to the collection's write list")
        writer = self.gate.writer(partner, collection)
        for page in remote.pages(run.bookmark):
            checked = check_objects(self._new(collection, page.objects, run), writer)
            run.fail(checked.failures)
            def pulled(done: list[Outcome]) -> AuditEntry:
                return audit.entry("pull", partner.id, peer=peer.name,
                                   collection=collection.id, **audit.outcomes(done))

            for outcome in self.ingest.load(collection=collection.id, checked=checked,
                                            record=pulled):
                if outcome.conflict:
                    run.fail([{"id": outcome.id, "version": outcome.version,
                               "message": "a different object with this id and version is "
                                          "stored here"}])
                elif outcome.stored:
                    run.objects += 1
                else:
                    run.unchanged += 1
            run.bookmark = page.resume  # stored: the bookmark may move past this page
            self.store.put_state(key, {**record, "bookmark": run.bookmark})
            run.hold()

    def _push(self, peer: Peer, partner: Partner, collection: CollectionDef, remote: Remote,
              run: Run, key: str, record: dict[str, Any]) -> None:
        room = remote.max_content_length() - _ENVELOPE_MARGIN
        while True:
            filters = Filters(limit=peer.page_size, versions=(ALL,), after=run.bookmark)
            page = self.gate.transfer(partner, collection, filters, send_h2=peer.send_h2)
            failed = run.failed
            for envelope in _envelopes([e.body for e in page.entries], room, run):
                pushed = remote.push(envelope)
                run.objects += pushed.successes
                run.unchanged += pushed.already
                run.fail(pushed.failures)
            if page.entries:  # what left this node, whatever the peer made of it
                self.store.append_audit([audit.entry(
                    "transfer", partner.id, peer=peer.name, collection=collection.id,
                    objects=audit.objects(page.entries), failed=run.failed - failed)])
            if page.last_added is not None:
                run.bookmark = page.last_added  # the peer's status is complete for all of it
                self.store.put_state(key, {**record, "bookmark": run.bookmark})
            run.hold()
            if not page.more:
                return

    def _new(self, collection: CollectionDef, objects: list[Any], run: Run) -> list[Any]:
        """The pulled objects not held here already. Ours coming back from the peer (it may
        read what we pushed to it) and what an earlier run stored are counted unchanged
        without checking their provenance again: the peer relays them, it did not make them.
        The same id and version with other content is a failure, never stored."""
        ids = [o["id"] for o in objects if isinstance(o, dict) and isinstance(o.get("id"), str)]
        held = self.ingest.held(collection.id, ids)
        fresh = []
        for obj in objects:
            if not isinstance(obj, dict):
                fresh.append(obj)  # the check says what is wrong with it
                continue
            version = obj.get("modified", obj.get("created"))
            stored = held.get((str(obj.get("id")), version if isinstance(version, str)
                               else None))
            if stored is None:
                fresh.append(obj)
            elif canonical(stored) == canonical(orjson.dumps(obj)):
                run.unchanged += 1
            else:
                run.fail([{"id": obj.get("id"), "version": version or "",
                           "message": "a different object with this id and version is "
                                      "stored here"}])
        return fresh

    # -- shared ------------------------------------------------------------------------------
    def _parties(self, peer: Peer) -> tuple[Partner, CollectionDef]:
        partner = self.partners(peer.name)
        if partner is None:
            raise ConfigError(f"peer {peer.name} is not a partner: add it with `taxii-exchange "
                              "partners add` (its identity, relays and clearance live there)")
        return partner, self.collections.named(peer.local_collection)

    def _record(self, key: str, record: dict[str, Any], run: Run) -> None:
        totals = record.get("totals", {"objects": 0, "unchanged": 0, "failed": 0})
        for name in totals:
            totals[name] += getattr(run, name)
        record = {**record, "bookmark": run.bookmark, "last_run": run.started,
                  "last": {"objects": run.objects, "unchanged": run.unchanged,
                           "failed": run.failed, "failures": run.failures,
                           "error": run.error, "seconds": round(time.time() - run.started, 3)},
                  "totals": totals}
        if run.error:
            record["last_error"] = {"at": run.started, "error": run.error}
        else:
            record["last_success"] = run.started
        self.store.put_state(key, record)


def _dead(holder: str) -> bool:
    """Whether a lease's holder was a process of this host that no longer runs (killed):
    its lease need not be waited out. A holder on another host runs until its lease ends."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _envelopes(bodies: list[bytes], room: int, run: Run) -> Iterable[bytes]:
    """TAXII envelopes of these objects, each at most `room` bytes; an object that alone is
    larger is a failure of the run, never sent."""
    batch: list[bytes] = []
    size = len(b'{"objects":[]}')
    for body in bodies:
        if len(body) + len(b'{"objects":[]}') > room:
            run.fail([{"message": f"an object of {len(body)} bytes is larger than the peer "
                                  "accepts", "excerpt": body[:120].decode(errors="replace")}])
            continue
        if batch and size + len(body) + 1 > room:
            yield b'{"objects":[' + b",".join(batch) + b"]}"
            batch, size = [], len(b'{"objects":[]}')
        batch.append(body)
        size += len(body) + 1
    if batch:
        yield b'{"objects":[' + b",".join(batch) + b"]}"


class Syncer:
    """Runs each peer at its interval in the background of `serve`. Every server process
    may run one; a lease in the store lets only one of them sync a peer at a time."""

    def __init__(self, federation: Federation, *, tick_seconds: float = 1.0) -> None:
        self.federation = federation
        self.tick_seconds = tick_seconds
        self._ticks = Periodic("federation", tick_seconds, self.tick, federation.store)

    def start(self) -> None:
        if self.federation.peers:
            self._ticks.start()

    def stop(self) -> None:
        self._ticks.stop()

    def tick(self) -> None:
        """Run every peer and direction whose interval has passed since its last run."""
        store = self.federation.store
        for peer in self.federation.peers.values():
            for direction in peer.directions:
                key = f"sync:{peer.name}:{direction}"
                last = (store.get_state(key) or {}).get("last_run", 0)
                if time.time() - last < peer.interval_seconds:
                    continue
                run = self.federation.sync(peer, direction)
                if not run.skipped:
                    log.info("sync %s", run.line())
                if self._ticks.stopping:
                    return
