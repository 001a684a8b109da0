"""The parser contract: one module per input format, all behind this one shape.

A parser reads one input file as a stream of harmonised `Record`s (each keeps its source file,
row number and raw line, for provenance) and turns each record into STIX 2.1 objects. A row it
cannot read or convert becomes a `Reject` with a reason: never a crash, never silently dropped.

`normalize` drives one parser over one file: it adds the source identity, drops objects
already produced from the same file, and closes the file with a report referencing what it
produced (one report part per `REPORT_PART` references, so memory stays flat).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from .. import stix_extensions as ext
from ..markings import (
    HANDLING_CODES,
    SERVER_IDENTITY,
    TLP,
    handling,
    handling_extension_definition,
    server_identity,
)
from .values import ID_CONTRIBUTING, BadValue, sdo_id

log = logging.getLogger(__name__)

# Reference objects (the source identity, malware families) carry no time of their own in the
# data: their content is fully decided by their natural key, so a fixed `created` keeps them
# identical across files and runs (re-ingesting changes nothing; no clock is read).
REFERENCE_TIME = "2020-01-01T00:00:00.000Z"
REPORT_PART = 10_000  # object_refs per report part
_SEEN_LIMIT = 100_000  # ids remembered per file to drop repeats (bounded: memory stays flat)

__all__ = ["TLP", "Context", "Field", "Parser", "Produced", "Record", "Reject", "Tally",
           "normalize"]


@dataclass(frozen=True, slots=True)
class Field:
    """One input field a format knows, for `taxii-exchange formats` and the docs."""

    name: str
    description: str
    stix: str = ""  # the STIX property it becomes ('' : kept in the format's fields extension)
    required: bool = False


@dataclass(frozen=True, slots=True)
class Record:
    """One harmonised input row: canonical field names and normalised values."""

    source: str
    row: int
    raw: str
    values: dict[str, Any]
    time: str | None = None  # the STIX timestamp the row reports, if any


@dataclass(frozen=True, slots=True)
class Reject:
    source: str
    row: int
    reason: str
    raw: str

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "row": self.row, "reason": self.reason, "raw": self.raw}


@dataclass(frozen=True, slots=True)
class Produced:
    """One STIX object and the record it came from (None for the file's own objects)."""

    obj: dict[str, Any]
    record: Record | None


@dataclass(frozen=True)
class Context:
    """What the feed definition and the command line decide for one run: the source identity,
    the TLP marking, law-enforcement handling (codes, their conditions, the source's
    reliability and the information's accuracy), a confidence and feed references."""

    source_name: str
    tlp: str | None = None  # a key of TLP
    handling: tuple[str, ...] = ()  # handling codes H0-H3 (markings.py)
    handling_conditions: str | None = None  # what H3 restricts
    reliability: str | None = None  # A, B, C or X
    accuracy: str | None = None  # 1-4
    confidence: int | None = None  # 0-100, on the SDOs and SROs this exchange authors
    references: tuple[dict[str, str], ...] = ()  # external references for the file's report
    # A partner's own identity id as the source (an upload on the pages): the partner authors
    # what it loads, so its objects pass the same provenance check as its TAXII pushes.
    source_ref: str | None = None

    def __post_init__(self) -> None:
        unknown = [c for c in self.handling if c not in HANDLING_CODES]
        if unknown:
            raise BadValue(f"handling codes are {', '.join(HANDLING_CODES)}, not "
                           f"{', '.join(unknown)}")
        if "H3" in self.handling and not self.handling_conditions:
            raise BadValue("handling code H3 needs its conditions stated")
        if self.reliability not in (None, "A", "B", "C", "X"):
            raise BadValue(f"source reliability is A, B, C or X, not {self.reliability!r}")
        if self.accuracy not in (None, "1", "2", "3", "4"):
            raise BadValue(f"information accuracy is 1, 2, 3 or 4, not {self.accuracy!r}")

    @cached_property
    def source_id(self) -> str:
        return self.source_ref or sdo_id("identity", self.source_name.strip().lower())

    @cached_property
    def facet(self) -> str:
        """What a run puts on every object (TLP, handling): part of the id of the context
        objects it makes (malware families, attack patterns, vulnerabilities), so a name the
        source gave only under AMBER is an AMBER object of its own, never a CLEAR one, and
        runs under different markings never contend for one object's content."""
        return "\x1f".join((self.tlp or "", ",".join(self.handling),
                             self.handling_conditions or "", self.reliability or "",
                             self.accuracy or ""))

    @cached_property
    def markings(self) -> tuple[str, ...]:
        return (TLP[self.tlp],) if self.tlp else ()

    @cached_property
    def extensions(self) -> dict[str, Any] | None:
        """The handling extension property every object gets, if the run sets any."""
        if not (self.handling or self.reliability or self.accuracy):
            return None
        return handling(self.handling, self.handling_conditions, self.reliability,
                        self.accuracy)

    def identity(self) -> dict[str, Any]:
        """The source, public whatever a run's TLP: every reader may know who said what, and
        one identity stays one version across runs at any TLP. This project states it, so
        the project's identity is its author (a partner's own identity states itself)."""
        return {"type": "identity", "spec_version": "2.1", "id": self.source_id,
                "created_by_ref": self.source_ref or SERVER_IDENTITY,
                "created": REFERENCE_TIME, "modified": REFERENCE_TIME,
                "name": self.source_name.strip(), "identity_class": "organization",
                "object_marking_refs": [TLP["clear"]]}

    def preamble(self, extensions: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Objects every file starts with: the source identity, its author (the project's
        identity), and the definitions of the extensions its objects may carry (`extensions`,
        and handling when the run sets it), so consumers can resolve them. A partner's load
        states only its own identity: the rest is this server's to state (it serves the
        definitions at /extensions/), and a partner may push only under its own identity."""
        if self.source_ref:
            return [self.identity()]
        found = [self.identity(), server_identity()]
        found += [ext.definition(e) for e in extensions]
        if self.extensions:
            found.append(handling_extension_definition())
        return found

    def stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Add the source, markings and handling to an object this exchange authors.

        An observable whose deterministic id takes its extensions into account (a file, a
        network connection) gets no handling extension: its id would no longer be the one
        STIX derives. The objects that state facts about it carry the handling."""
        if obj["type"] not in _SCO_LIKE:
            obj["created_by_ref"] = self.source_id
        if self._marking_list:
            obj["object_marking_refs"] = self._marking_list[:]
        extensions = self.extensions
        if extensions and "extensions" not in ID_CONTRIBUTING.get(obj["type"], ()):
            obj["extensions"] = {**obj.get("extensions", {}), **extensions}
        return obj

    @cached_property
    def _marking_list(self) -> list[str]:
        return list(self.markings)


_SCO_LIKE = frozenset({"ipv4-addr", "ipv6-addr", "network-traffic", "autonomous-system",
                       "domain-name", "url", "file", "email-addr", "mac-addr"})


@dataclass(slots=True)
class Tally:
    read: int = 0
    produced: int = 0
    stored: int = 0
    unchanged: int = 0
    kept: int = 0  # observables already stored with other properties: the stored one stays
    rejected: int = 0

    def line(self) -> str:
        return (f"read {self.read}, produced {self.produced}, stored {self.stored}, "
                f"unchanged {self.unchanged}, kept {self.kept}, rejected {self.rejected}")


class Parser(ABC):
    """One input format. Subclasses set the class attributes and the two methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    fields: ClassVar[tuple[Field, ...]]
    default_source: ClassVar[str]
    report_types: ClassVar[tuple[str, ...]] = ("threat-report",)
    # The feed definition: defaults the command line may override.
    default_tlp: ClassVar[str] = "amber"
    default_confidence: ClassVar[int | None] = None
    references: ClassVar[tuple[dict[str, str], ...]] = ()
    # Settings a format accepts (`--option NAME=VALUE`), described for `formats`.
    options: ClassVar[tuple[Field, ...]] = ()
    reads_directories: ClassVar[bool] = False  # True: each PATH is a directory, not a file
    # The source family whose fields extension keeps what has no STIX property (a key of
    # stix_extensions.SOURCE_FIELDS), None when the format keeps none.
    source_fields: ClassVar[str | None] = None
    # True: this exchange authors the objects (new facts under an old timestamp become a new
    # version); False: they pass through as their producer made them.
    authors_objects: ClassVar[bool] = True

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.settings = dict(settings or {})
        unknown = set(self.settings) - {o.name for o in self.options}
        if unknown:
            raise BadValue(f"{self.name} has no option {', '.join(sorted(unknown))}; "
                           f"known: {', '.join(o.name for o in self.options) or 'none'}")

    @classmethod
    def extension_ids(cls) -> tuple[str, ...]:
        """The project's extensions this format's objects may carry (none when it passes
        objects through as their producer made them)."""
        if not cls.authors_objects:
            return ()
        found = (ext.DATA_SUBJECT,)
        return found + ((ext.SOURCE_FIELDS[cls.source_fields],) if cls.source_fields else ())

    @abstractmethod
    def records(self, path: Path) -> Iterator[Record | Reject]:
        """Read one file row by row; a row that cannot be read is a Reject."""

    @abstractmethod
    def to_stix(self, record: Record, context: Context) -> list[dict[str, Any]]:
        """The STIX objects of one record; raise BadValue to reject it."""


@dataclass
class _ReportPart:
    refs: list[str] = field(default_factory=list)
    first: str | None = None
    last: str | None = None

    def note(self, time: str) -> None:
        self.first = time if self.first is None or time < self.first else self.first
        self.last = time if self.last is None or time > self.last else self.last


def normalize(parser: Parser, path: Path, context: Context,
              tally: Tally | None = None) -> Iterator[Produced | Reject]:
    """Every object one file produces (each once), its rejects, and its report parts."""
    tally = tally if tally is not None else Tally()
    # Recently produced (id, modified) pairs: repeats are dropped; bounded, so memory is flat.
    seen: OrderedDict[str, None] = OrderedDict()
    for obj in context.preamble(parser.extension_ids()):
        seen[f"{obj['id']}\x1f{obj.get('modified', '')}"] = None
        yield Produced(obj, None)
    part, number = _ReportPart(), 1
    for item in parser.records(path):
        tally.read += 1
        if isinstance(item, Reject):
            yield item
            continue
        try:
            objects = parser.to_stix(item, context)
        except BadValue as exc:
            yield Reject(item.source, item.row, str(exc), item.raw)
            continue
        except Exception as exc:  # a parser bug must not lose the row or stop the run
            log.exception("%s: row %d could not be converted", item.source, item.row)
            yield Reject(item.source, item.row, f"conversion failed: {exc!r}", item.raw)
            continue
        added = len(part.refs)
        for obj in objects:
            key = f"{obj['id']}\x1f{obj.get('modified', '')}"
            if key in seen:
                seen.move_to_end(key)
                continue
            seen[key] = None
            if len(seen) > _SEEN_LIMIT:
                seen.popitem(last=False)
            part.refs.append(obj["id"])
            yield Produced(obj, item)
        if item.time is not None and len(part.refs) > added:
            part.note(item.time)
        if len(part.refs) >= REPORT_PART:
            yield Produced(_report(parser, path, context, part, number), None)
            part, number = _ReportPart(), number + 1
    if part.refs:
        yield Produced(_report(parser, path, context, part, number), None)


def _report(parser: Parser, path: Path, context: Context, part: _ReportPart,
            number: int) -> dict[str, Any]:
    first = part.first or REFERENCE_TIME
    last = part.last or first
    name = f"{parser.name} {path.name}" + (f" (part {number})" if number > 1 else "")
    report: dict[str, Any] = {
        "type": "report", "spec_version": "2.1",
        "id": sdo_id("report", parser.name, context.source_id, path.name, str(number)),
        "created": first, "modified": last, "published": last, "name": name,
        "report_types": list(parser.report_types),
        "object_refs": list(dict.fromkeys(part.refs)),
    }
    references = context.references or parser.references
    if references:
        report["external_references"] = list(references)
    return context.stamp(report)
