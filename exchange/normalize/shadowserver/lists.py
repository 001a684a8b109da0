"""Address lists: blocklisted addresses and networks, and exposed services from the scan
reports."""

from __future__ import annotations

import functools
import ipaddress
import re
from pathlib import Path
from typing import Any

from .. import values as v
from ..base import Context, Field, Record
from ..csvrows import Row
from .report import (
    _CVE,
    _KEPT_IN,
    _address,
    _cve,
    _extra,
    _kept,
    _name,
    _present,
    _protocols,
    _reference_sdo,
    _Report,
    _seen,
    _tags,
    _victim,
)


class Blocklist(_Report):
    name = "shadowserver-blocklist"
    description = ("Shadowserver blocklist report: the recipient's addresses found on "
                   "third-party block lists")
    fields = (
        Field("timestamp", "time of the listing (UTC)",
              "observed-data.first_observed/last_observed, sighting.first_seen/last_seen",
              required=True),
        Field("ip", "listed address or network (CIDR)", "ipv4-addr/ipv6-addr.value",
              required=True),
        Field("asn", "autonomous system", "autonomous-system.number"),
        Field("reason", "reason given by the block list",
              f"attack-pattern 'blocklisted: REASON'; also kept in {_KEPT_IN}"),
        Field("tag", "Shadowserver tag", f"attack-pattern name when no reason; also in {_KEPT_IN}"),
        Field("source", "block list", f"attack-pattern name when neither; also in {_KEPT_IN}"),
        *_kept(("hostname", "geo", "region", "city", "naics", "sic", "sector"),
               "observed-data"),
    )

    def _harmonise(self, row: Row, header: list[str]) -> Record:
        raw = _present(row)
        seen = _seen(raw)
        if "ip" not in raw:
            raise v.BadValue("row lacks an ip")
        out: dict[str, Any] = {}
        out["ip_type"], out["ip"] = _address_or_network(raw.pop("ip"))
        if "asn" in raw:
            out["asn"] = v.asn(raw.pop("asn"))
        reason = raw.get("reason") or raw.get("tag") or raw.get("source") or "listed"
        out["pattern"] = _name(f"blocklisted: {reason}")
        out["extra"] = _extra(raw)
        return Record(row.source, row.number, row.raw, out, seen)

    def to_stix(self, record: Record, context: Context) -> list[dict[str, Any]]:
        values = record.values
        observables = [v.sco(values["ip_type"], value=values["ip"])]
        if "asn" in values:
            observables.append(v.sco("autonomous-system", number=values["asn"]))
        return _victim(context, record, observables,
                       _reference_sdo(context, "attack-pattern", values["pattern"]))


def _address_or_network(text: str) -> tuple[str, str]:
    """An address, or a network in CIDR form (STIX ipv4-addr/ipv6-addr values allow both)."""
    if "/" not in text:
        return v.ip_address(text)
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise v.BadValue(f"not an IP address or network: {text[:80]!r}") from None
    if network.num_addresses == 1:
        return v.ip_address(str(network.network_address))
    return ("ipv6-addr" if network.version == 6 else "ipv4-addr"), network.compressed


# -- scan_* -------------------------------------------------------------------------------------


_REPORT = re.compile(r"\b(scan6?_[a-z0-9_]+)")


@functools.lru_cache(maxsize=64)
def _report_in_name(source: str) -> str:
    """The scan report type a file name carries, e.g. 2026-11-20-scan_rdp-xx.csv: scan_rdp."""
    found = _REPORT.search(Path(source).name.lower())
    return found[1] if found else ""


class Scan(_Report):
    name = "shadowserver-scan"
    description = ("Shadowserver scan_* reports (scan_rdp, scan_ssl, scan_http, scan_smb ...): "
                   "the recipient's exposed or vulnerable services")
    fields = (
        Field("timestamp", "time of the scan (UTC)",
              "network-traffic.start, observed-data.first_observed/last_observed, "
              "sighting.first_seen/last_seen", required=True),
        Field("ip", "scanned address", "ipv4-addr/ipv6-addr.value, network-traffic.dst_ref",
              required=True),
        Field("port", "scanned port", "network-traffic.dst_port (with a port, a "
              "network-traffic is made)"),
        Field("protocol", "transport protocol", "network-traffic.protocols[1]"),
        Field("asn", "autonomous system", "autonomous-system.number"),
        Field("tag", "what was found: CVE ids and service names",
              "vulnerability CVE-… (external_references cve) per CVE id, else vulnerability "
              f"'exposed SERVICE' from the first tag; also kept in {_KEPT_IN}"),
        Field("(report type)", "option report, else the file name (scan_rdp ...)",
              f"vulnerability 'exposed SERVICE' when there is no tag; {_KEPT_IN}.report"),
        *_kept(("hostname",), "observed-data"),
    )
    options = (Field("report", "the scan report type, e.g. scan_rdp (default: read from the "
                               "file name); names the exposed service when a row has no tag"),)

    def _harmonise(self, row: Row, header: list[str]) -> Record:
        raw = _present(row)
        seen = _seen(raw)
        if "ip" not in raw:
            raise v.BadValue("row lacks an ip")
        out: dict[str, Any] = {}
        _address(raw, "ip", out)
        if "port" in raw:
            out["port"] = v.port(raw.pop("port"))
        out["protocols"] = _protocols(out["ip_type"], raw, "protocol")
        if "asn" in raw:
            out["asn"] = v.asn(raw.pop("asn"))
        report = self.settings.get("report", "").strip().lower() or _report_in_name(row.source)
        out["targets"] = _scan_findings(raw.get("tag", ""), report)
        if report:
            raw["report"] = report
        out["extra"] = _extra(raw)
        return Record(row.source, row.number, row.raw, out, seen)

    def to_stix(self, record: Record, context: Context) -> list[dict[str, Any]]:
        values, seen = record.values, record.time
        assert seen is not None
        address = v.sco(values["ip_type"], value=values["ip"])
        observables = [address]
        if "port" in values:
            observables.append(v.sco(
                "network-traffic", start=v.observable_timestamp(seen), dst_ref=address["id"],
                dst_port=values["port"], protocols=values["protocols"]))
        if "asn" in values:
            observables.append(v.sco("autonomous-system", number=values["asn"]))
        objects: list[dict[str, Any]] = []
        for kind, name in values["targets"]:
            target = _cve(context, name) if kind == "cve" else \
                _reference_sdo(context, "vulnerability", name)
            objects += _victim(context, record, observables, target)
        return objects


def _scan_findings(tag: str, report: str) -> tuple[tuple[str, str], ...]:
    """What a scan row reports: each CVE its tag names, else the exposed service (its first
    tag, else the report type's service)."""
    tags = _tags(tag)
    cves = tuple(("cve", t) for t in dict.fromkeys(tags) if _CVE.match(t))
    if cves:
        return cves
    service = tags[0] if tags else re.sub(r"^scan6?_", "", report).replace("_", " ")
    if not service:
        raise v.BadValue("row has no tag and the report type is unknown: name it with "
                         "--option report=scan_<service> or in the file name")
    return (("exposed", _name(f"exposed {service}")),)
