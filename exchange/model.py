"""Small value types shared by the store, the ingest path and the protocol layer."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# match[version] selectors besides explicit timestamps (held as version keys).
LAST, FIRST, ALL = "last", "first", "all"


# TLP ranks, lowest to highest. AMBER+STRICT is above AMBER: an AMBER-cleared reader does not
# receive it. Every comparison of markings and clearances is a comparison of these integers.
CLEAR, GREEN, AMBER, AMBER_STRICT, RED = range(5)
TLP_RANKS = {"clear": CLEAR, "green": GREEN, "amber": AMBER, "amber+strict": AMBER_STRICT,
             "red": RED}
TLP_NAMES = {rank: name for name, rank in TLP_RANKS.items()}


@dataclass(frozen=True, slots=True)
class Visibility:
    """Which object versions one reader may see, decided by the policy and applied by the store
    inside its index scan (never to a page after the fact).

    A version is visible when its effective rank is at most `max_rank`, or when `pusher` stored
    it. The effective rank is decided at write time: the highest TLP of the version's markings
    (or the collection's default marking) and of everything it references. `onward` readers
    (federation push, exports) also skip H2 versions, and a push to a peer skips what that
    peer itself stored here (`not_from`). A new dimension (a constituency scope) is one more
    field here and one more fact per stored version.
    """

    max_rank: int
    pusher: str = ""  # partner id; '' for readers that push nothing (a peer, an export)
    onward: bool = False  # an onward transfer: versions under handling code H2 are withheld
    not_from: str = ""  # partner id whose own pushes are left out (never sent back)

    @property
    def everything(self) -> bool:
        return self.max_rank >= RED and not self.onward and not self.not_from


@dataclass(frozen=True, slots=True)
class Search:
    """What an analyst asked for, in the search index's terms (store/terms.py makes them).

    Exactly one of: `terms` (any of these exact terms), `low`/`high` (a range of terms: a
    CIDR), `text` (a prefix or substring of a domain or URL, at least 3 characters)."""

    terms: tuple[str, ...] = ()
    low: str = ""
    high: str = ""
    text: str = ""
    prefix: bool = False
    shown: str = field(default="", compare=False)  # what was asked, for the page

    @property
    def kind(self) -> str:
        return "range" if self.low else "text" if self.text else "terms"


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """The TAXII filters of one read (section 3.4), already parsed and checked.

    `after` is the date_added (microseconds) of the last entry already seen: it comes from
    `added_after` or from a `next` token, whichever is later. `newest_first` reads date_added
    descending, and its cursor is `before` (the date_added of the last entry seen); `after`
    and `before` together bound a date-added range either way.

    The analyst pages' filters, each applied inside the store's scan (never to a page):
    `ranks` (effective TLP ranks), `source` (created_by_ref), `valid_at` (indicators valid at
    that moment, microseconds) and `search` (terms of store/terms.py).

    `refers_to` (an object id; not a TAXII filter) selects the versions that reference that
    id: any `*_ref` or `*_refs` property at any depth, as `stix.references` finds them (a
    relationship's source or target, a sighting's sighting_of_ref, a report's object_refs),
    never an author or a marking. With it, `versions`, `spec_versions`, `after` and `limit`
    apply as usual (newest versions by default, in date_added order, keyset-paged) and `ids`
    and `types` must be empty. A backend answers it from what it keeps of each version's
    references at write time, with the visibility applied inside that scan.
    """

    limit: int
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: tuple[str, ...] = (LAST,)
    spec_versions: tuple[str, ...] = ()  # empty: the latest spec_version of each version
    after: int | None = None
    refers_to: str = ""
    newest_first: bool = False
    before: int | None = None
    ranks: tuple[int, ...] = ()
    source: str = ""
    valid_at: int | None = None
    search: Search | None = None

    @property
    def narrowed(self) -> bool:
        """Whether a filter beyond TAXII's own applies."""
        return bool(self.ranks or self.source or self.valid_at is not None or self.search)


@dataclass(frozen=True, slots=True, kw_only=True)
class Query(Filters):
    """One read of a collection as the store runs it: filters and whose view.

    With a `visibility`, `last` and `first` mean the newest and oldest version the reader may
    see, so a withheld version leaves no trace in what the reader is served. None is the
    unrestricted view of the server's own work (the write path, maintenance).
    """

    collection: str
    visibility: Visibility | None = None

    @classmethod
    def of(cls, collection: str, filters: Filters,
           visibility: Visibility | None) -> Query:
        return cls(collection=collection, visibility=visibility,
                   **{f.name: getattr(filters, f.name) for f in fields(Filters)})


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
class Indexed:
    """What a store keeps of one object version to find it (store/terms.py decides it)."""

    terms: frozenset[str] = frozenset()
    texts: tuple[str, ...] = ()  # domains and URLs, for prefix and substring search
    source: str = ""  # created_by_ref
    valid_from: int | None = None  # indicators only, microseconds
    valid_until: int | None = None  # FOREVER when the indicator has no end

    def __reduce__(self) -> tuple[Any, ...]:
        # Positional: a bulk load sends these between processes by the hundred thousand,
        # and the slots dataclass default (a state dict by field) costs several times more.
        return (Indexed, (self.terms, self.texts, self.source, self.valid_from,
                          self.valid_until))


@dataclass(frozen=True, slots=True)
class Candidate:
    """One checked object on its way into the store, with the facts the policy needs."""

    id: str
    type: str
    spec_version: str
    version: str | None  # None: unversioned (SCO); the store uses its first date_added
    body: bytes
    rank: int = AMBER  # TLP rank of its own markings, or of the collection's default marking
    h2: bool = False  # under handling code H2: no onward transfer without consent
    refs: tuple[str, ...] = ()  # ids it references (not its author or its markings)
    pusher: str = ""  # the partner who pushed it; '' for a local load
    # What it can be found by, when the check worked it out from the object it had parsed
    # anyway; None: the store works it out from the body.
    indexed: Indexed | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (Candidate, (self.id, self.type, self.spec_version, self.version, self.body,
                            self.rank, self.h2, self.refs, self.pusher, self.indexed))


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


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit record before the store chains it: `body` is canonical JSON that holds `at`
    and `partner` too (the columns are for finding records; the body is what is hashed)."""

    at: int  # microseconds since the epoch
    partner: str
    body: bytes


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored audit record: `hash` chains it to the record before (store/chain.py)."""

    seq: int
    at: int
    partner: str
    body: bytes
    hash: bytes
