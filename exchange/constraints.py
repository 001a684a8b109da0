"""Rules on the values of STIX 2.1 properties, by object type: what a reader's library
(stix2) or the schema validator (stix2-validator) would refuse in an object we stored.

Each rule takes the object and returns why it is refused, or None. `rules_for(type, names)`
picks the rules an object of that type with those property names needs; the object check
caches that choice per shape, so an object pays only for the rules that apply to it.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any

import idna
from rfc3986_validator import validate_rfc3986

from .patterns import pattern_problem

Rule = Callable[[dict[str, Any]], "str | None"]

# Timestamp properties by type, beyond those every type may carry (stix.TIMESTAMP_PROPERTIES).
TYPED_TIMESTAMPS: dict[str, tuple[str, ...]] = {
    "directory": ("ctime", "mtime", "atime"),
    "file": ("ctime", "mtime", "atime"),
    "email-message": ("date",),
    "network-traffic": ("start", "end"),
    "process": ("created_time",),
    "user-account": ("account_created", "account_expires", "credential_last_changed",
                     "account_first_login", "account_last_login"),
    "windows-registry-key": ("modified_time",),
    "x509-certificate": ("validity_not_before", "validity_not_after"),
    "relationship": ("start_time", "stop_time"),
    "malware-analysis": ("submitted", "analysis_started", "analysis_ended"),
}

# (later, earlier, strictly): `later` must come after `earlier` (or at the same instant).
_ORDERS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "indicator": (("valid_until", "valid_from", True),),
    "relationship": (("stop_time", "start_time", True),),
    "observed-data": (("last_observed", "first_observed", False),),
    "network-traffic": (("end", "start", False),),
    "x509-certificate": (("validity_not_after", "validity_not_before", False),),
    **{kind: (("last_seen", "first_seen", False),) for kind in (
        "sighting", "infrastructure", "malware", "campaign", "threat-actor", "intrusion-set")},
}


def rules_for(obj_type: str, names: tuple[str, ...]) -> tuple[Rule, ...]:
    """The rules an object of this type with these property names must pass."""
    present = frozenset(names)
    rules: list[Rule] = []
    if "confidence" in present:
        rules.append(_confidence)
    for later, earlier, strictly in _ORDERS.get(obj_type, ()):
        if later in present and earlier in present:
            rules.append(_order(later, earlier, strictly))
    if obj_type == "indicator":
        rules.append(_indicator_pattern)
    elif obj_type == "network-traffic":
        if "is_active" in present and "end" in present:
            rules.append(_active_without_end)
        if "src_ref" not in present and "dst_ref" not in present:
            rules.append(_endpoint)
    if "hashes" in present:
        rules.append(_hashes)
    value = _VALUE_RULES.get(obj_type)
    if value is not None and "value" in present:
        rules.append(value)
    return tuple(rules)


def _confidence(obj: dict[str, Any]) -> str | None:
    value = obj["confidence"]
    if type(value) is not int or not 0 <= value <= 100:
        return f"confidence must be an integer from 0 to 100, not {value!r}"
    return None


def _order(later: str, earlier: str, strictly: bool) -> Rule:
    word = "after" if strictly else "at or after"

    def rule(obj: dict[str, Any]) -> str | None:
        first, second = _instant(obj[earlier]), _instant(obj[later])
        if second < first or (strictly and second == first):
            return f"{later!r} ({obj[later]}) must be {word} {earlier!r} ({obj[earlier]})"
        return None
    return rule


def _instant(timestamp: str) -> str:
    """A key that sorts like the (already checked) timestamp's instant, at any precision."""
    return timestamp[:19] + "." + timestamp[20:-1].rstrip("0")


def _indicator_pattern(obj: dict[str, Any]) -> str | None:
    pattern = obj.get("pattern")
    if not isinstance(pattern, str):
        return "'pattern' must be a string"
    if obj.get("pattern_type") != "stix":
        return None  # snort, yara, sigma...: not ours to parse
    version = obj.get("pattern_version", "2.1")
    if version != "2.1":
        return f"pattern_version {version!r} is not supported for a STIX pattern (2.1)"
    return pattern_problem(pattern)


def _active_without_end(obj: dict[str, Any]) -> str | None:
    if obj["is_active"] is True:
        return "a network-traffic with 'end' cannot be 'is_active': true"
    return None


def _endpoint(_obj: dict[str, Any]) -> str | None:
    return "a network-traffic needs 'src_ref' or 'dst_ref'"


# Hex digest lengths by algorithm, keyed as stix2 reads a hash name (no hyphens, upper case).
_HEX_DIGESTS = {
    "MD5": 32, "SHA1": 40, "SHA224": 56, "SHA256": 64, "SHA384": 96, "SHA512": 128,
    "SHA3224": 56, "SHA3256": 64, "SHA3384": 96, "SHA3512": 128, "RIPEMD160": 40,
    "WHIRLPOOL": 128, "TLSH": 70,
}
_HASH_NAME = re.compile(r"[a-zA-Z0-9_-]{3,250}")
_HEX = re.compile(r"[0-9a-fA-F]*")
_SSDEEP = re.compile(r"[a-zA-Z0-9/+:.]{1,128}")


def _hashes(obj: dict[str, Any]) -> str | None:
    hashes = obj["hashes"]
    if not isinstance(hashes, dict) or not hashes:
        return "'hashes' must be a non-empty object of algorithm: digest"
    for name, digest in hashes.items():
        if not _HASH_NAME.fullmatch(name):
            return f"hash algorithm name {name!r} must be 3-250 letters, digits, '-' or '_'"
        if not isinstance(digest, str) or not digest:
            return f"hash {name} must be a non-empty string"
        algorithm = name.replace("-", "").upper()
        length = _HEX_DIGESTS.get(algorithm)
        if length is not None and (len(digest) != length or not _HEX.fullmatch(digest)):
            return f"hash {name} must be {length} hexadecimal digits, not {digest!r}"
        if algorithm == "SSDEEP" and not _SSDEEP.fullmatch(digest):
            return f"hash {name} {digest!r} is not an ssdeep digest"
    return None


_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                   r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:/(?:3[0-2]|[12]?\d))?")


def _ipv4(obj: dict[str, Any]) -> str | None:
    value = obj["value"]
    if not isinstance(value, str) or not _IPV4.fullmatch(value):
        return f"value {value!r} is not an IPv4 address or CIDR block"
    return None


_PREFIX6 = re.compile(r"12[0-8]|1[01]\d|[1-9]?\d")


def _ipv6(obj: dict[str, Any]) -> str | None:
    value = obj["value"]
    if isinstance(value, str):
        address, slash, prefix = value.partition("/")
        # inet_pton is the C parser (a tenth of ipaddress's cost). A dotted IPv4 tail
        # (::ffff:192.0.2.1) is refused: the STIX schema's IPv6 pattern does not take it.
        if "." not in address and (not slash or _PREFIX6.fullmatch(prefix)):
            try:
                socket.inet_pton(socket.AF_INET6, address)
                return None
            except (OSError, ValueError):
                pass
    return f"value {value!r} is not an IPv6 address or CIDR block (hexadecimal groups)"


_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def _mac(obj: dict[str, Any]) -> str | None:
    value = obj["value"]
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        return f"value {value!r} is not a MAC address (six lower-case hex pairs with ':')"
    return None


# Plain lower-case LDH names need no IDNA: each label letters, digits and inner hyphens, not
# `ab--` (reserved for A-labels). Anything else goes to the `idna` package (IDNA 2008), as the
# schema validator's `idn-hostname` does.
_LDH = re.compile(r"(?:(?!..--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
                  r"(?!..--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def domain_problem(value: Any) -> str | None:
    if isinstance(value, str) and value:
        if len(value) <= 253 and _LDH.fullmatch(value):
            return None
        try:
            idna.encode(value)
            return None
        except (idna.IDNAError, UnicodeError, ValueError):
            pass
    return f"{value!r} is not a domain name"


def _domain(obj: dict[str, Any]) -> str | None:
    problem = domain_problem(obj["value"])
    return f"value {problem}" if problem else None


def _email(obj: dict[str, Any]) -> str | None:
    value = obj["value"]
    if isinstance(value, str):
        local, at, domain = value.rpartition("@")
        if at and local and not any(c.isspace() for c in local) and len(local) <= 64 \
                and domain_problem(domain) is None:
            return None
    return f"value {value!r} is not an email address (local-part@domain)"


def _url(obj: dict[str, Any]) -> str | None:
    value = obj["value"]
    if not isinstance(value, str) or not validate_rfc3986(value, rule="URI"):
        return f"value {value!r} is not a URL (RFC 3986: a scheme, no spaces, %-escapes)"
    return None


_VALUE_RULES: dict[str, Rule] = {
    "ipv4-addr": _ipv4, "ipv6-addr": _ipv6, "domain-name": _domain, "email-addr": _email,
    "url": _url, "mac-addr": _mac,
}
