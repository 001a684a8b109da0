"""The event4 family: sinkholed connections (with their HTTP requests) and honeypot brute
forcing, whose rows carry credentials the attackers tried (never passed on)."""

from __future__ import annotations

import csv
import functools
import hashlib
import hmac
import io
import re
from typing import Any

from .. import build
from .. import values as v
from ..base import Context, Field, Record, Reject
from ..csvrows import Row
from .report import (
    _EXTRA,
    _KEPT_IN,
    _address,
    _extra,
    _host,
    _kept,
    _name,
    _present,
    _protocols,
    _reference_sdo,
    _Report,
    _suspect_objects,
    _suspect_url,
    _victim,
)

_asn = functools.lru_cache(maxsize=4096)(v.asn)


def _payload_hashes(raw: dict[str, str]) -> dict[str, str]:
    """The payload's hashes (payload_md5, payload_sha1, payload_sha256 ...) popped from `raw`;
    a value that is not a hash of its kind stays in the fields extension."""
    hashes = {}
    for name, algorithm in v.HASH_NAMES.items():
        column = f"payload_{name}"
        if column in raw:
            try:
                hashes[algorithm] = v.hash_value(algorithm, raw[column])
            except v.BadValue:
                continue
            raw.pop(column)
    return hashes


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


def _connection(raw: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The time and connection facts every event4 row has, popped from `raw`."""
    out: dict[str, Any] = {}
    if "timestamp" not in raw or "src_ip" not in raw:
        raise v.BadValue("row lacks timestamp or src_ip")
    seen = v.timestamp(raw.pop("timestamp"))
    _address(raw, "src_ip", out)
    if "dst_ip" in raw:
        _address(raw, "dst_ip", out)
    for name in ("src_port", "dst_port"):
        if name in raw:
            out[name] = v.port(raw.pop(name))
    if "src_asn" in raw:
        out["src_asn"] = _asn(raw.pop("src_asn"))
    out["protocols"] = _protocols(out["src_ip_type"], raw, "protocol", "application")
    return seen, out


def _family(raw: dict[str, str]) -> str:
    family = raw.pop("family", "") or raw.pop("infection", "")
    if not family:
        raise v.BadValue("row names neither a malware family nor an infection")
    return family.lower()


def _connection_observables(values: dict[str, Any], seen: str,
                            ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The victim's address, the other end, the network traffic and the victim's AS."""
    victim = v.sco(values["src_ip_type"], value=values["src_ip"])
    observables = [victim]
    traffic: dict[str, Any] = {"start": v.observable_timestamp(values.get("start") or seen)}
    if "end" in values:
        traffic["end"] = v.observable_timestamp(values["end"])
        # A session that ended is not active; stix2 refuses `end` without saying so.
        traffic["is_active"] = False
    traffic["src_ref"] = victim["id"]
    if "dst_ip" in values:
        other = v.sco(values["dst_ip_type"], value=values["dst_ip"])
        observables.append(other)
        traffic["dst_ref"] = other["id"]
    for name in ("src_port", "dst_port"):
        if name in values:
            traffic[name] = values[name]
    traffic["protocols"] = values["protocols"]
    if "extensions" in values:
        traffic["extensions"] = values["extensions"]
    flow = v.sco("network-traffic", **traffic)
    observables.append(flow)
    if "src_asn" in values:
        observables.append(v.sco("autonomous-system", number=values["src_asn"]))
    return observables, flow


class Event4Sinkhole(_Report):
    name = "shadowserver-event4-sinkhole"
    description = "Shadowserver event4_sinkhole report: infected machines seen by a sinkhole"
    fields = (*_MAPPED, *_kept(_KEPT, "observed-data"))

    def _harmonise(self, row: Row, header: list[str]) -> Record:
        raw = _present(row)
        seen, out = _connection(raw)
        out["family"] = _family(raw)
        out["extra"] = _extra(raw)
        return Record(row.source, row.number, row.raw, out, seen)

    def to_stix(self, record: Record, context: Context) -> list[dict[str, Any]]:
        values, seen = record.values, record.time
        assert seen is not None
        observables, flow = _connection_observables(values, seen)
        return build.victim_objects(context, observables, seen=seen, key=flow["id"],
                                    family=values["family"], extra=values["extra"],
                                    extra_name=_EXTRA)


# -- event4_sinkhole_http -----------------------------------------------------------------------

# A request line as some reports give it in http_url: "GET /path HTTP/1.1".
_REQUEST_LINE = re.compile(r"^([A-Za-z]{1,20}) (\S+) (HTTP/\d(?:\.\d)?)$")


_METHOD = re.compile(r"^[A-Za-z]{1,20}$")


_HTTP = "network-traffic.extensions.http-request-ext"


_HEADERS = (("http_host", "Host"), ("http_agent", "User-Agent"), ("http_referer", "Referer"),
            ("forwarded_by", "X-Forwarded-For"))


def _http_request(raw: dict[str, str]) -> dict[str, Any] | None:
    """The HTTP request as a STIX http-request-ext, its columns popped from `raw`; None when
    the row gives no method (STIX requires one), leaving those columns to the extra dict."""
    target = raw.get("http_url", "")
    method = raw.get("http_method", "")
    version = ""
    line = _REQUEST_LINE.match(target)
    if line:
        method, target, version = method or line[1], line[2], line[3]
    if not method or not target:
        return None
    if not _METHOD.match(method):
        raise v.BadValue(f"not an HTTP method: {method[:80]!r}")
    raw.pop("http_url")
    raw.pop("http_method", None)
    request: dict[str, Any] = {"request_method": method.lower(), "request_value": target}
    if version:
        request["request_version"] = version.lower()
    headers: dict[str, list[str]] = {}
    for column, header in _HEADERS:
        value = raw.pop(column, "")
        if value and value.lower() != "null":  # the reports write "null" for no header
            headers[header] = [value]
    if headers:
        request["request_header"] = headers
    return {"http-request-ext": request}


class Event4SinkholeHttp(Event4Sinkhole):
    name = "shadowserver-event4-sinkhole-http"
    description = ("Shadowserver event4_sinkhole_http report: infected machines seen by an "
                   "HTTP sinkhole, with their HTTP request")
    fields = (
        *_MAPPED,
        Field("http_url", "request target, or the whole request line 'GET /p HTTP/1.1'",
              f"{_HTTP}.request_value (and request_method, request_version from a request "
              f"line); kept in {_KEPT_IN} when no method is known"),
        Field("http_method", "HTTP method, when the report has the column",
              f"{_HTTP}.request_method (lower case)"),
        Field("http_host", "Host header", f"{_HTTP}.request_header.Host"),
        Field("http_agent", "User-Agent header", f"{_HTTP}.request_header.User-Agent"),
        Field("http_referer", "Referer header ('null': none)", f"{_HTTP}.request_header.Referer"),
        Field("forwarded_by", "X-Forwarded-For header",
              f"{_HTTP}.request_header.X-Forwarded-For"),
        *_kept((*_KEPT, "ssl_cipher"), "observed-data"),
    )

    def _harmonise(self, row: Row, header: list[str]) -> Record:
        raw = _present(row)
        seen, out = _connection(raw)
        out["family"] = _family(raw)
        extensions = _http_request(raw)
        if extensions is not None:
            out["extensions"] = extensions
            if "http" not in out["protocols"]:
                out["protocols"].append("http")
        out["extra"] = _extra(raw)
        return Record(row.source, row.number, row.raw, out, seen)


# -- event4_honeypot_brute_force ----------------------------------------------------------------

# Columns holding credentials the attacker tried, by name (the documented ones are `password`
# and `username`; similar names are treated alike so a renamed column cannot leak).
_SECRET = re.compile(r"pass|pwd|secret|credential")


_USER = re.compile(r"^(user|username|user_name|login)$|_username$")


_REDACTED = "[redacted]"


_UNREADABLE = "[redacted: unreadable row; it may hold credentials]"


_HONEYPOT_WORDS = {"src_ip": "attacking machine's address (the victim: likely compromised)",
                   "src_port": "attacker's source port", "src_asn": "attacker's autonomous system",
                   "dst_ip": "honeypot address", "dst_port": "honeypot port"}


_BRUTE_FORCE = (_name("Password Brute Forcing"),
                ({"source_name": "capec", "external_id": "CAPEC-49"},
                 {"source_name": "mitre-attack", "external_id": "T1110"}))


@functools.lru_cache(maxsize=64)
def _credential_columns(header: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(i for i, name in enumerate(header) if _SECRET.search(name) or _USER.search(name))


def _redact(line: str, positions: tuple[int, ...]) -> str:
    """The CSV line with the values at `positions` replaced by a marker (the line was read
    strictly already, so it splits the same way again)."""
    fields = next(csv.reader([line]), [])
    for i in positions:
        if i < len(fields) and fields[i].strip():
            fields[i] = _REDACTED
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


class Event4HoneypotBruteForce(_Report):
    name = "shadowserver-event4-honeypot-brute-force"
    description = ("Shadowserver event4_honeypot_brute_force report: machines that tried to "
                   "log in to a honeypot (likely compromised); credentials are not kept")
    fields = (
        *(Field(f.name, _HONEYPOT_WORDS.get(f.name, f.description), f.stix, f.required)
          for f in _MAPPED if f.name not in ("infection", "family")),
        Field("start_time", "start of the session (UTC)", "network-traffic.start"),
        Field("end_time", "end of the session (UTC)", "network-traffic.end"),
        Field("password", "password tried: never kept (blanked in the raw line too)", ""),
        Field("username", "username tried: dropped, or with usernames=hash kept as "
              "HMAC-SHA256 keyed by username_key (blanked in the raw line)",
              f"observed-data.{_KEPT_IN}.username_hmac_sha256"),
        Field("(brute force)", "every row: the attack pattern sighted",
              "attack-pattern 'password brute forcing' (CAPEC-49, ATT&CK T1110), "
              "sighting.sighting_of_ref"),
        Field("payload_url", "URL of the payload the attacker fetched",
              "suspect infrastructure: url, indicator, infrastructure (hosting-malware) "
              "related-to the attack pattern and to the payload's indicator; kept in "
              f"{_KEPT_IN} when it is on the attacker's own address (a victim)"),
        Field("payload_md5", "MD5 of the payload (payload_sha1, payload_sha256 alike)",
              "file.hashes: a payload indicator that indicates the attack pattern"),
        *_kept((*_KEPT, "infection", "family", "service", "client_version"), "observed-data"),
    )
    options = (
        Field("usernames", "drop (default): usernames are not kept; hash: kept as "
              "HMAC-SHA256 hex digests keyed by username_key"),
        Field("username_key", "secret key of the username HMAC (required with "
              "usernames=hash); prefer an --options file to the command line"),
    )

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        super().__init__(settings)
        mode = self.settings.get("usernames", "drop").strip().lower()
        if mode not in ("drop", "hash"):
            raise v.BadValue("usernames must be drop or hash")
        key = self.settings.get("username_key", "")
        if mode == "hash" and not key.strip():
            raise v.BadValue("usernames=hash needs a username_key")
        self._username_key = key.encode() if mode == "hash" else None

    def _raw(self, row: Row, header: list[str]) -> str:
        positions = _credential_columns(tuple(header))
        return _redact(row.raw, positions) if positions else row.raw

    def _header_raw(self, header: list[str]) -> str:
        # Without the expected header the first line may be a data row holding credentials.
        return "[redacted: not the expected header; it may be a row with credentials]"

    def _unreadable(self, reject: Reject) -> Reject:
        if reject.row == 0:
            return reject
        return Reject(reject.source, reject.row, reject.reason, _UNREADABLE)

    def _harmonise(self, row: Row, header: list[str]) -> Record:
        raw = _present(row)
        hashed = self._credentials(raw)  # first: nothing below may see a credential
        seen, out = _connection(raw)
        start = v.timestamp(raw.pop("start_time")) if "start_time" in raw else seen
        if "end_time" in raw:
            end = v.timestamp(raw.pop("end_time"))
            if end < start:
                raise v.BadValue("end_time is before start_time")
            out["end"] = end
        out["start"] = start
        victim_hosts = {out["src_ip"], *(_host(raw[c]) for c in ("src_hostname",) if c in raw)}
        payload = _suspect_url(raw, "payload_url", victim_hosts)
        out["suspect_urls"] = (("delivery", payload),) if payload else ()
        out["payload_hashes"] = _payload_hashes(raw)
        out["extra"] = _extra(raw) | hashed
        return Record(row.source, row.number, self._raw(row, header), out, seen)

    def _credentials(self, raw: dict[str, str]) -> dict[str, str]:
        """Pop every credential column; with a username key, the usernames' HMACs."""
        kept: dict[str, str] = {}
        for name in [n for n in raw if _SECRET.search(n) or _USER.search(n)]:
            value = raw.pop(name)
            if self._username_key is not None and not _SECRET.search(name):
                digest = hmac.new(self._username_key, value.encode(), hashlib.sha256)
                kept[v.extra_key(name, limit=238) + "_hmac_sha256"] = digest.hexdigest()
        return kept

    def to_stix(self, record: Record, context: Context) -> list[dict[str, Any]]:
        assert record.time is not None
        observables, _ = _connection_observables(record.values, record.time)
        target = _reference_sdo(context, "attack-pattern", *_BRUTE_FORCE)
        return [*_victim(context, record, observables, target),
                *_suspect_objects(context, record.time, target, record.values["suspect_urls"],
                                  record.values["payload_hashes"])]


# -- compromised_website ------------------------------------------------------------------------
