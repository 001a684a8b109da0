"""Small value types shared by the store, the ingest path and the protocol layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# match[version] selectors besides explicit timestamps (held as version keys).
LAST, FIRST, ALL = "last", "first", "all"


@dataclass(frozen=True, slots=True)
class Query:
    """One read of a collection: TAXII filters, already parsed and checked.

    `after` is the date_added (microseconds) of the last entry already seen: it comes from
    `added_after` or from a `next` token, whichever is later.
    """

    collection: str
    limit: int
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: tuple[str, ...] = (LAST,)
    spec_versions: tuple[str, ...] = ()  # empty: the latest spec_version of each version
    after: int | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored object version. `body` is empty when the caller did not ask for it."""

    id: str
    version: str
    date_added: int
    spec_version: str
    body: bytes = b""

    @property
    def media_type(self) -> str:
        return f"application/stix+json;version={self.spec_version}"


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[Entry]
    more: bool

    @property
    def last_added(self) -> int | None:
        return self.entries[-1].date_added if self.entries else None


@dataclass(frozen=True, slots=True)
class Candidate:
    """One checked object on its way into the store."""

    id: str
    type: str
    spec_version: str
    version: str | None  # None: unversioned (SCO); the store uses its first date_added
    body: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the store did with one candidate."""

    id: str
    version: str
    stored: bool  # False: this exact version was already there
    conflict: bool = False  # same id and version, different content: refused


PENDING, COMPLETE = "pending", "complete"


@dataclass(slots=True)
class Status:
    """TAXII status resource (section 4.3.1), kept by the store until it is read."""

    id: str
    api_root: str
    collection: str
    partner: str
    request_timestamp: int
    total_count: int
    status: str = PENDING
    successes: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    pendings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def counts(self) -> tuple[int, int, int]:
        return len(self.successes), len(self.failures), len(self.pendings)
