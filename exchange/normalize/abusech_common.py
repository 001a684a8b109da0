"""What the abuse.ch formats share: reading the exports and turning one entry into suspect
infrastructure.

Each abuse.ch feed (URLhaus, Feodo Tracker, ThreatFox, MalwareBazaar) is published as CSV and
often as JSON. Both forms of one feed are renamed to the same canonical field names (the CSV
column names) and harmonised by one function per feed, so the same entry gives the very same
STIX objects whichever form it came in.

The CSV exports start with `#` comment lines and quote every field; URLhaus, ThreatFox and
MalwareBazaar put the header in a comment (`# id,dateadded,...`, `# "first_seen_utc",...`) and
ThreatFox and MalwareBazaar a space after each comma (`"a", "b"`): `csvrows.read_rows` reads
all of them, told the columns that make a comment the header.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import orjson

from .. import schemas
from . import build
from . import values as v
from .base import Context, Parser, Record, Reject
from .csvrows import MAX_LINE, Row, read_rows
from .jsondoc import excerpt, load_json

EXTRA = "abusech"  # whose fields extension keeps what has no STIX home
MAX_RECORD = MAX_LINE  # bytes of one JSON entry, as for one CSV line
_NOTHING = frozenset({"", "none", "null", "n/a"})  # how the exports say "no value"


# -- values -------------------------------------------------------------------------------------

def text(value: Any) -> str | None:
    """A source value as text; None when the source says there is none (empty, None, n/a)."""
    if isinstance(value, str):  # first: nearly every value is one
        value = value.strip()
        return None if len(value) <= 4 and value.lower() in _NOTHING else value
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise v.BadValue(f"not a single value: {orjson.dumps(value).decode()[:80]}")


def time(value: Any) -> str | None:
    """A source time as a STIX timestamp: `2024-01-31 12:00:00`, with ` UTC` (JSON exports)
    or a plain date (Feodo Tracker's last_online: the start of that day)."""
    found = text(value)
    return None if found is None else v.loose_timestamp(found)


def required_time(fields: Mapping[str, Any], name: str) -> str:
    found = time(fields.get(name))
    if found is None:
        raise v.BadValue(f"no {name}")
    return found


def items(value: Any) -> tuple[str, ...]:
    """A list the CSV writes comma-separated and the JSON as a list (or comma-separated)."""
    parts = value if isinstance(value, list) else (text(value) or "").split(",")
    found = (text(part) for part in parts)
    return tuple(dict.fromkeys(part for part in found if part))


def flag(value: Any) -> bool | str | None:
    """A yes/no the CSV writes as True/False or 0/1 and the JSON as a boolean or a number."""
    found = text(value)
    if found is None:
        return None
    return {"true": True, "1": True, "false": False, "0": False}.get(found.lower(), found)


def endpoint(value: str) -> tuple[str, str, int]:
    """(STIX type, address, port) of `203.0.113.5:443` or `[2001:db8::1]:443`."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise v.BadValue(f"not an ip:port: {value[:80]!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    kind, address = v.ip_address(host)
    return kind, address, v.port(port)


def endpoint_name(kind: str, address: str, port: int) -> str:
    return f"[{address}]:{port}" if kind == "ipv6-addr" else f"{address}:{port}"


def gone(offline: bool, first_seen: str, last_online: str | None) -> str | None:
    """valid_until of what the source says is offline: when it was last seen online (when it
    was first reported, if it never was since)."""
    return (last_online or first_seen) if offline else None


def extra(fields: Mapping[str, Any], known: frozenset[str], **kept: Any) -> dict[str, Any]:
    """`kept` (values without a STIX home) and every field the format does not know, under
    STIX dictionary keys; empty values are left out."""
    found = {name: value for name, value in kept.items() if value not in (None, "", [], ())}
    for name, value in fields.items():
        if name in known or value is None or (isinstance(value, str) and text(value) is None):
            continue
        found.setdefault(v.extra_key(name), value.strip() if isinstance(value, str) else value)
    return dict(sorted(found.items()))


def reference(source_name: str, url: str | None = None,
              external_id: str | None = None) -> tuple[dict[str, str], ...]:
    """One external reference, or none when there is neither a URL nor an id."""
    found = {"source_name": source_name}
    if url:
        found["url"] = url
    if external_id:
        found["external_id"] = external_id
    return (found,) if len(found) > 1 else ()


def link(value: Any) -> str | None:
    """A URL from the source, normalised; None when it is not one."""
    found = text(value)
    if found is None:
        return None
    try:
        return v.url(found)
    except v.BadValue:
        return None


# -- the harmonised entry and its STIX ------------------------------------------------------------

def entry(observable: dict[str, Any], *, confidence: int | None = None,
          **facts: Any) -> dict[str, Any]:
    """A harmonised entry: the observable, `build.infrastructure_objects` keyword arguments
    and the source's own confidence in it, if any."""
    return {"observable": observable, "facts": facts, "confidence": confidence}


def newest(facts: Mapping[str, Any]) -> str:
    """The newest time an entry reports: its report time."""
    return max(t for t in (facts["first_seen"], facts.get("last_seen"),
                           facts.get("valid_until")) if t)


class Feed(Parser):
    """One abuse.ch export format: entries renamed to canonical names (`aliases`), harmonised
    by the feed's `harmonise`, and turned into suspect infrastructure."""

    default_tlp = "clear"  # the feeds are public
    source_fields = EXTRA
    report_types: ClassVar[tuple[str, ...]] = ("indicator",)
    aliases: ClassVar[dict[str, str]] = {}  # a source field name -> its canonical name

    @abstractmethod
    def harmonise(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The `entry` of one source entry (canonical names); raise BadValue to reject it."""

    def record(self, source: str, row: int, raw: str, fields: Mapping[str, Any]) -> Record:
        values = self.harmonise({self.aliases.get(k, k): value for k, value in fields.items()})
        return Record(source, row, raw, values, newest(values["facts"]))

    def to_stix(self, record: Record, context: Context) -> list[dict[str, Any]]:
        values = record.values
        objects = build.infrastructure_objects(context, dict(values["observable"]),
                                               extra_name=EXTRA, **values["facts"])
        if values["confidence"] is not None:  # the source's own, over the run's
            for obj in objects:
                if obj["type"] == "indicator":
                    obj["confidence"] = values["confidence"]
        return objects


# -- CSV exports ----------------------------------------------------------------------------------

class CsvFeed(Feed):
    """A CSV export: comment lines, a header (perhaps in a comment), one entry a line."""

    required: ClassVar[tuple[str, ...]]  # canonical columns the header must have

    def records(self, path: Path) -> Iterator[Record | Reject]:
        source = str(path)
        for item in read_rows(path, comment=b"#", header_comment=self.required,
                              skip_initial_space=True):
            if isinstance(item, Reject):
                yield item
            elif isinstance(item, tuple):
                header = {self.aliases.get(n, n) for n in item[0]}
                missing = [n for n in self.required if n not in header]
                if missing:
                    yield Reject(source, item[1], "header lacks required columns: "
                                 + ", ".join(missing), ",".join(item[0]))
                    return
            else:
                yield from self._row(item)

    def _row(self, row: Row) -> Iterator[Record | Reject]:
        try:
            yield self.record(row.source, row.number, row.raw, row.values)
        except v.BadValue as exc:
            yield Reject(row.source, row.number, str(exc), row.raw)


# -- JSON exports ---------------------------------------------------------------------------------

class JsonFeed(Feed):
    """A JSON export or API answer: a whole document, read with a size cap, whose entries are
    each checked against the format's JSON Schema (`schemas/input-<name>.schema.json`)."""

    id_field: ClassVar[str] = ""  # the canonical field an export's object keys are

    @abstractmethod
    def entries(self, document: Any) -> list[tuple[str | None, Any]]:
        """(object key or None, entry) of each entry; raise BadValue for a wrong document."""

    def records(self, path: Path) -> Iterator[Record | Reject]:
        source = str(path)
        try:
            loaded = load_json(path)
            found = self.entries(loaded.value)
        except v.BadValue as exc:
            yield Reject(source, 0, str(exc), excerpt(path))
            return
        for index, (key, item) in enumerate(found, start=1):
            raw, problem = loaded.check({key: [item]} if key is not None else item)
            if problem is None:
                problem = (f"entry longer than {MAX_RECORD} bytes" if len(raw) > MAX_RECORD
                           else schemas.problem(f"input-{self.name}", item))
            if problem is not None:
                yield Reject(source, index, problem, raw[:MAX_RECORD])
                continue
            fields = dict(item)
            if key is not None and self.id_field:
                fields.setdefault(self.id_field, key)
            try:
                yield self.record(source, index, raw, fields)
            except v.BadValue as exc:
                yield Reject(source, index, str(exc), raw)


def export_entries(document: Any, api_list: str, feed: str) -> list[tuple[str | None, Any]]:
    """The entries of a JSON export keyed by entry id, of an API answer whose entries are its
    `api_list`, or of a plain list."""
    if isinstance(document, list):
        return [(None, item) for item in document]
    if not isinstance(document, dict):
        raise v.BadValue(f"not a {feed} JSON export or API answer: not an object")
    if "query_status" in document or api_list in document:
        return _api_entries(document, api_list)
    return _keyed_entries(document)


def _keyed_entries(document: dict[str, Any]) -> list[tuple[str | None, Any]]:
    """The entries of an export keyed by entry id: `{"123": [{...}], ...}`."""
    return [(key, item) for key, value in document.items()
            for item in (value if isinstance(value, list) else [value])]


def _api_entries(document: dict[str, Any], name: str) -> list[tuple[str | None, Any]]:
    """The entries of an API answer: `{"query_status": "ok", name: [...]}`."""
    status = document.get("query_status")
    if status in ("no_result", "no_results"):
        return []
    if status not in (None, "ok"):
        raise v.BadValue(f"the API answered query_status {str(status)[:80]!r}")
    found = document.get(name)
    if not isinstance(found, list):
        raise v.BadValue(f"an API answer without a '{name}' list")
    return [(None, item) for item in found]


