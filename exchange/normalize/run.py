"""Drive parsers over input files into a collection, through the one write path (Ingest).

Objects go to `Ingest.accept` and `Ingest.process` in batches of at most `BATCH` objects, so
memory stays flat in the input size. Rejected rows, and objects the ingest path refuses, are
written as JSON lines (source file, row number, reason, raw line) and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import orjson

from ..ingest import Ingest
from .base import Context, Parser, Produced, Reject, Tally, normalize

BATCH = 1000


class Run:
    def __init__(self, ingest: Ingest, *, api_root: str, collection: str, partner: str,
                 rejects: Callable[[bytes], object], batch: int = BATCH) -> None:
        self.ingest, self.api_root, self.collection = ingest, api_root, collection
        self.partner, self.rejects, self.batch_size = partner, rejects, batch
        self.tally = Tally()
        self._batch: list[Produced] = []

    def files(self, parser: Parser, paths: Iterable[Path], context: Context) -> Tally:
        for path in paths:
            for item in normalize(parser, path, context, self.tally):
                if isinstance(item, Reject):
                    self._reject(item)
                    continue
                self.tally.produced += 1
                self._batch.append(item)
                if len(self._batch) >= self.batch_size:
                    self.flush()
        self.flush()
        return self.tally

    def flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        body = orjson.dumps({"objects": [p.obj for p in batch]})
        status = self.ingest.accept(api_root=self.api_root, collection=self.collection,
                                    partner=self.partner, body=body)
        done = self.ingest.process(status.id) or status
        for success in done.successes:
            if "message" in success:
                self.tally.unchanged += 1
            else:
                self.tally.stored += 1
        if not done.failures:
            return
        origin: dict[str, Produced] = {}
        for produced in batch:
            origin.setdefault(str(produced.obj.get("id")), produced)
        for failure in done.failures:
            found = origin.get(failure.get("id", ""))
            record = found.record if found else None
            raw = record.raw if record else orjson.dumps(found.obj).decode() if found else ""
            self._reject(Reject(record.source if record else "", record.row if record else 0,
                                f"refused by ingest: {failure.get('message', '')}", raw))

    def _reject(self, reject: Reject) -> None:
        self.tally.rejected += 1
        self.rejects(orjson.dumps(reject.as_json()) + b"\n")
