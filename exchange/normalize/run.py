"""Drive a parser over input files into a collection, through the one write path (Ingest).

Two stages: the producer reads and converts the input and checks each object with the same
checks as a TAXII push (`ingest.check_objects`); the loader stores the checked batches
(`Ingest.load`). On a large input the producer runs in a child process, so both stages use a
core each; on a small one it runs in this process. Either way it is the same code, and memory
stays flat: batches of at most `BATCH` objects, and the pipe between the stages blocks the
producer while the loader is behind.

Rejected records, and objects the store refuses, are written as JSON lines (source file, row
number, reason, raw line) and counted. When the source gives new facts about an object without
a newer timestamp (e.g. a URL now offline, last seen at the same time), the store's conflict
becomes a new version one millisecond after the newest stored one; the same facts again are
unchanged. An observable (unversioned) already stored with other properties, such as another
source's marking, is kept as first stored and counted as kept.
"""

from __future__ import annotations

import gc
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

from ..ingest import CONFLICT, Checked, Ingest, Writer, check_objects
from ..model import AuditEntry, Candidate, Outcome
from ..stix import timestamp_micros
from .base import Context, Parser, Produced, Reject, Tally, normalize
from .values import later_by_millisecond

BATCH = 5000  # objects per store transaction
PARALLEL_BYTES = 4 * 1024 * 1024  # inputs at least this large get a producer process
# A load allocates millions of short-lived containers (rows, objects, batches) and frees
# nearly all of them by reference counting. With the default threshold (700) the cyclic
# collector runs thousands of times over a heap holding a batch or two, a quarter of the
# load's time; it runs this much less often while a load is under way.
_GC_THRESHOLD = 100_000


@dataclass(slots=True)
class Batch:
    """Checked objects with where each came from, plus the rejects met on the way."""

    candidates: list[Candidate]
    # (source, row, raw) of each candidate's record, by id: only for pass-through formats,
    # where the store refusing an object is a reject (authored objects become new versions).
    origins: dict[str, tuple[str, int, str]]
    rejects: list[Reject]
    done_bytes: int  # input consumed so far, for the progress line
    read: int  # records read so far, for the progress line


def produce(parser: Parser, paths: list[Path], context: Context, tally: Tally,
            writer: Writer, batch_size: int = BATCH) -> Iterator[Batch]:
    """Every input object checked and batched, with the rejects in input order."""
    objects: list[Produced] = []
    rejects: list[Reject] = []
    done = 0

    def emit() -> Batch:
        nonlocal objects, rejects
        checked = check_objects([p.obj for p in objects], writer)
        by_id: dict[str, Produced] = {}
        for produced in objects:
            by_id.setdefault(str(produced.obj.get("id")), produced)
        origins = {} if parser.authors_objects else \
            {c.id: _origin(by_id[c.id]) for c in checked.candidates}
        for failure in checked.failures:
            found = by_id.get(failure["id"])
            source, row, raw = _origin(found) if found else ("", 0, "")
            raw = raw or (orjson.dumps(found.obj).decode() if found else "")
            rejects.append(Reject(source, row, f"invalid STIX: {failure['message']}", raw))
        tally.rejected += len(checked.failures)
        batch = Batch(checked.candidates, origins, rejects, done, tally.read)
        objects, rejects = [], []
        return batch

    last_record = None
    for path in paths:
        for item in normalize(parser, path, context, tally):
            if isinstance(item, Reject):
                tally.rejected += 1
                rejects.append(item)
                done += len(item.raw) + 1
                continue
            if item.record is not None and item.record is not last_record:
                last_record = item.record
                done += len(item.record.raw) + 1
            tally.produced += 1
            objects.append(item)
            if len(objects) >= batch_size:
                yield emit()
    yield emit()


def _origin(produced: Produced) -> tuple[str, int, str]:
    record = produced.record
    return (record.source, record.row, record.raw) if record else ("", 0, "")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size


class Run:
    def __init__(self, ingest: Ingest, *, collection: str, writer: Writer,
                 rejects: Callable[[bytes], object], batch: int = BATCH,
                 progress: TextIO | None = None,
                 record: Callable[[list[Outcome]], AuditEntry] | None = None) -> None:
        """`record` makes the audit record of each batch stored."""
        self.ingest, self.collection, self.writer = ingest, collection, writer
        self.record = record
        self.rejects, self.batch_size = rejects, batch
        self.progress = progress
        self.tally = Tally()

    def files(self, parser: Parser, paths: Iterable[Path], context: Context,
              parallel: bool | None = None) -> Tally:
        paths = list(paths)
        total = sum(_size(p) for p in paths)
        if parallel is None:
            parallel = total >= PARALLEL_BYTES
        started = time.monotonic()
        with _fewer_collections():
            batches = self._in_child(parser, paths, context) if parallel else \
                produce(parser, paths, context, self.tally, self.writer, self.batch_size)
            for batch in batches:
                for reject in batch.rejects:  # counted by the producer
                    self._reject(reject)
                if batch.candidates:
                    self._load(batch, parser.authors_objects)
                self._show(batch.done_bytes, batch.read, total, started)
        self._show(total, self.tally.read, total, started, final=True)
        return self.tally

    def _in_child(self, parser: Parser, paths: list[Path], context: Context) -> Iterator[Batch]:
        """The producer in a child process; its tally comes back with the last batch."""
        methods = multiprocessing.get_all_start_methods()
        mp: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        receive, send = mp.Pipe(duplex=False)
        child = mp.Process(target=_producer, name="ingest-producer", daemon=True,
                           args=(send, parser, paths, context, self.writer, self.batch_size))
        child.start()
        send.close()
        try:
            while True:
                try:
                    kind, payload = receive.recv()
                except EOFError:
                    raise RuntimeError("the input reader stopped unexpectedly") from None
                if kind == "batch":
                    yield payload
                elif kind == "failed":
                    raise RuntimeError(f"the input reader failed: {payload}")
                else:
                    read, produced, rejected = payload
                    self.tally.read += read
                    self.tally.produced += produced
                    self.tally.rejected += rejected
                    return
        finally:
            receive.close()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()

    def _load(self, batch: Batch, authored: bool) -> None:
        if authored:
            batch.candidates = self._first_created(batch.candidates)
        outcomes = self.ingest.load(collection=self.collection,
                                    checked=Checked(batch.candidates, []), record=self.record)
        conflicts = set()
        for outcome in outcomes:
            if outcome.conflict:
                conflicts.add(outcome.id)
            elif outcome.stored:
                self.tally.stored += 1
            else:
                self.tally.unchanged += 1
        if not conflicts:
            return
        renewed: list[Candidate] = []
        for candidate in batch.candidates:
            if candidate.id not in conflicts:
                continue
            if candidate.version is None:  # an observable has one version: the first stays
                self.tally.kept += 1
                continue
            newer = self._new_version(candidate) if authored else None
            if newer is None and authored:  # the newest stored version says the same
                self.tally.unchanged += 1
            elif newer is None:
                source, row, raw = batch.origins.get(candidate.id, ("", 0, ""))
                self.tally.rejected += 1
                self._reject(Reject(source, row, f"refused by ingest: {CONFLICT}", raw))
            else:
                renewed.append(newer)
        if renewed:
            self._load(Batch(renewed, {}, [], 0, 0), authored=False)

    def _first_created(self, candidates: list[Candidate]) -> list[Candidate]:
        """Every version of an object keeps the `created` of its first (STIX 2.1 forbids
        changing it): a record seen later with an earlier first_seen makes a new version with
        the stored `created`, modified no earlier than it."""
        versioned = [c.id for c in candidates if c.version is not None]
        if not versioned:
            return candidates
        created: dict[str, str] = {}
        for (ident, version), body in self.ingest.held(self.collection, versioned).items():
            if version is None:  # the oldest stored version of the id
                created[ident] = orjson.loads(body)["created"]
        # Only an id stored already, or met twice in this batch, can have an earlier
        # `created` than the candidate's own: the others need not be parsed.
        counts = Counter(versioned)
        kept = []
        for candidate in candidates:
            if candidate.version is None or (candidate.id not in created
                                             and counts[candidate.id] == 1):
                kept.append(candidate)
                continue
            obj = orjson.loads(candidate.body)
            first = created.setdefault(candidate.id, obj["created"])
            if obj["created"] == first:
                kept.append(candidate)
                continue
            obj["created"] = first
            if timestamp_micros(obj["modified"]) < timestamp_micros(first):
                obj["modified"] = first
            kept += check_objects([obj], self.writer).candidates
        return kept

    def _new_version(self, candidate: Candidate) -> Candidate | None:
        """New facts under an old timestamp: a version after the newest stored one, or None
        when the newest stored version already says the same."""
        newest = self.ingest.newest(self.collection, candidate.id)
        obj = orjson.loads(candidate.body)
        stored = orjson.loads(newest.body) if newest else {}
        if {k: x for k, x in stored.items() if k != "modified"} == \
                {k: x for k, x in obj.items() if k != "modified"}:
            return None
        obj["modified"] = later_by_millisecond(max(stored.get("modified", ""), obj["modified"]))
        renewed = check_objects([obj], self.writer).candidates
        return renewed[0] if renewed else None

    def _reject(self, reject: Reject) -> None:
        self.rejects(orjson.dumps(reject.as_json()) + b"\n")

    def _show(self, done: int, read: int, total: int, started: float,
              final: bool = False) -> None:
        """One progress line, rewritten in place, for inputs that take a while."""
        elapsed = time.monotonic() - started
        if self.progress is None or (elapsed < 1 and not final) or total == 0:
            return
        share = min(done / total, 1.0)
        rate = read / elapsed if elapsed else 0
        bar = "#" * int(share * 30)
        self.progress.write(f"\r[{bar:<30}] {share:4.0%} {read:,} records "
                            f"{rate:,.0f}/s" + ("\n" if final else ""))
        self.progress.flush()


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """The cyclic collector at `_GC_THRESHOLD` for the duration (restored after: the same
    process may be a server)."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], _GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _producer(send: Any, parser: Parser, paths: list[Path], context: Context, writer: Writer,
              batch_size: int) -> None:
    """Child process body: send each batch, then the tally (or why it failed)."""
    # What the child inherited stays as it is: the collector need not walk it again.
    gc.freeze()
    tally = Tally()
    try:
        for batch in produce(parser, paths, context, tally, writer, batch_size):
            send.send(("batch", batch))
        send.send(("tally", (tally.read, tally.produced, tally.rejected)))
    except BaseException as exc:  # the parent must hear of it rather than wait forever
        send.send(("failed", repr(exc)))
    finally:
        send.close()


def progress_stream() -> TextIO | None:
    """Standard error when it is a terminal; no progress line in logs and pipes."""
    return sys.stderr if sys.stderr.isatty() else None
