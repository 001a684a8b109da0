"""abuse.ch ThreatFox: indicators of compromise, as the CSV export, the JSON export and the API
answer (`{"query_status": "ok", "data": [...]}`).

An IOC of type ip:port, domain or url becomes suspect infrastructure whose kind follows
`threat_type` (botnet_cc: C2, payload_delivery: distribution, payload: a payload without
infrastructure, anything else: unknown); an md5/sha1/sha256 hash is a malware file (payload).
An ip:port is the server on that port (`port=`, as for Feodo Tracker): the address is the
observable, the pattern matches connections to it on that port. The family is
`malware_printable` (else `malware`) unless ThreatFox does not know it; `confidence_level` is
the indicator's confidence.
"""

from __future__ import annotations

from typing import Any

from . import build
from . import values as v
from .abusech_common import (
    CsvFeed,
    Feed,
    JsonFeed,
    endpoint,
    endpoint_name,
    entry,
    export_entries,
    extra,
    flag,
    items,
    link,
    reference,
    required_time,
    text,
    time,
)
from .base import Field

SOURCE = "abuse.ch ThreatFox"
KINDS: dict[str, tuple[str, str] | None] = {
    "botnet_cc": build.C2, "payload_delivery": build.DISTRIBUTION, "payload": build.PAYLOAD}
_UNKNOWN_FAMILY = frozenset({"unknown", "unknown malware"})
_KNOWN = frozenset({"first_seen_utc", "ioc_id", "ioc_value", "ioc_type", "threat_type",
                    "fk_malware", "malware_alias", "malware_printable", "last_seen_utc",
                    "confidence_level", "is_compromised", "reference", "tags", "anonymous",
                    "reporter"})
_FIELDS = (
    Field("first_seen_utc", "when the IOC was first seen (UTC; first_seen in the API)",
          "indicator.valid_from/created, infrastructure.first_seen", required=True),
    Field("ioc_id", "ThreatFox IOC id (id in the API, the object key in the JSON export)",
          "external_references[].external_id/url, ext[abusech].ioc_id"),
    Field("ioc_value", "the IOC (ioc in the API)",
          "ipv4-addr/ipv6-addr/domain-name/url.value or file.hashes, indicator.pattern "
          "(an ip:port: network-traffic dst_ref and dst_port)", required=True),
    Field("ioc_type", "ip:port, domain, url, md5_hash, sha1_hash or sha256_hash",
          "the observable's type", required=True),
    Field("threat_type", "botnet_cc, payload_delivery, payload ...",
          "infrastructure.infrastructure_types; ext[abusech].threat_type"),
    Field("fk_malware", "Malpedia name of the family (malware in the JSON)",
          "malware.name when malware_printable is empty; ext[abusech].malware"),
    Field("malware_printable", "the malware family", "malware.name"),
    Field("malware_alias", "other names of the family", "ext[abusech].malware_alias[]"),
    Field("last_seen_utc", "when the IOC was last seen (UTC; last_seen in the API)",
          "infrastructure.last_seen"),
    Field("confidence_level", "ThreatFox's confidence, 0-100", "indicator.confidence"),
    Field("reference", "where the IOC was reported",
          "external_references[].url (.description when no URL)"),
    Field("tags", "ThreatFox tags", "labels"),
    Field("is_compromised", "whether the host is a compromised, otherwise legitimate one",
          "ext[abusech].is_compromised"),
    Field("anonymous", "whether the reporter is anonymous", "ext[abusech].anonymous"),
    Field("reporter", "who reported the IOC", "ext[abusech].reporter"),
    Field("(any other field)", "kept as reported (the API's threat_type_desc, ioc_type_desc, "
                               "malware_malpedia ...)", "indicator.ext[abusech]"),
)


class _ThreatFox(Feed):
    default_source = SOURCE
    references = ({"source_name": SOURCE, "url": "https://threatfox.abuse.ch/"},)
    aliases = {"id": "ioc_id", "ioc": "ioc_value", "malware": "fk_malware",
               "first_seen": "first_seen_utc", "last_seen": "last_seen_utc"}

    def harmonise(self, fields: dict[str, Any]) -> dict[str, Any]:
        value, ioc_type = text(fields.get("ioc_value")), text(fields.get("ioc_type"))
        if value is None or ioc_type is None:
            raise v.BadValue("no ioc_value or ioc_type")
        threat_type = text(fields.get("threat_type"))
        kind = KINDS.get(threat_type or "", build.UNKNOWN)
        observable, name, port = _observable(ioc_type.lower(), value)
        if observable["type"] == "file":
            kind = build.PAYLOAD  # a file is never infrastructure
        ioc_id = text(fields.get("ioc_id"))
        page = f"https://threatfox.abuse.ch/ioc/{ioc_id}/" if ioc_id and ioc_id.isdigit() else None
        source_reference = text(fields.get("reference"))
        return entry(
            observable, kind=kind, name=name, port=port,
            first_seen=required_time(fields, "first_seen_utc"),
            last_seen=time(fields.get("last_seen_utc")), family=_family(fields),
            confidence=_confidence(fields.get("confidence_level")),
            labels=tuple(t.lower() for t in items(fields.get("tags"))),
            references=reference(SOURCE, page, ioc_id) + _reported(source_reference),
            extra=extra(fields, _KNOWN, ioc_id=ioc_id, threat_type=threat_type,
                        malware=text(fields.get("fk_malware")),
                        malware_alias=list(items(fields.get("malware_alias"))),
                        is_compromised=flag(fields.get("is_compromised")),
                        anonymous=flag(fields.get("anonymous")),
                        reporter=text(fields.get("reporter"))))


def _observable(ioc_type: str, value: str) -> tuple[dict[str, Any], str | None, int | None]:
    """(observable, name, port) of one IOC."""
    if ioc_type == "ip:port":
        kind, address, port = endpoint(value)
        return v.sco(kind, value=address), endpoint_name(kind, address, port), port
    if ioc_type == "domain":
        return v.sco("domain-name", value=v.domain(value)), None, None
    if ioc_type == "url":
        return v.sco("url", value=v.url(value)), None, None
    algorithm = v.HASH_NAMES.get(ioc_type.removesuffix("_hash"))
    if ioc_type.endswith("_hash") and algorithm is not None:
        digest = v.hash_value(algorithm, value)
        return v.sco("file", hashes={algorithm: digest}), digest, None
    raise v.BadValue(f"unsupported ioc_type: {ioc_type[:80]!r}")


def _family(fields: dict[str, Any]) -> str | None:
    for name in ("malware_printable", "fk_malware"):
        found = text(fields.get(name))
        if found and found.lower() not in _UNKNOWN_FAMILY:
            return found
    return None


def _confidence(value: Any) -> int | None:
    found = text(value)
    if found is None:
        return None
    try:
        return v.confidence(found)
    except v.BadValue as exc:
        raise v.BadValue(f"confidence_level: {exc}") from None


def _reported(value: str | None) -> tuple[dict[str, str], ...]:
    """The IOC's own reference: a URL, or a text saying where it was reported."""
    if value is None:
        return ()
    url = link(value)
    return ({"source_name": "reference", "url": url} if url else
            {"source_name": "reference", "description": value},)


class ThreatFoxCsv(CsvFeed, _ThreatFox):
    name = "abusech-threatfox-csv"
    description = "abuse.ch ThreatFox CSV export (full, recent): IOCs"
    fields = _FIELDS
    required = ("first_seen_utc", "ioc_value", "ioc_type")


class ThreatFoxJson(JsonFeed, _ThreatFox):
    name = "abusech-threatfox-json"
    description = ("abuse.ch ThreatFox JSON export ({ioc_id: [entry]}) or API answer "
                   "({query_status, data: [...]}): IOCs")
    fields = _FIELDS
    id_field = "ioc_id"

    def entries(self, document: Any) -> list[tuple[str | None, Any]]:
        return export_entries(document, "data", "ThreatFox")
