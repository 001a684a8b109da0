"""Retention: object versions older than their collection keeps them are deleted.

A collection keeps each version for `retention_days` after its date_added, or for the days
`retention_days_by_tlp` gives its own TLP marking. `taxii-exchange purge` deletes what is past
that, and `serve` does so every `purge_interval_seconds`. Deletion goes through the store as a
TAXII delete does (flags, references and the ranks of what referenced a deleted version
follow), in batches, each with its audit record in its own transaction. A reader's `next`
stays valid: it resumes after a date_added, and only the oldest versions go.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from . import audit
from .collections import CollectionDef
from .model import AuditEntry
from .periodic import Periodic
from .stix import format_micros, now_micros
from .store import Store

log = logging.getLogger(__name__)

DAY = 86_400 * 1_000_000  # microseconds
BATCH = 1000  # versions per transaction: a purge never holds the write lock for long


def cutoffs(collection: CollectionDef, now: int) -> list[int | None]:
    """Per TLP rank, the date_added before which a version is past retention (None: kept)."""
    return [None if days is None else now - days * DAY for days in collection.retention_days]


@dataclass
class Purged:
    collection: CollectionDef
    count: int
    oldest: int | None = None  # date_added of the oldest version that went (or would go)

    def line(self, dry_run: bool) -> str:
        verb = "would delete" if dry_run else "deleted"
        name = self.collection.alias or self.collection.id
        since = f", added from {format_micros(self.oldest)}" if self.oldest else ""
        return f"{self.collection.api_root}/{name}: {verb} {self.count} versions{since}"


def purge(store: Store, collections: Iterable[CollectionDef], *, now: int | None = None,
          dry_run: bool = False, by: str = "") -> list[Purged]:
    """Delete (or, with `dry_run`, count) every version past retention, per collection."""
    now = now_micros() if now is None else now
    done = []
    for collection in collections:
        limits = cutoffs(collection, now)
        if all(limit is None for limit in limits):
            continue
        done.append(_dry(store, collection, limits) if dry_run
                    else _purge(store, collection, limits, by))
    return done


def _dry(store: Store, collection: CollectionDef, limits: list[int | None]) -> Purged:
    # Counted by reading, not deleting: at most this many, which is plenty to decide on.
    found = store.expired(collection.id, limits, limit=1_000_000)
    return Purged(collection, len(found), found[0][2] if found else None)


def _purge(store: Store, collection: CollectionDef, limits: list[int | None],
           by: str) -> Purged:
    purged = Purged(collection, 0)

    def record(gone: list[tuple[str, str, int]]) -> AuditEntry:
        if purged.oldest is None:
            purged.oldest = gone[0][2]
        return audit.entry("purge", "", collection=collection.id, by=by or None,
                           retention_days=list(collection.retention_days),
                           **audit.listed([(i, v) for i, v, _ in gone], "deleted"))

    while True:
        count = store.purge(collection.id, limits, BATCH, record)
        purged.count += count
        if count < BATCH:
            return purged


class Purger:
    """`serve`'s periodic purge, on its own thread (one per server process: a version is
    deleted once, whichever process gets to it)."""

    def __init__(self, store: Store, collections: Iterable[CollectionDef],
                 interval: float) -> None:
        self.store = store
        self.collections = [c for c in collections if any(c.retention_days)]
        self.interval = interval
        self._rounds = Periodic("purge", interval, self.round, store)

    def start(self) -> None:
        if self.interval <= 0 or not self.collections:
            return
        self._rounds.start()
        self._rounds.wake()  # the first round at start, not an interval later

    def stop(self) -> None:
        self._rounds.stop()

    def round(self) -> None:
        for done in purge(self.store, self.collections, by="serve"):
            if done.count:
                log.info("%s", done.line(dry_run=False))
