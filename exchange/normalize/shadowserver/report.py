"""What every Shadowserver report parser shares: reading the CSV, the victim's observed-data
and sighting, suspect infrastructure named in a victim report, and the fields extension that
keeps what has no STIX home."""

from __future__ import annotations

import functools
import re
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .. import build
from .. import values as v
from ..base import Context, Field, Parser, Record, Reject
from ..csvrows import Row, read_rows

_EXTRA = "shadowserver"  # whose fields extension keeps what has no STIX home


_KEPT_IN = "ext[shadowserver]"


_TOKEN = re.compile(r"[^a-z0-9-]+")


_CVE = re.compile(r"^cve-\d{4}-\d{4,}$")


_TAG_SPLIT = re.compile(r"[;,]")


# -- shared machinery ---------------------------------------------------------------------------


def _kept(names: Sequence[str], on: str) -> tuple[Field, ...]:
    """Fields kept as reported in the extra property of `on`, for the mapping table."""
    return (*(Field(name, "kept as reported", f"{on}.{_KEPT_IN}.{name}") for name in names),
            Field("(any other column)", "kept as reported", f"{on}.{_KEPT_IN}"))


class _Report(Parser):
    """A Shadowserver CSV report: the header is checked for the required columns, then each
    row is harmonised by `_harmonise` (a BadValue rejects the row)."""

    default_source = "Shadowserver Foundation"
    source_fields = _EXTRA
    report_types: ClassVar[tuple[str, ...]] = ("observed-data",)

    def records(self, path: Path) -> Iterator[Record | Reject]:
        header: list[str] = []
        for item in read_rows(path):
            if isinstance(item, tuple):
                header = item[0]
                missing = [f.name for f in self.fields if f.required and f.name not in header]
                if missing:
                    yield Reject(str(path), item[1], "header lacks required columns: "
                                 f"{', '.join(missing)}", self._header_raw(header))
                    return
                continue
            if isinstance(item, Reject):
                yield self._unreadable(item)
                continue
            try:
                yield self._harmonise(item, header)
            except v.BadValue as exc:
                yield Reject(item.source, item.number, str(exc), self._raw(item, header))

    @abstractmethod
    def _harmonise(self, row: Row, header: list[str]) -> Record:
        """The row's canonical values (raise BadValue to reject it)."""

    def _raw(self, row: Row, header: list[str]) -> str:
        """The raw line kept on the row's record or reject."""
        return row.raw

    def _header_raw(self, header: list[str]) -> str:
        return ",".join(header)

    def _unreadable(self, reject: Reject) -> Reject:
        """A row the CSV reader could not read, as it is kept."""
        return reject


def _present(row: Row) -> dict[str, str]:
    """The row's non-empty values, stripped."""
    return {k: text for k, s in row.values.items() if (text := s.strip())}


def _extra(raw: dict[str, str]) -> dict[str, str]:
    """Columns without a STIX home, under STIX-safe keys."""
    return {_safe_key(k): s for k, s in raw.items()}


@functools.lru_cache(maxsize=1024)
def _safe_key(column: str) -> str:
    return v.extra_key(column, "column")


def _seen(raw: dict[str, str]) -> str:
    if "timestamp" not in raw:
        raise v.BadValue("row lacks a timestamp")
    return v.timestamp(raw.pop("timestamp"))


# Cached: a report repeats a few AS numbers on every row.


def _protocols(address_type: str, raw: dict[str, str], *names: str) -> list[str]:
    """Network-traffic protocols: the IP version, then each named column's token, in order."""
    protocols = ["ipv6" if address_type == "ipv6-addr" else "ipv4"]
    for name in names:
        token = _token(raw.pop(name, ""))
        if token and token not in protocols:
            protocols.append(token)
    return protocols


@functools.lru_cache(maxsize=1024)
def _token(text: str) -> str:
    return _TOKEN.sub("-", text.lower()).strip("-")


def _tags(text: str) -> list[str]:
    """A tag column's entries (Shadowserver separates them with ';' or ',')."""
    return [t.strip().lower() for t in _TAG_SPLIT.split(text) if t.strip()]


def _name(text: str) -> str:
    """A reference object's name: lower case, single spaces (its id is built from it)."""
    return " ".join(text.lower().split())[:250]


def _reference_sdo(context: Context, kind: str, name: str,
                   references: tuple[dict[str, str], ...] = ()) -> dict[str, Any]:
    """An attack-pattern or vulnerability by its name (normalised by the caller): like a
    malware family, one object per source and run markings (build.context_object)."""
    return build.context_object(context, kind, name, references)


def _cve(context: Context, identifier: str) -> dict[str, Any]:
    name = identifier.upper()
    return _reference_sdo(context, "vulnerability", name,
                          ({"source_name": "cve", "external_id": name},))


def _host(text: str) -> str:
    """A host (address or name) in the form values.py gives it, for comparing hosts."""
    try:
        return v.ip_address(text)[1]
    except v.BadValue:
        return text.strip().lower().rstrip(".")


def _suspect_url(raw: dict[str, str], column: str, victim_hosts: set[str]) -> str | None:
    """A column naming attacker infrastructure, as a URL popped from `raw`. None, leaving it
    to the fields extension, when it is absent, not an absolute URL, or on the victim's own
    address or host: a victim is never made an indicator."""
    text = raw.get(column, "")
    if not text:
        return None
    try:
        url = v.url(text)
    except v.BadValue:
        return None
    if _host(urlsplit(url).hostname or "") in victim_hosts:
        return None
    raw.pop(column)
    return url


def _suspect_objects(context: Context, seen: str, target: dict[str, Any],
                     urls: tuple[tuple[str, str], ...],
                     hashes: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Suspect infrastructure a victim report names, related to what it sighted (`target`):
    each (kind, url) of `urls` (kind: "c2" or "delivery"), and a payload file by `hashes`
    (each delivering URL related to it)."""
    objects: list[dict[str, Any]] = []
    delivering: list[str] = []
    for kind, url in urls:
        made = build.infrastructure_objects(
            context, v.sco("url", value=url), first_seen=seen, last_seen=seen, target=target,
            kind=build.C2 if kind == "c2" else build.DISTRIBUTION)
        objects += made
        if kind == "delivery":
            delivering += [o["id"] for o in made if o["type"] == "infrastructure"]
    if hashes:
        payload = build.infrastructure_objects(
            context, v.sco("file", hashes=hashes), first_seen=seen, last_seen=seen,
            target=target, kind=build.PAYLOAD)
        objects += payload
        objects += [build.relationship(context, infrastructure, "related-to", payload[1]["id"],
                                       seen) for infrastructure in delivering]
    return objects


def _key(seen: str, target: dict[str, Any], observables: list[dict[str, Any]]) -> str:
    """What identifies one observation: when, what was sighted and over which observables."""
    return "\x1f".join((seen, target["id"], *(o["id"] for o in observables)))


def _address(raw: dict[str, str], name: str, out: dict[str, Any]) -> None:
    """Pop an address column into out[name] and its STIX type into out[name + '_type']."""
    out[name + "_type"], out[name] = v.ip_address(raw.pop(name))


def _victim(context: Context, record: Record, observables: list[dict[str, Any]],
            target: dict[str, Any]) -> list[dict[str, Any]]:
    seen = record.time
    assert seen is not None
    return build.victim_objects(context, observables, seen=seen,
                                key=_key(seen, target, observables), sighting_of=target,
                                extra=record.values["extra"], extra_name=_EXTRA)


# -- event4 reports: one connection from a victim (src) to a sinkhole or honeypot (dst) -------
