"""Shadowserver reports (CSV with a header row), one parser per report family.

Most reports are about the recipient's own machines, which are victims: sinkholed or
honeypot-attacking hosts, compromised websites, blocklisted or exposed addresses. Each row
becomes observed-data over the machine's observables and a sighting, by Shadowserver, of what
was seen: a malware family, an attack pattern or a vulnerability. A victim's address is never
made an indicator. `malware_url` reports suspect infrastructure (URLs serving malware); victim
reports that name the attacker's infrastructure too (a compromised website's `cc_url` and
`redirect_target`, the payload a honeypot attacker fetched) give it as suspect infrastructure
beside the sighting, unless it is the victim's own address or host.

Columns without a STIX home, known or not, are kept in the Shadowserver fields extension
(stix_extensions.py) so nothing the source said is lost. A header without a report's required
columns is one row-1 reject.

`event4_honeypot_brute_force` rows carry credentials the attackers tried: passwords never
leave the parser (not in STIX, not in the raw line kept on records and rejects); usernames are
dropped or kept only as a keyed hash.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import hmac
import io
import ipaddress
import re
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from . import build
from . import values as v
from .base import Context, Field, Parser, Record, Reject
from .csvrows import Row, read_rows

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
_asn = functools.lru_cache(maxsize=4096)(v.asn)


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


FORMATS: tuple[type[Parser], ...] = (Event4Sinkhole, Event4SinkholeHttp,
                                     Event4HoneypotBruteForce, CompromisedWebsite, MalwareUrl,
                                     Blocklist, Scan)
