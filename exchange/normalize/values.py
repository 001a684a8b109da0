"""Value normalisation and deterministic identifiers, shared by every parser.

Values are normalised before any id is built from them (stix2 does not: `Example.com` and
`example.com` would become two objects). Every function raises `BadValue` with a short reason
that ends up in the rejects file.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import idna
import orjson

# STIX 2.1 section 2.9: the namespace of deterministic ids for cyber observables.
SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
# This project's namespace for SDO, SRO and report ids over a natural key.
PROJECT_NAMESPACE = uuid.UUID("f2ec323f-787b-4dae-8615-fae3353b420f")

# STIX 2.1 id-contributing properties (section 6, per SCO type) for the types we build.
ID_CONTRIBUTING: dict[str, tuple[str, ...]] = {
    "autonomous-system": ("number",),
    "domain-name": ("value",),
    "email-addr": ("value",),
    "file": ("hashes", "name", "extensions", "parent_directory_ref"),
    "ipv4-addr": ("value",),
    "ipv6-addr": ("value",),
    "mac-addr": ("value",),
    "network-traffic": ("start", "end", "src_ref", "dst_ref", "src_port", "dst_port",
                        "protocols", "extensions"),
    "url": ("value",),
}
# STIX 2.1 section 2.9: the hash chosen when `hashes` contributes to an id, in this order.
_HASH_PREFERENCE = ("MD5", "SHA-1", "SHA-256", "SHA-512")

_HEX = re.compile(r"^[0-9a-f]+$")
_HASH_LENGTHS = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-512": 128}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class BadValue(ValueError):
    """A value that cannot be normalised; its message is the reject reason."""


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON in the canonical form STIX 2.1 uses for ids: sorted keys, no spaces (RFC 8785
    for the value kinds ids are built from: strings, integers, lists and objects)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def uuid5(namespace: uuid.UUID, name: bytes) -> str:
    """RFC 4122 UUIDv5 as text, as `uuid.uuid5` computes it, without building UUID objects
    (ids are built for every object of every row)."""
    prefix = _NAMESPACE_BYTES.get(namespace) or namespace.bytes
    h = hashlib.sha1(prefix + name).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_NAMESPACE_BYTES = {n: n.bytes for n in (SCO_NAMESPACE, PROJECT_NAMESPACE)}
# The RFC 4122 variant bits (10xx) set on a hex digit.
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def sco_id(obj_type: str, properties: dict[str, Any]) -> str:
    """The deterministic id of a cyber observable (STIX 2.1 section 2.9)."""
    contributing: dict[str, Any] = {}
    for name in ID_CONTRIBUTING[obj_type]:
        if name not in properties:
            continue
        value = properties[name]
        if name == "hashes":
            chosen = next((k for k in _HASH_PREFERENCE if k in value), None)
            if chosen is None:
                chosen = sorted(value)[0]
            value = {chosen: value[chosen]}
        contributing[name] = value
    if not contributing:
        raise BadValue(f"{obj_type} has none of its id-contributing properties")
    return f"{obj_type}--{uuid5(SCO_NAMESPACE, canonical_json(contributing))}"


def sco(obj_type: str, **properties: Any) -> dict[str, Any]:
    """A cyber observable with its deterministic id."""
    if len(properties) == 1 and "value" in properties:  # addresses, domains, URLs: cached
        ident = _value_id(obj_type, properties["value"])
    else:
        ident = sco_id(obj_type, properties)
    return {"type": obj_type, "spec_version": "2.1", "id": ident, **properties}


@functools.lru_cache(maxsize=65536)
def _value_id(obj_type: str, value: str) -> str:
    return sco_id(obj_type, {"value": value})


@functools.lru_cache(maxsize=4096)
def sdo_id(obj_type: str, *natural_key: str) -> str:
    """A UUIDv5 id in the project namespace over the object's natural key."""
    name = "\x1f".join((obj_type, *natural_key)).encode()
    return f"{obj_type}--{uuid5(PROJECT_NAMESPACE, name)}"


@functools.lru_cache(maxsize=65536)
def ip_address(text: str) -> tuple[str, str]:
    """(STIX type, canonical value) of an IPv4 or IPv6 address: `999.1.1.1` is refused."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise BadValue(f"not an IP address: {text[:80]!r}") from None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return "ipv4-addr", str(mapped)
        return "ipv6-addr", address.compressed
    return "ipv4-addr", str(address)


def domain(text: str) -> str:
    """A domain name in lower case, internationalised labels in IDNA 2008 (punycode) form.

    Mapped with UTS 46 (non-transitional): case folded, full-width forms and ideographic
    full stops made ASCII, `ß` kept (`straße.example` is `xn--strae-oqa.example`, not the
    other domain `strasse.example` that Python's IDNA 2003 codec would make of it). One
    trailing dot (the root) is dropped. ASCII labels are held to letters, digits and inner
    hyphens only, not to IDNA's rule against `--` at the third position: hostnames such as
    `r3---sn-x.example` exist."""
    name = text.strip()
    if name.isascii() and "xn--" not in name.lower():  # the usual case: nothing to map
        return _checked(name.lower().removesuffix("."), text)
    return _international(name, text)


@functools.lru_cache(maxsize=4096)
def _international(name: str, text: str) -> str:
    try:
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
        labels = [label if label.isascii() and not label.startswith("xn--") else
                  idna.encode(label, uts46=True).decode("ascii")
                  for label in mapped.removesuffix(".").split(".")]
    except (idna.IDNAError, UnicodeError):
        raise BadValue(f"not a valid domain name: {text[:80]!r}") from None
    return _checked(".".join(labels), text)


def _checked(ascii_name: str, text: str) -> str:
    if not ascii_name:
        raise BadValue("empty domain name")
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in ascii_name.split(".")):
        raise BadValue(f"not a valid domain name: {text[:80]!r}")
    return ascii_name


def url(text: str) -> str:
    """A URL with its scheme and host normalised (lower case, IDNA, bracketed IPv6)."""
    value = text.strip()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise BadValue(f"not a valid URL: {text[:80]!r}") from None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        raise BadValue(f"not an absolute URL with a host: {text[:80]!r}")
    host = parts.hostname
    try:
        kind, address = ip_address(host)
        host = f"[{address}]" if kind == "ipv6-addr" else address
    except BadValue:
        host = domain(host)
    default_port = {"http": 80, "https": 443, "ftp": 21}.get(scheme)
    netloc = host if port is None or port == default_port else f"{host}:{port}"
    if parts.username or parts.password:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    return urlunsplit((scheme, netloc, _escape(parts.path) or "/", _escape(parts.query),
                       _escape(parts.fragment)))


# RFC 3986 characters allowed in a path, query or fragment, and '%' of existing escapes.
_URI_SAFE = "/?:@!$&'()*+,;=-._~%"


def _escape(part: str) -> str:
    """Percent-encode what a URI may not hold (spaces, backslashes, non-ASCII letters)."""
    return quote(part, safe=_URI_SAFE)


def hash_value(algorithm: str, text: str) -> str:
    """A hex digest in lower case, checked for its algorithm's length."""
    value = text.strip().lower()
    expected = _HASH_LENGTHS.get(algorithm)
    if not _HEX.match(value) or (expected is not None and len(value) != expected):
        raise BadValue(f"not a {algorithm} digest: {text[:80]!r}")
    return value


def port(text: str) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        raise BadValue(f"not a port number: {text[:80]!r}") from None
    if not 0 <= number <= 65535:
        raise BadValue(f"port out of range: {number}")
    return number


_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f",
                 "%Y-%m-%dT%H:%M:%S.%f")


_USUAL_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?")


@functools.lru_cache(maxsize=8192)
def timestamp(text: str) -> str:
    """A source time (UTC; `2024-01-31 12:00:00`, ISO 8601 with Z or +00:00) as a STIX
    timestamp precise to the millisecond (what `created` and `modified` require).

    Cached, with a fast path for the usual form: every row of a report carries one."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1]
    elif value.endswith("+00:00") or value.endswith("+0000"):
        value = value.rsplit("+", 1)[0]
    usual = _USUAL_TIME.fullmatch(value)
    if usual is not None:
        year, month, day, hour, minute, second, fraction = usual.groups()
        try:
            datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
        except ValueError:
            raise BadValue(f"not a UTC date and time: {text[:80]!r}") from None
        return f"{year}-{month}-{day}T{hour}:{minute}:{second}.{(fraction or '') + '000':.3}Z"
    for form in _TIME_FORMATS:
        try:
            moment = datetime.strptime(value, form).replace(tzinfo=UTC)
        except ValueError:
            continue
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    raise BadValue(f"not a UTC date and time: {text[:80]!r}")


def later_by_millisecond(stix_timestamp: str) -> str:
    """A millisecond STIX timestamp one millisecond later."""
    moment = datetime.strptime(stix_timestamp, "%Y-%m-%dT%H:%M:%S.%fZ") + timedelta(milliseconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@functools.lru_cache(maxsize=8192)
def observable_timestamp(stix_timestamp: str) -> str:
    """A millisecond STIX timestamp written as stix2 writes it (no trailing zeros in the
    fraction), for observable properties: the deterministic id of an observable holding it
    is then the one stix2 computes for the same facts."""
    head, _, fraction = stix_timestamp[:-1].partition(".")
    fraction = fraction.rstrip("0")
    return head + (f".{fraction}" if fraction else "") + "Z"


# -- helpers the formats share (appended: the functions above are tuned for speed) -----------

# Hash names as the feeds spell them (MISP attribute types, ThreatFox and MalwareBazaar
# columns without `_hash`, analysts' type columns) -> STIX hash algorithm names.
HASH_NAMES = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512"}

_PLAIN_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_ASN = re.compile(r"[0-9]{1,10}")
_CONFIDENCE = re.compile(r"[0-9]{1,3}")
# RFC 5322 atext and dots, or RFC 6531 non-ASCII characters, in a local part.
_EMAIL_LOCAL = re.compile(r"[a-z0-9.!#$%&'*+/=?^_`{|}~\u00a0-\U0010ffff-]{1,64}")
_EXTRA_KEY = re.compile(r"[^a-z0-9_]+")
_EPOCH_LIMIT = 253402300800  # 10000-01-01T00:00:00Z in Unix seconds


def email(text: str) -> str:
    """An email address in lower case (one address, one object), its domain in IDNA form."""
    local, at, host = text.strip().lower().rpartition("@")
    if not at or not _EMAIL_LOCAL.fullmatch(local) or not local.isprintable():
        raise BadValue(f"not an email address: {text[:80]!r}")
    return f"{local}@{domain(host)}"


def asn(text: str) -> int:
    """An autonomous system number, written with or without `AS` (`AS64496`, `64496`)."""
    digits = text.strip().upper().removeprefix("AS")
    if not _ASN.fullmatch(digits) or not 0 < int(digits) < 2**32:
        raise BadValue(f"not an AS number: {digits[:80]!r}")
    return int(digits)


def confidence(text: str) -> int:
    """A STIX confidence, 0 to 100, from a source's whole number."""
    value = text.strip()
    if not _CONFIDENCE.fullmatch(value) or int(value) > 100:
        raise BadValue(f"not a confidence from 0 to 100: {text[:80]!r}")
    return int(value)


def extra_key(name: str, fallback: str = "field", limit: int = 250) -> str:
    """A source field name as a key of an `x_<source>_extra` dictionary: STIX dictionary keys
    are ASCII letters, digits and underscores (lower case here), at most 250 characters."""
    return _EXTRA_KEY.sub("_", name.lower()).strip("_")[:limit] or fallback


def epoch_timestamp(value: str | int | float) -> str:
    """Unix seconds (a string or a number, a fraction allowed) as a STIX timestamp."""
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        seconds = Decimal(value.strip() if isinstance(value, str) else value)
        if not abs(seconds) < _EPOCH_LIMIT:  # also NaN; no huge integer is ever built
            raise ValueError(value)
        moment = datetime.fromtimestamp(int(seconds), UTC) + \
            timedelta(microseconds=int(seconds % 1 * 10**6))
    except (ArithmeticError, ValueError, OverflowError, OSError):
        raise BadValue(f"not a Unix time: {str(value)[:80]!r}") from None
    return _moment(moment)


def loose_timestamp(text: str, *, iso8601: bool = False) -> str:
    """A source time as a STIX timestamp, accepting beyond `timestamp` what feeds send: a plain
    date `YYYY-MM-DD` (midnight UTC) and a trailing `UTC`. With `iso8601`, also any ISO 8601
    form Python reads (compact, week dates, no seconds), an offset converted to UTC and no
    offset meaning UTC; without it a time with another offset is refused, not guessed."""
    value = text.strip()
    if value.endswith("UTC"):
        value = value[:-3].rstrip()
    if _PLAIN_DATE.fullmatch(value):
        value += " 00:00:00"
    try:
        return timestamp(value)
    except BadValue:
        if not iso8601:
            raise BadValue(f"not a UTC date and time: {text[:80]!r}") from None
    try:
        moment = datetime.fromisoformat(value)
        return _moment(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    except (ValueError, OverflowError):
        raise BadValue(f"not a UTC date and time: {text[:80]!r}") from None


def _moment(moment: datetime) -> str:
    """An aware datetime as a STIX timestamp, through `timestamp` so a moment it would not
    accept (a year before 1000) is refused as it would be."""
    return timestamp(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f"))
