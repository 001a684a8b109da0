"""The rules every backend shares, decided at write time so every read is an index scan.

For each object id, its stored versions get:
- `last` / `first`: the newest / oldest version; `spec_latest`: the newest spec_version of
  one version;
- an effective TLP `rank` (and `h2`): the highest of its own markings and of the current
  classification of everything it references (the newest version of each referenced id), so
  an object that references a withheld one is withheld too, transitively;
- `newer` / `older`: the lowest effective rank among its newer / older versions (NONE when
  there are none), so a reader cleared to rank t finds "the newest version I may see" as
  `rank <= t < newer` without looking at the other versions;
- `top` / `bottom`: who pushed the newest / oldest version (a partner always sees its own).

`Versions` is a write's working set: the versions of the ids it touches, loaded from the
backend on demand. `place` decides each candidate; `settle` recomputes effective ranks where
anything they depend on changed (a referenced object arriving later, or reclassified) and
the flags of every touched id; the backend then writes `rows_to_insert` and
`rows_to_update`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from ..model import CLEAR, RED, Candidate, Indexed, Outcome
from ..stix import format_micros, now_micros, references, version_key

NONE = RED + 1  # above every rank: "there is no such version"


@dataclass(slots=True, eq=False)
class Row:
    """One stored object version, as the rules see it."""

    id: str
    type: str
    vkey: str
    version: str
    spec: str
    added: int
    base: int  # TLP rank of its own markings (or the collection's default)
    base_h2: bool
    pusher: str
    rank: int  # effective
    h2: bool
    key: object = None  # the backend's handle (SQLite: seq); None until inserted
    body: bytes | None = None  # None: not loaded (the backend loads it on demand)
    refs: tuple[str, ...] | None = None  # None: not known yet (read from the body)
    last: bool = True
    first: bool = True
    spec_latest: bool = True
    newer: int = NONE
    older: int = NONE
    top: str = ""
    bottom: str = ""
    saved: tuple[object, ...] | None = None  # the derived facts as last stored
    found: Indexed | None = None  # what it is found by, if known (else read from the body)

    def derived(self) -> tuple[object, ...]:
        return (self.rank, self.h2, self.last, self.first, self.spec_latest, self.newer,
                self.older, self.top, self.bottom)


class Backend(Protocol):
    """What the working set needs from a backend, within the write's transaction."""

    def load(self, ids: Iterable[str], *, bodies: bool) -> dict[str, list[Row]]:
        """The stored versions of these ids (ids with none are left out)."""

    def body(self, row: Row) -> bytes: ...

    def referrers(self, ids: Iterable[str]) -> set[str]:
        """Ids of stored objects with a version that references any of `ids`."""


class FactsBackend(Backend, Protocol):
    """A backend that can also give the classification of ids without their versions: what
    a write needs of the objects its new versions reference (a report names thousands)."""

    def newest_facts(self, ids: Iterable[str]) -> dict[str, tuple[int, bool]]:
        """(effective rank, H2) of the newest version of each stored id (ids with none are
        left out)."""


@dataclass
class Versions:
    backend: Backend
    versions: dict[str, list[Row]] = field(default_factory=dict)
    new: list[Row] = field(default_factory=list)
    removed: list[Row] = field(default_factory=list)
    _loaded_facts: dict[str, tuple[int, bool]] = field(default_factory=dict)  # as loaded
    _touched: set[str] = field(default_factory=set)
    _recompute: list[Row] = field(default_factory=list)
    _newest: dict[str, Row | None] = field(default_factory=dict)  # kept as versions change
    # The classification of ids only referenced (their versions not loaded): what the
    # backend's newest version says, while this write cannot change it.
    _referenced: dict[str, tuple[int, bool]] = field(default_factory=dict)

    # -- loading -------------------------------------------------------------------------
    def load(self, ids: Iterable[str], *, bodies: bool = False) -> None:
        missing = [i for i in dict.fromkeys(ids) if i not in self.versions]
        if not missing:
            return
        found = self.backend.load(missing, bodies=bodies)
        for ident in missing:
            rows = found.get(ident, [])
            for row in rows:
                row.saved = row.derived()
            self.versions[ident] = rows
            self._newest[ident] = newest = _newest(rows)
            self._loaded_facts[ident] = _facts(newest)

    def load_facts(self, ids: Iterable[str]) -> None:
        """Make `facts` answer for these ids, loading their versions only when the backend
        cannot give their classification alone."""
        missing = [i for i in dict.fromkeys(ids)
                   if i not in self.versions and i not in self._referenced]
        if not missing:
            return
        newest_facts = getattr(self.backend, "newest_facts", None)
        if newest_facts is None:
            self.load(missing)
            return
        found = newest_facts(missing)
        for ident in missing:
            self._referenced[ident] = found.get(ident, _NOTHING)

    def facts(self, ident: str) -> tuple[int, bool]:
        """The current classification of an id: its newest version's effective rank and H2.
        An id not stored here yet reveals nothing (CLEAR); it raises its referrers when it
        arrives."""
        if ident in self.versions:
            return _facts(self._newest.get(ident))
        return self._referenced.get(ident, _NOTHING)

    # -- writes ----------------------------------------------------------------------------
    def place(self, candidate: Candidate, added: int) -> tuple[Outcome, Row | None]:
        """What to do with one candidate: the outcome, and the new row (None: nothing stored).

        An unversioned object (SCO) has a single version, stamped with its first date_added.
        Re-posting a stored version is a no-op; other content under it is a conflict.
        """
        if candidate.id not in self.versions:
            self.load([candidate.id], bodies=True)
        existing = self.versions[candidate.id]
        if candidate.version is None:
            same = existing
            version = format_micros(added)
            vkey = version_key(version)
        else:
            vkey = version_key(candidate.version)
            same = [r for r in existing if r.vkey == vkey and r.spec == candidate.spec_version]
            version = candidate.version
        if same:
            stored = same[0].body if same[0].body is not None else self.backend.body(same[0])
            identical = stored == candidate.body or canonical(stored) == canonical(
                candidate.body)
            return Outcome(candidate.id, same[0].version, stored=False,
                           conflict=not identical), None
        row = Row(candidate.id, candidate.type, vkey, version, candidate.spec_version, added,
                  candidate.rank, candidate.h2, candidate.pusher, candidate.rank, candidate.h2,
                  body=candidate.body, refs=candidate.refs, found=candidate.indexed)
        existing.append(row)
        newest = self._newest.get(candidate.id)
        if newest is None or (row.vkey, row.spec) > (newest.vkey, newest.spec):
            self._newest[candidate.id] = row
        self.new.append(row)
        self._touched.add(candidate.id)
        return Outcome(candidate.id, version, stored=True), row

    def recompute(self, ids: Iterable[str]) -> None:
        """Take every version of these ids as changed (a migration fills in its facts)."""
        self.load(ids, bodies=True)
        for ident in ids:
            self._recompute.extend(self.versions.get(ident, []))
            self._touched.add(ident)

    def remove(self, ident: str, rows: Iterable[Row]) -> None:
        gone = {id(r) for r in rows}
        kept = [r for r in self.versions.get(ident, []) if id(r) not in gone]
        self.removed.extend(r for r in self.versions.get(ident, []) if id(r) in gone)
        self.versions[ident] = kept
        self._newest[ident] = _newest(kept)
        self._touched.add(ident)

    def drop(self, chosen: set[tuple[str, int]]) -> None:
        """Remove these (id, date_added) versions (a delete, a purge) and settle what that
        changes: flags, and the effective ranks of what referenced them."""
        ids = {ident for ident, _ in chosen}
        self.load(ids, bodies=True)
        for ident in ids:
            self.remove(ident, [r for r in self.versions[ident] if (ident, r.added) in chosen])
        self.settle()

    # -- settling --------------------------------------------------------------------------
    def settle(self) -> None:
        """Effective ranks and flags of everything the placed and removed rows affect.

        Effective ranks are the least solution of "a version is at least as high as its own
        markings and as the current classification of everything it references" (references
        can form cycles, so the least one is the answer that withholds only what must be).
        A rise is pushed up to the referrers, raising only. A fall cannot be: objects that
        reference each other would keep holding each other up. So when a classification
        falls, every version that reaches it through references starts again from its own
        markings and rises from there (delete and re-derive).
        """
        self._rise(self.new + self._recompute)
        if any(self._may_fall(i) for i in self._touched):
            region = self._reaching(set(self._touched))
            for row in region:
                row.rank, row.h2 = row.base, row.base_h2
            self._rise(region)
        else:
            # The new versions were raised above with every fact as it now stands (and any
            # later rise requeued them), so only stored versions can still lag behind.
            self._rise(self._referring_rows(
                [i for i in self._touched if self.facts(i) != self._loaded_facts[i]],
                stored_only=True))
        for ident in self._touched:
            _derive(self.versions.get(ident, []))

    def _may_fall(self, ident: str) -> bool:
        """Whether the id's classification may now be lower than before this write: its newest
        version's own markings no longer cover it (a declassified version, a removed one, or
        a classification that came from references, which may have been circular)."""
        before = self._loaded_facts[ident]
        newest = self._newest.get(ident)
        if newest is None:
            return before != (CLEAR, False)
        return newest.base < before[0] or (before[1] and not newest.base_h2)

    def _rise(self, rows: list[Row]) -> None:
        """Raise these rows (never lower them) to what their references ask, and then the
        rows that reference any id whose classification rose, until nothing rises."""
        queue = {id(r): r for r in rows}
        while queue:
            batch = list(queue.values())
            self.load_facts([ref for row in batch for ref in self.refs(row)])
            moved = []
            for row in batch:
                rank, h2 = row.rank, row.h2
                for ref in self.refs(row):
                    ref_rank, ref_h2 = self.facts(ref)
                    rank, h2 = max(rank, ref_rank), h2 or ref_h2
                if (rank, h2) != (row.rank, row.h2):
                    before = self.facts(row.id)
                    row.rank, row.h2 = rank, h2
                    self._touched.add(row.id)
                    if self.facts(row.id) != before:
                        moved.append(row.id)
            queue = {id(r): r for r in self._referring_rows(moved)}

    def _reaching(self, ids: set[str]) -> list[Row]:
        """Every version of these ids and of every id that references them, transitively."""
        found, frontier = set(ids), set(ids)
        while frontier:
            referrers = self.backend.referrers(frontier)
            referrers.update(r.id for r in self.new if not frontier.isdisjoint(self.refs(r)))
            frontier = referrers - found
            found |= frontier
        self.load(found)
        self._touched |= found
        return [row for ident in found for row in self.versions.get(ident, [])]

    def _referring_rows(self, ids: list[str], *, stored_only: bool = False) -> list[Row]:
        """The versions that reference any of these ids (`stored_only`: not the versions
        this write adds)."""
        if not ids:
            return []
        wanted = set(ids)
        referrers = self.backend.referrers(wanted)
        if not stored_only:
            referrers.update(r.id for r in self.new if not wanted.isdisjoint(self.refs(r)))
        self.load(referrers)
        rows = [row for ident in referrers for row in self.versions.get(ident, [])
                if not wanted.isdisjoint(self.refs(row))]
        if stored_only and rows:
            new = {id(r) for r in self.new}
            rows = [row for row in rows if id(row) not in new]
        return rows

    def refs(self, row: Row) -> tuple[str, ...]:
        if row.refs is None:
            body = row.body if row.body is not None else self.backend.body(row)
            row.refs = references(orjson.loads(body))
        return row.refs

    # -- results ---------------------------------------------------------------------------
    def rows_to_insert(self) -> list[Row]:
        return [r for r in self.new if r not in self.removed]

    def rows_to_update(self) -> list[Row]:
        """Stored rows (not the ones this write inserts) whose derived facts changed."""
        return [row for ident in self._touched for row in self.versions.get(ident, [])
                if row.saved is not None and row.saved != row.derived()]


def stamp(working: Versions, candidates: Iterable[Candidate],
          clock: int) -> tuple[list[Outcome], int]:
    """Place candidates in order, each stored version taking the next date_added; return the
    outcomes and the collection's new clock (the last date_added given).

    The clock of a collection is stored by the backend and read inside the write's
    transaction, so writers (in any process) take turns on it and date_added is strictly
    increasing per collection in commit order: a reader's `next` never skips a version that
    commits later. It starts from now (less a microsecond, so the first version gets now)
    unless the stored clock is ahead (a clock stepped back, or many writes this
    microsecond)."""
    added = max(clock, now_micros() - 1)
    outcomes = []
    for candidate in candidates:
        outcome, row = working.place(candidate, added + 1)
        outcomes.append(outcome)
        if row is not None:
            added += 1
    return outcomes, added


_NOTHING = (CLEAR, False)


def _facts(newest: Row | None) -> tuple[int, bool]:
    return (newest.rank, newest.h2) if newest is not None else _NOTHING


def _newest(rows: Iterable[Row]) -> Row | None:
    best = None
    for row in rows:
        if best is None or (row.vkey, row.spec) > (best.vkey, best.spec):
            best = row
    return best


def _derive(rows: list[Row]) -> None:
    """The flags of one id's versions from their keys, ranks and pushers."""
    if not rows:
        return
    if len(rows) == 1:  # most ids: one version, newest and oldest at once
        row = rows[0]
        row.last = row.first = row.spec_latest = True
        row.newer = row.older = NONE
        row.top = row.bottom = row.pusher
        return
    ordered = sorted(rows, key=lambda r: (r.vkey, r.spec))
    newest, oldest = ordered[-1], ordered[0]
    top_spec = {r.vkey: r.spec for r in ordered}  # the last one per vkey is the highest
    _strictly(ordered, "newer")
    _strictly(ordered, "older")
    for row in ordered:
        row.last = row.vkey == newest.vkey
        row.first = row.vkey == oldest.vkey
        row.spec_latest = row.spec == top_spec[row.vkey]
        row.top, row.bottom = newest.pusher, oldest.pusher


def _strictly(ordered: list[Row], name: str) -> None:
    """`newer`: lowest rank among versions with a later vkey; `older`: with an earlier one."""
    sequence = list(reversed(ordered)) if name == "newer" else ordered
    lowest, pending, current = NONE, NONE, None
    for row in sequence:
        if row.vkey != current:  # a new vkey: the ones seen so far are strictly beyond it
            lowest, current = min(lowest, pending), row.vkey
            pending = NONE
        setattr(row, name, lowest)
        pending = min(pending, row.rank)


def canonical(body: bytes) -> bytes:
    """Key-sorted JSON: tells an identical re-post from a conflicting one."""
    return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)

