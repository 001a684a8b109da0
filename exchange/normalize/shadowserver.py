"""Shadowserver `event4_sinkhole` reports (CSV with a header row).

Each row is one connection from an infected machine (the victim, `src_*`) to a sinkhole
(`dst_*`). It becomes observed-data over the two addresses and the network traffic, and a
sighting of the malware family seen where the reporting source sighted it. A victim's address
is never made an indicator. Columns without a STIX home, known or not, are kept in
`x_shadowserver_extra` so nothing the source said is lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import build
from . import values as v
from .base import Context, Field, Parser, Record, Reject
from .csvrows import Row, read_rows

_MAPPED = (
    Field("timestamp", "time of the connection (UTC)",
          "network-traffic.start, observed-data.first_observed/last_observed, "
          "sighting.first_seen/last_seen, created/modified", required=True),
    Field("src_ip", "infected machine's address (the victim)",
          "ipv4-addr/ipv6-addr.value, network-traffic.src_ref", required=True),
    Field("src_port", "victim's source port", "network-traffic.src_port"),
    Field("src_asn", "victim's autonomous system", "autonomous-system.number"),
    Field("dst_ip", "sinkhole address", "ipv4-addr/ipv6-addr.value, network-traffic.dst_ref"),
    Field("dst_port", "sinkhole port", "network-traffic.dst_port"),
    Field("protocol", "transport protocol (tcp, udp)", "network-traffic.protocols[1]"),
    Field("application", "application protocol (http, tls ...)",
          "network-traffic.protocols[2]"),
    Field("infection", "infection name", "malware.name when family is empty"),
    Field("family", "malware family", "malware.name, sighting.sighting_of_ref"),
)
_KEPT = ("src_geo", "src_region", "src_city", "src_hostname", "src_naics", "src_sector",
         "device_vendor", "device_type", "device_model", "dst_asn", "dst_geo", "dst_region",
         "dst_city", "dst_hostname", "dst_naics", "dst_sector", "public_source", "tag",
         "version", "event_id")
_EXTRA = "x_shadowserver_extra"
_TOKEN = re.compile(r"[^a-z0-9-]+")
_KEY = re.compile(r"[^a-z0-9_]+")


class Event4Sinkhole(Parser):
    name = "shadowserver-event4-sinkhole"
    description = "Shadowserver event4_sinkhole report: infected machines seen by a sinkhole"
    fields = (*_MAPPED,
              *(Field(name, "kept as reported", f"observed-data.{_EXTRA}.{name}")
                for name in _KEPT),
              Field("(any other column)", "kept as reported", f"observed-data.{_EXTRA}"))
    default_source = "Shadowserver Foundation"
    report_types = ("observed-data",)

    def records(self, path: Path) -> Iterator[Record | Reject]:
        for item in read_rows(path):
            if isinstance(item, tuple):
                missing = [f.name for f in _MAPPED if f.required and f.name not in item[0]]
                if missing:
                    yield Reject(str(path), 1, f"header lacks required columns: "
                                 f"{', '.join(missing)}", ",".join(item[0]))
                    return
                continue
            if isinstance(item, Reject):
                yield item
                continue
            try:
                yield _harmonise(item)
            except v.BadValue as exc:
                yield Reject(item.source, item.number, str(exc), item.raw)

    def to_stix(self, record: Record, context: Context) -> list[dict[str, Any]]:
        values, seen = record.values, record.time
        assert seen is not None
        victim = v.sco(values["src_type"], value=values["src_ip"])
        observables = [victim]
        traffic: dict[str, Any] = {"start": v.observable_timestamp(seen), "src_ref": victim["id"]}
        if "dst_ip" in values:
            sinkhole = v.sco(values["dst_type"], value=values["dst_ip"])
            observables.append(sinkhole)
            traffic["dst_ref"] = sinkhole["id"]
        for name in ("src_port", "dst_port"):
            if name in values:
                traffic[name] = values[name]
        traffic["protocols"] = values["protocols"]
        flow = v.sco("network-traffic", **traffic)
        observables.append(flow)
        if "src_asn" in values:
            observables.append(v.sco("autonomous-system", number=values["src_asn"]))
        return build.victim_objects(context, observables, seen=seen, key=flow["id"],
                                    family=values["family"], extra=values["extra"],
                                    extra_name=_EXTRA)


def _harmonise(row: Row) -> Record:
    raw = {k: s.strip() for k, s in row.values.items() if s.strip()}
    out: dict[str, Any] = {}
    if "timestamp" not in raw or "src_ip" not in raw:
        raise v.BadValue("row lacks timestamp or src_ip")
    seen = v.timestamp(raw.pop("timestamp"))
    out["src_type"], out["src_ip"] = v.ip_address(raw.pop("src_ip"))
    if "dst_ip" in raw:
        out["dst_type"], out["dst_ip"] = v.ip_address(raw.pop("dst_ip"))
    for name in ("src_port", "dst_port"):
        if name in raw:
            out[name] = v.port(raw.pop(name))
    if "src_asn" in raw:
        text = raw.pop("src_asn").upper().removeprefix("AS")
        if not text.isdigit() or not 0 < int(text) < 2**32:
            raise v.BadValue(f"not an AS number: {text[:80]!r}")
        out["src_asn"] = int(text)
    protocols = ["ipv6" if out["src_type"] == "ipv6-addr" else "ipv4"]
    for name in ("protocol", "application"):
        token = _TOKEN.sub("-", raw.pop(name, "").lower()).strip("-")
        if token and token not in protocols:
            protocols.append(token)
    out["protocols"] = protocols
    family = raw.pop("family", "") or raw.pop("infection", "")
    if not family:
        raise v.BadValue("row names neither a malware family nor an infection")
    out["family"] = family.lower()
    out["extra"] = {_KEY.sub("_", k).strip("_")[:250] or "column": s for k, s in raw.items()}
    return Record(row.source, row.number, row.raw, out, seen)
FORMATS: tuple[type[Parser], ...] = (Event4Sinkhole,)
