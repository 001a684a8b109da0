"""Analysts' CSV lists of indicators (`ioc-csv`), with the column mapping given as options.

Analysts keep indicators in spreadsheets whose columns differ from list to list, so the
format knows no column names: `--option NAME=VALUE` (or `--options FILE`, a YAML mapping of
the same names) says which header column holds the value, its type, its times and the rest.
Header names are matched case-insensitively after trimming.

Every row is suspect infrastructure (`build.infrastructure_objects`); a file hash is a malware
file (`build.PAYLOAD`). A mistake in the mapping fails early and once: a bad option value is a
`BadValue` from the constructor, a mapped column the header lacks is one reject at the header row.
Times come only from the data (a first_seen column or the `default_first_seen` option), never
from the clock, so ids, `created` and `modified` are the same on every run. Columns the
mapping does not name are kept in its fields extension (stix_extensions.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import build
from . import values as v
from .base import Context, Field, Parser, Record, Reject
from .csvrows import Row, read_rows

_EXTRA = "ioc-csv"  # whose fields extension keeps unmapped columns
_KEPT_IN = "ext[ioc-csv]"

# Options naming a header column, with what the column holds.
_COLUMN_OPTIONS = {
    "value": "column holding the indicator value (required)",
    "type": "column holding each value's type (see type_fixed for the types); an empty cell "
            "is auto",
    "first_seen": "column of the time the indicator was first seen",
    "last_seen": "column of the time it was last seen",
    "valid_until": "column of the time it went offline or stops being valid",
    "malware": "column of the malware family",
    "kind_column": "column of each row's kind (see kind for the kinds)",
    "labels": "column of labels, split on ';', ',' or '|'",
    "tags": "another name for labels",
    "description": "column of a free-text description",
    "reference": "column of a reference URL (a value that is not a URL is kept in "
                 f"{_KEPT_IN})",
    "confidence": "column of a confidence from 0 to 100 (an empty cell: the feed's)",
}
_TIMES = ("STIX/ISO 8601 UTC times ('2026-11-20T10:00:00Z', '2026-11-20 10:00:00', "
          "'2026-11-20 10:00:00 UTC'), plain dates (YYYY-MM-DD, midnight UTC) or epoch seconds "
          "(9-10 digits, optional fraction)")

# Observable types: the spellings analysts use (lower case, punctuation removed) -> our name.
_TYPE_NAMES = {
    "auto": "auto", "": "auto",
    "ip": "ip", "ipaddress": "ip", "ipv4": "ipv4", "ipv4addr": "ipv4", "ipv6": "ipv6",
    "ipv6addr": "ipv6", "domain": "domain", "domainname": "domain", "hostname": "domain",
    "fqdn": "domain", "url": "url", "uri": "url", "email": "email", "emailaddr": "email",
    "emailaddress": "email", "md5": "md5", "sha1": "sha1", "sha256": "sha256",
    "sha512": "sha512",
}
_TYPES = ("auto", "ip", "ipv4", "ipv6", "domain", "url", "email", "md5", "sha1", "sha256",
          "sha512")
_HASH_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}

# Infrastructure kinds: spellings -> build's kind (PAYLOAD, a malware file, is None).
_KIND_NAMES = {
    "c2": "c2", "cc": "c2", "commandandcontrol": "c2", "distribution": "distribution",
    "hostingmalware": "distribution", "botnet": "botnet", "payload": "payload",
    "unknown": "unknown", "": "unknown",
}
_KINDS: dict[str, tuple[str, str] | None] = {
    "c2": build.C2, "distribution": build.DISTRIBUTION, "botnet": build.BOTNET,
    "payload": build.PAYLOAD, "unknown": build.UNKNOWN,
}
_DELIMITERS = {",": ",", ";": ";", "|": "|", "\\t": "\t", "\t": "\t", "tab": "\t"}
_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True,
             "false": False, "no": False, "off": False, "0": False}
_NO_FAMILY = frozenset({"", "-", "n/a", "na", "none", "unknown"})

_SPELLING = re.compile(r"[^a-z0-9]+")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_IP_LIKE = re.compile(r"^[0-9.]+$")
_EPOCH = re.compile(r"^\d{9,10}(\.\d{1,9})?$")
_LABEL_SPLIT = re.compile(r"[;,|]")


def _options() -> tuple[Field, ...]:
    columns = tuple(Field(name, text) for name, text in _COLUMN_OPTIONS.items())
    return (*columns,
            Field("type_fixed", f"one type for every row: {', '.join(_TYPES)} (ip: v4 or v6; "
                                "auto: detect IP, URL with a scheme, hash by hex length, "
                                "email, else domain); default auto"),
            Field("kind", f"one kind for every row: {', '.join(_KINDS)}; default unknown "
                          "(file hashes are always payload)"),
            Field("default_first_seen", "time for rows without a first_seen (needed when "
                                        f"first_seen is not mapped); {_TIMES}"),
            Field("delimiter", "field delimiter: ',' (default), ';', '|' or '\\t' (tab)"),
            Field("skip_comments", "true: skip lines starting with '#'; default false"))


class IocCsv(Parser):
    name = "ioc-csv"
    source_fields = _EXTRA
    description = ("Analysts' CSV list of indicators, columns mapped by --option/--options "
                   "(suspect infrastructure; file hashes as malware files)")
    fields = (
        Field("value", "the indicator, in the column the value option names",
              "ipv4-addr/ipv6-addr/domain-name/url/email-addr.value or file.hashes; "
              "indicator.pattern; infrastructure consists-of it", required=True),
        Field("type", "the value's type (type or type_fixed option; default auto)",
              "the observable type (file for hashes: no infrastructure)"),
        Field("first_seen", f"first seen ({_TIMES})",
              "indicator.created/valid_from, infrastructure.first_seen, relationship.created"),
        Field("last_seen", "last seen", "infrastructure.last_seen, modified"),
        Field("valid_until", "offline since / valid until", "indicator.valid_until, modified"),
        Field("malware", "malware family", "malware.name; indicator indicates it, "
                                           "infrastructure controls/delivers it"),
        Field("kind", "c2, distribution, botnet, payload or unknown (kind or kind_column "
                      "option)", "infrastructure.infrastructure_types"),
        Field("labels", "tags split on ';', ',' or '|' (labels or tags option)",
              "indicator.labels, infrastructure.labels"),
        Field("description", "free text", "indicator.description, infrastructure.description"),
        Field("reference", "a URL", "indicator/infrastructure.external_references[].url"),
        Field("confidence", "0-100", "indicator.confidence, infrastructure.confidence "
                                     "(over the feed's --confidence)"),
        Field("(any other column)", "kept as reported", f"indicator.{_KEPT_IN}"),
    )
    default_source = "Analyst indicator list"
    report_types = ("indicator",)
    options = _options()

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        super().__init__(settings)
        setting = self.settings
        self.columns = {name: _column(name, setting[name])
                        for name in _COLUMN_OPTIONS if name in setting}
        if "value" not in self.columns:
            raise v.BadValue(f"{self.name} needs --option value=COLUMN: the column holding "
                             "the indicator value")
        for one, other in (("type", "type_fixed"), ("kind", "kind_column"), ("labels", "tags")):
            if one in setting and other in setting:
                raise v.BadValue(f"{self.name}: give {one} or {other}, not both")
        if "tags" in self.columns:
            self.columns["labels"] = self.columns.pop("tags")
        self.type_fixed = _field("option type_fixed", _type_name, setting["type_fixed"]) \
            if "type_fixed" in setting else None
        self.kind = _field("option kind", _kind_name, setting.get("kind", ""))
        if self.kind == "payload" and self.type_fixed not in (None, "auto", *v.HASH_NAMES):
            raise v.BadValue(f"{self.name}: kind payload is for file hashes, "
                             f"not type_fixed {self.type_fixed}")
        self.default_first_seen = _field("option default_first_seen", _time,
                                         setting["default_first_seen"]) \
            if "default_first_seen" in setting else None
        if "first_seen" not in self.columns and self.default_first_seen is None:
            raise v.BadValue(f"{self.name} needs --option first_seen=COLUMN or "
                             "default_first_seen=TIME: times come from the data, never "
                             "the clock")
        self.delimiter = _choice("delimiter", setting.get("delimiter", ","), _DELIMITERS)
        skip = _choice("skip_comments", setting.get("skip_comments", "false").strip().lower(),
                       _BOOLEANS)
        self.comment = b"#" if skip else None

    def records(self, path: Path) -> Iterator[Record | Reject]:
        for item in read_rows(path, delimiter=self.delimiter, comment=self.comment):
            if isinstance(item, tuple):
                problem = self._header_problem(item[0])
                if problem:
                    yield Reject(str(path), item[1], problem, self.delimiter.join(item[0]))
                    return
                continue
            if isinstance(item, Reject):
                yield item
                continue
            try:
                yield self._harmonise(item)
            except v.BadValue as exc:
                yield Reject(item.source, item.number, str(exc), item.raw)

    def to_stix(self, record: Record, context: Context) -> list[dict[str, Any]]:
        values = record.values
        if values["confidence"] is not None:
            context = replace(context, confidence=values["confidence"])
        objects = build.infrastructure_objects(
            context, v.sco(values["type"], **values["properties"]),
            first_seen=values["first_seen"], last_seen=values["last_seen"],
            valid_until=values["valid_until"], family=values["family"], kind=values["kind"],
            labels=values["labels"], references=values["references"], extra=values["extra"],
            extra_name=_EXTRA)
        if values["description"]:
            for obj in objects:
                if obj["type"] in ("indicator", "infrastructure"):
                    obj["description"] = values["description"]
        return objects

    def _header_problem(self, header: list[str]) -> str | None:
        """Why the header does not fit the mapping, or None."""
        missing = [f"{name}={column!r}" for name, column in self.columns.items()
                   if column not in header]
        if missing:
            hint = "; the header starts with '#': set skip_comments=true?" \
                if header and header[0].startswith("#") and self.comment is None else ""
            return f"header lacks mapped columns: {', '.join(missing)}{hint}"
        twice = sorted({c for c in self.columns.values() if header.count(c) > 1})
        if twice:
            return f"header has mapped columns more than once: {', '.join(twice)}"
        return None

    def _harmonise(self, row: Row) -> Record:
        cells = {name: text.strip() for name, text in row.values.items()}

        def cell(option: str) -> str:
            column = self.columns.get(option)
            return cells.get(column, "") if column is not None else ""

        text = cell("value")
        if not text:
            raise v.BadValue(f"empty value in column {self.columns['value']!r}")
        type_name = self.type_fixed or _field("type", _type_name, cell("type"))
        obs_type, properties = _observable(type_name, text)
        extra = _extra(cells, set(self.columns.values()))
        kind = self._kind(cell("kind_column"), obs_type, extra)
        first_seen = _field("first_seen", _time, cell("first_seen")) if cell("first_seen") \
            else self.default_first_seen
        if first_seen is None:
            raise v.BadValue("no first_seen in this row and no default_first_seen option "
                             "(a fixed time for rows without one)")
        times = {name: _field(name, _time, cell(name)) if cell(name) else None
                 for name in ("last_seen", "valid_until")}
        references, loose = _references(cell("reference"))
        if loose:
            _keep(extra, "reference", loose)
        family = cell("malware")
        out = {
            "type": obs_type, "properties": properties, "first_seen": first_seen, **times,
            "family": None if family.lower() in _NO_FAMILY else family, "kind": kind,
            "labels": _labels(cell("labels")), "references": references,
            "description": cell("description"),
            "confidence": _field("confidence", v.confidence, cell("confidence"))
            if cell("confidence") else None,
            "extra": extra,
        }
        newest = max(t for t in (first_seen, *times.values()) if t)
        return Record(row.source, row.number, row.raw, out, newest)

    def _kind(self, text: str, obs_type: str, extra: dict[str, Any]) -> tuple[str, str] | None:
        """build's kind for a row: a file is always a payload (the kind its row gave is kept
        in the extra property), and only a file can be one."""
        kind = _field("kind_column", _kind_name, text) if "kind_column" in self.columns \
            else self.kind
        if obs_type == "file":
            if text and kind not in ("payload", "unknown"):
                _keep(extra, "kind", text)
            return build.PAYLOAD
        if kind == "payload":
            raise v.BadValue(f"kind payload is for file hashes, not a {obs_type}")
        return _KINDS[kind]


FORMATS: tuple[type[Parser], ...] = (IocCsv,)


# -- option values ------------------------------------------------------------------------------

def _column(option: str, text: str) -> str:
    column = text.strip().lower()
    if not column:
        raise v.BadValue(f"option {option} names no column")
    return column


def _choice(option: str, text: str, known: dict[str, Any]) -> Any:
    if text not in known:
        raise v.BadValue(f"option {option}: {text!r} is not one of "
                         f"{', '.join(k for k in known if k.strip())}")
    return known[text]


def _type_name(text: str) -> str:
    name = _TYPE_NAMES.get(_SPELLING.sub("", text.lower()))
    if name is None:
        raise v.BadValue(f"unknown type {text[:80]!r}; known: {', '.join(_TYPES)}")
    return name


def _kind_name(text: str) -> str:
    name = _KIND_NAMES.get(_SPELLING.sub("", text.lower()))
    if name is None:
        raise v.BadValue(f"unknown kind {text[:80]!r}; known: {', '.join(_KINDS)}")
    return name


# -- cell values --------------------------------------------------------------------------------

def _field(option: str, convert: Callable[[str], Any], text: str) -> Any:
    """A cell converted, a failure naming the field it is in."""
    try:
        return convert(text)
    except v.BadValue as exc:
        raise v.BadValue(f"{option}: {exc}") from None


def _observable(type_name: str, text: str) -> tuple[str, dict[str, Any]]:
    """(STIX observable type, its properties) of a value of a type (auto: detected)."""
    if type_name == "auto":
        type_name = _detect(text)
    if type_name in v.HASH_NAMES:
        algorithm = v.HASH_NAMES[type_name]
        return "file", {"hashes": {algorithm: v.hash_value(algorithm, text)}}
    if type_name in ("ip", "ipv4", "ipv6"):
        obs_type, address = v.ip_address(text)
        if type_name != "ip" and obs_type != f"{type_name}-addr":
            raise v.BadValue(f"not an {type_name.replace('ipv', 'IPv')} address: "
                             f"{text[:80]!r}")
        return obs_type, {"value": address}
    if type_name == "url":
        return "url", {"value": v.url(text)}
    if type_name == "email":
        return "email-addr", {"value": v.email(text)}
    if _IP_LIKE.match(text):
        raise v.BadValue(f"not a domain name (only digits and dots): {text[:80]!r}")
    return "domain-name", {"value": v.domain(text)}


def _detect(text: str) -> str:
    """The type of a value: a URL has a scheme, a hash is hex of a digest's length, digits
    and dots or colons are an IP address (a bad one is refused, not taken for a domain)."""
    if _SCHEME.match(text):
        return "url"
    if _HEX.match(text) and len(text) in _HASH_BY_LENGTH:
        return _HASH_BY_LENGTH[len(text)]
    if ":" in text or _IP_LIKE.match(text):
        return "ip"
    if "@" in text:
        return "email"
    if "." in text:
        return "domain"
    raise v.BadValue(f"not an IP address, URL, hash, email address or domain: {text[:80]!r}")


def _time(text: str) -> str:
    """A STIX timestamp from a source time, a plain date or epoch seconds: UTC only, as the
    option help says, so a time with another offset is refused rather than guessed at."""
    return v.epoch_timestamp(text) if _EPOCH.match(text) else v.loose_timestamp(text)


def _labels(text: str) -> tuple[str, ...]:
    return tuple(label for part in _LABEL_SPLIT.split(text) if (label := part.strip()))


def _references(text: str) -> tuple[tuple[dict[str, str], ...], str]:
    """(external references, a reference that is not a URL) of a reference cell."""
    if not text:
        return (), ""
    if _SCHEME.match(text):
        try:
            link = v.url(text)
        except v.BadValue:
            return (), text
        return ({"source_name": urlsplit(link).hostname or "reference", "url": link},), ""
    return (), text


def _extra(cells: dict[str, str], mapped: set[str]) -> dict[str, Any]:
    """The non-empty cells of columns the mapping does not name, under property-safe keys."""
    extra: dict[str, Any] = {}
    for column, text in cells.items():
        if column not in mapped and text:
            _keep(extra, column, text)
    return extra


def _keep(extra: dict[str, Any], name: str, text: str) -> None:
    """Keep a value under a property-safe key that no other value holds yet."""
    key = base = v.extra_key(name, "column", limit=240)  # room for a _N suffix
    number = 1
    while key in extra:
        number += 1
        key = f"{base}_{number}"
    extra[key] = text
