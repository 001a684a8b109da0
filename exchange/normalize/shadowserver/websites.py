"""Web reports: compromised websites (the victim site, and the skimmer's infrastructure it
names) and URLs serving malware (suspect infrastructure)."""

from __future__ import annotations

from typing import Any

from .. import build
from .. import values as v
from ..base import Context, Field, Record
from ..csvrows import Row
from .report import (
    _CVE,
    _EXTRA,
    _KEPT_IN,
    _address,
    _extra,
    _host,
    _kept,
    _name,
    _present,
    _reference_sdo,
    _Report,
    _seen,
    _suspect_objects,
    _suspect_url,
    _tags,
    _victim,
)


class CompromisedWebsite(_Report):
    name = "shadowserver-compromised-website"
    description = ("Shadowserver compromised_website report: the recipient's websites serving "
                   "malicious content")
    fields = (
        Field("timestamp", "time the site was seen (UTC)",
              "observed-data.first_observed/last_observed, sighting.first_seen/last_seen",
              required=True),
        Field("ip", "the website's address", "ipv4-addr/ipv6-addr.value", required=True),
        Field("http_host", "the website's host name", "domain-name.value, url host"),
        Field("url", "path (or whole URL) of the malicious content",
              "url.value (with http_host or ip, port and application)"),
        Field("family", "malware family served", "malware.name, sighting.sighting_of_ref"),
        Field("category", "compromise category (spam, phishing ...)",
              "attack-pattern 'compromised website: CATEGORY' when no family; also kept in "
              f"{_KEPT_IN}"),
        Field("tag", "Shadowserver tag", "attack-pattern name when no family nor category; "
              f"also kept in {_KEPT_IN}"),
        Field("asn", "autonomous system", "autonomous-system.number"),
        Field("cc_url", "where the injected script sends what it collects",
              "suspect infrastructure: url, indicator, infrastructure (command-and-control) "
              "controlling the malware (related-to the attack pattern when no family); kept "
              f"in {_KEPT_IN} when on the site's own host"),
        Field("redirect_target", "where the site sends its visitors",
              "suspect infrastructure: url, indicator, infrastructure (hosting-malware) "
              "delivering the malware (related-to the attack pattern when no family); kept "
              f"in {_KEPT_IN} when on the site's own host or not a URL"),
        *_kept(("port", "application", "hostname", "geo", "region", "city", "system",
                "detected_since", "server", "naics", "sic", "sector"), "observed-data"),
    )

    def _harmonise(self, row: Row, header: list[str]) -> Record:
        raw = _present(row)
        seen = _seen(raw)
        out: dict[str, Any] = {}
        if "ip" in raw:
            _address(raw, "ip", out)
        host = raw.pop("http_host", "")
        if host:
            try:
                kind, address = v.ip_address(host)
                out.setdefault("ip_type", kind)
                out.setdefault("ip", address)
            except v.BadValue:
                out["domain"] = v.domain(host)
        url = _site_url(raw, out)
        if url:
            out["url"] = url
        if not any(k in out for k in ("ip", "domain", "url")):
            raise v.BadValue("row names no ip, http_host or url")
        if "asn" in raw:
            out["asn"] = v.asn(raw.pop("asn"))
        family = raw.pop("family", "")
        if family:
            out["family"] = family.lower()
        else:
            reason = raw.get("category") or raw.get("tag") or "unknown"
            out["pattern"] = _name(f"compromised website: {reason}")
        victim_hosts = {out[k] for k in ("ip", "domain") if k in out}
        victim_hosts |= {_host(raw["hostname"])} if "hostname" in raw else set()
        urls = [(kind, _suspect_url(raw, column, victim_hosts))
                for kind, column in (("c2", "cc_url"), ("delivery", "redirect_target"))]
        out["suspect_urls"] = tuple((kind, url) for kind, url in urls if url)
        out["extra"] = _extra(raw)
        return Record(row.source, row.number, row.raw, out, seen)

    def to_stix(self, record: Record, context: Context) -> list[dict[str, Any]]:
        values = record.values
        observables = []
        if "ip" in values:
            observables.append(v.sco(values["ip_type"], value=values["ip"]))
        if "domain" in values:
            observables.append(v.sco("domain-name", value=values["domain"]))
        if "url" in values:
            observables.append(v.sco("url", value=values["url"]))
        if "asn" in values:
            observables.append(v.sco("autonomous-system", number=values["asn"]))
        target = build.malware(context, values["family"]) if "family" in values else \
            _reference_sdo(context, "attack-pattern", values["pattern"])
        assert record.time is not None
        return [*_victim(context, record, observables, target),
                *_suspect_objects(context, record.time, target, values["suspect_urls"])]


def _site_url(raw: dict[str, str], out: dict[str, Any]) -> str | None:
    """The full URL of a compromised site's content: the `url` column when absolute, else
    the path on the site's host (domain or address), port and scheme (http unless the
    application says https). None when nothing names a host (`url` then stays in extra)."""
    path = raw.get("url", "")
    if not path:
        return None
    if "://" in path:
        raw.pop("url")
        return v.url(path)
    host = out.get("domain") or out.get("ip")
    if not host:
        return None
    if out.get("ip_type") == "ipv6-addr" and host == out.get("ip"):
        host = f"[{host}]"
    scheme = "https" if raw.get("application", "").lower() == "https" else "http"
    port = f":{v.port(raw['port'])}" if "port" in raw else ""
    raw.pop("url")
    return v.url(f"{scheme}://{host}{port}{'' if path.startswith('/') else '/'}{path}")


# -- malware_url --------------------------------------------------------------------------------


class MalwareUrl(_Report):
    name = "shadowserver-malware-url"
    description = ("Shadowserver malware_url report: URLs seen distributing malware "
                   "(suspect infrastructure)")
    report_types = ("indicator", "malware")
    fields = (
        Field("timestamp", "time the URL was seen (UTC)",
              "indicator.valid_from/created, infrastructure.first_seen/last_seen",
              required=True),
        Field("url", "URL serving the payload", "url.value, indicator.pattern", required=True),
        Field("family", "malware family, when the report has the column",
              "malware.name ('delivers' from the infrastructure)"),
        Field("tag", "tags, often CVE ids", "CVE ids: indicator/infrastructure."
              "external_references (source_name cve); other tags: their labels"),
        Field("sha256", "SHA-256 of the payload downloaded",
              "file.hashes.SHA-256: a payload indicator, related-to the URL's infrastructure"),
        Field("md5", "MD5 of the payload, when given", "file.hashes.MD5 (same payload)"),
        *_kept(("host", "ip", "asn", "geo", "region", "city", "naics", "sector", "severity",
                "source", "application"), "indicator"),
    )

    def _harmonise(self, row: Row, header: list[str]) -> Record:
        raw = _present(row)
        seen = _seen(raw)
        if "url" not in raw:
            raise v.BadValue("row lacks a url")
        out: dict[str, Any] = {"url": v.url(raw.pop("url"))}
        family = raw.pop("family", "")
        if family:
            out["family"] = family.lower()
        tags = _tags(raw.pop("tag", ""))
        out["labels"] = tuple(t for t in tags if not _CVE.match(t))
        out["references"] = tuple({"source_name": "cve", "external_id": t.upper()}
                                  for t in dict.fromkeys(tags) if _CVE.match(t))
        hashes = {}
        for column in ("sha256", "md5"):
            if column in raw:
                algorithm = v.HASH_NAMES[column]
                hashes[algorithm] = v.hash_value(algorithm, raw.pop(column))
        out["hashes"] = hashes
        out["extra"] = _extra(raw)
        return Record(row.source, row.number, row.raw, out, seen)

    def to_stix(self, record: Record, context: Context) -> list[dict[str, Any]]:
        values, seen = record.values, record.time
        assert seen is not None
        family = values.get("family")
        objects = build.infrastructure_objects(
            context, v.sco("url", value=values["url"]), first_seen=seen, last_seen=seen,
            family=family, kind=build.DISTRIBUTION, labels=values["labels"],
            references=values["references"], extra=values["extra"], extra_name=_EXTRA)
        if not values["hashes"]:
            return objects
        payload = build.infrastructure_objects(
            context, v.sco("file", hashes=values["hashes"]), first_seen=seen, last_seen=seen,
            family=family, kind=build.PAYLOAD)
        infrastructure = next(o for o in objects if o["type"] == "infrastructure")
        return [*objects, *payload,
                build.relationship(context, infrastructure["id"], "related-to",
                                   payload[1]["id"], seen)]


# -- blocklist ----------------------------------------------------------------------------------
