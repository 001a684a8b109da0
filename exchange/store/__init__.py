"""Persistence behind one narrow protocol; backends translate their own driver errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import MISSING, fields
from typing import Any, Protocol

from ..model import AuditEntry, AuditRecord, Candidate, Outcome, Page, Query, Status


def refuse_unknown(query: Query, handled: Set[str]) -> None:
    """Raise when `query` sets a field the backend does not answer (one added to Query
    after the backend was written): a filter silently ignored would serve what was not
    asked for, and a page of withheld data is worse than an error."""
    for f in fields(query):
        if f.name not in handled and (f.default is MISSING or getattr(query, f.name)
                                      != f.default):
            raise NotImplementedError(f"this store does not answer Query.{f.name}")


class Store(Protocol):
    """What the server needs from a backend. Every read is one index range scan."""

    def open(self) -> None:
        """Connect; called in each server process after it starts (never before a fork)."""

    def close(self) -> None: ...

    def ping(self) -> int:
        """One cheap read that proves the store answers now (readiness), giving the number of
        pushes waiting to be processed (a gauge read at scrape time). Raises Unavailable when
        the store cannot answer."""

    def query(self, query: Query, *, with_body: bool) -> Page:
        """Entries matching `query` in the view of its visibility, oldest date_added first,
        at most `query.limit`. The visibility is applied inside the index scans."""

    def write(self, collection: str, candidates: Sequence[Candidate], status_id: str | None,
              finish: Callable[[list[Outcome]], Status],
              audit: Callable[[Status], AuditEntry] | None = None) -> Status | None:
        """Store candidates, the final status `finish` makes of their outcomes and the audit
        record `audit` makes of that status, atomically.

        Returns None when the request was already complete (another process did it). With no
        `status_id` (a local bulk load, which keeps its own account) no status is recorded."""

    def delete(self, query: Query, audit: Callable[[int], AuditEntry] | None = None) -> int:
        """Delete every version `query` selects (its limit aside; every spec_version of what
        it matches unless it names some); return how many went. References, flags and the
        effective ranks of what referenced them follow. When any went, the audit record
        `audit` makes of their number is written in the same transaction."""

    def expired(self, collection: str, cutoffs: Sequence[int | None],
                limit: int = 1000) -> list[tuple[str, str, int]]:
        """(id, version, date_added) of the oldest versions past retention: added before the
        cutoff of their own TLP rank (`cutoffs[rank]`, microseconds; None keeps that rank)."""

    def purge(self, collection: str, cutoffs: Sequence[int | None], limit: int = 1000,
              audit: Callable[[list[tuple[str, str, int]]], AuditEntry] | None = None
              ) -> int:
        """Delete up to `limit` of what `expired` names, as `delete` deletes, with the audit
        record `audit` makes of them in the same transaction; return how many went."""

    def save_status(self, status: Status, request: bytes | None,
                    audit: AuditEntry | None = None) -> None:
        """Durably record a status; with `request`, the accepted body waiting to be processed;
        with `audit`, that record in the same transaction."""

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append audit records, chained after the last one (store/chain.py), atomically."""

    def prune_audit(self, through: int, entry: AuditEntry) -> int:
        """Delete records 1..`through` (exported first, by the operator), keep the number and
        hash of record `through` as the chain's new start (state `audit:base`) and append
        `entry` saying so, all in one transaction; return how many went."""

    def audit_records(self, after: int = 0, limit: int = 1000,
                      since: int | None = None) -> list[AuditRecord]:
        """Audit records numbered after `after`, in order; with `since` (microseconds), from
        the first record made at or after it (later ones may be older: check `at`)."""

    def audit_newest(self, before: int | None = None, limit: int = 1000) -> list[AuditRecord]:
        """Audit records numbered below `before` (None: from the last one), newest first: the
        administrators' page reads the trail backwards, a window at a time."""

    def get_status(self, api_root: str, status_id: str) -> Status | None: ...

    def claim_pending(self, lease_seconds: float, status_id: str | None = None) -> list[str]:
        """Take the lease on pending requests (one, or all unleased) and return their ids."""

    def pending_request(self, status_id: str) -> tuple[Status, bytes] | None:
        """A pending status with its stored request body."""

    def get_state(self, name: str) -> dict[str, Any] | None:
        """A named JSON document the server keeps for itself (a peer's bookmark)."""

    def put_state(self, name: str, doc: dict[str, Any]) -> None:
        """Durably replace a named document."""

    def claim(self, name: str, lease_seconds: float, holder: str,
              gone: Callable[[str], bool] = lambda holder: False) -> bool:
        """Take (or, for the same holder, renew) a named lease unless another holder has
        one that has not run out and is not `gone` (known to have died)."""

    def release(self, name: str, holder: str) -> None:
        """Give up a lease this holder has."""

    def dump(self, part: str, after: Any, limit: int) -> list[dict[str, Any]]:
        """One page of a part of the store, in key order after the key `after` (None: from
        the start), at most `limit` records, as backend-neutral records (`store copy` moves
        them between backends with `restore`):

        - "objects", key (collection, added), `after` = [collection, added]: every stored
          version as {collection, id, type, vkey, version, spec, added, base, base_h2,
          pusher, rank, h2, last, first, spec_latest, newer, older, top, bottom, refs (list
          of referenced ids), body (bytes)}, partners as their ids;
        - "statuses", key id: {id, api_root, collection, partner, requested, state, doc
          (bytes), request (bytes or None), lease (unix time or None)};
        - "audit", key seq: {seq, at, partner, body (bytes), hash (bytes)};
        - "state", key name: {name, doc (dict or None), lease, holder}."""

    def restore(self, part: str, records: list[dict[str, Any]]) -> None:
        """Write records of a part as `dump` gives them, as they are and atomically: a record
        already there (same key) is replaced, so an interrupted copy can be run again. The
        collection clock is advanced to at least the largest `added` restored, so later
        writes still get a later date_added."""
