"""Our object check against the reference implementations, over one generated corpus.

Every object of the corpus (valid and invalid variants of the common object types, synthetic
values only) is judged three ways: by `exchange.stix.check_object`, by
`stix2.parse(obj, allow_custom=True)` and by stix2-validator at its default strictness (errors
only). The reference accepts an object when both libraries do. Any disagreement must be listed
in DISAGREEMENTS with its reason; a listed case that agrees again is an error too, so the list
stays true. The fast pattern path is held separately: it never accepts what the grammar refuses.
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import stix2
from stix2patterns.validator import run_validator
from stix2validator import ValidationOptions, validate_instance

from exchange.errors import InvalidObject
from exchange.patterns import _simple
from exchange.stix import check_object

NS = uuid.UUID("5a4c8f0e-6d0b-4a52-9a5e-7f3c1b2d9e10")
T1, T2, T3 = "2026-11-01T00:00:00.000Z", "2026-11-02T00:00:00.000Z", "2026-11-03T00:00:00Z"
AUTHOR = f"identity--{uuid.uuid5(NS, 'author')}"
MD5 = "9e107d9d372bb6826bd81d3542a419d6"
SHA1 = "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"
SHA256 = "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"

# Patterns the grammar accepts (valid) or refuses (invalid), written the way feeds write them
# and the ways they get them wrong; each also becomes an indicator in the corpus.
VALID_PATTERNS = [
    "[ipv4-addr:value = '198.51.100.1']", "[ipv4-addr:value = '203.0.113.0/24']",
    "[ipv6-addr:value = '2001:db8::1']", "[domain-name:value = 'bad.example']",
    "[url:value = 'http://bad.example/a?b=c']", "[email-addr:value = 'x@bad.example']",
    f"[file:hashes.MD5 = '{MD5}']", f"[file:hashes.'SHA-1' = '{SHA1}']",
    f"[file:hashes.'SHA-256' = '{SHA256}']", f"[file:hashes.SHA256 = '{SHA256}']",
    f"[file:hashes.'md5' = '{MD5}']", "[file:name = 'invoice.exe']",
    f"[file:hashes.MD5 = '{MD5}' OR file:hashes.'SHA-256' = '{SHA256}']",
    "[ipv4-addr:value = '198.51.100.1' OR ipv4-addr:value = '198.51.100.2']",
    "[ipv4-addr:value = '198.51.100.1'] OR [domain-name:value = 'bad.example']",
    "[ipv4-addr:value = '198.51.100.1'] AND [ipv4-addr:value = '198.51.100.2']",
    "[url:value = 'http://bad.example/o\\'neil']", "[file:name = 'back\\\\slash']",
    "[network-traffic:dst_ref.value = '198.51.100.1']",
    "[network-traffic:dst_ref.value = '198.51.100.1' AND network-traffic:dst_port = 443]",
    "[ipv4-addr:value = '198.51.100.1'] WITHIN 600 SECONDS",
    "([ipv4-addr:value = '198.51.100.1'] FOLLOWEDBY [domain-name:value = 'bad.example'])",
    "[domain-name:value LIKE '%.bad.example']", "[url:value MATCHES '^http://bad']",
    "[ipv4-addr:value ISSUBSET '198.51.100.0/24']", "[file:size > 1000]",
    "[x-acme-widget:serial = 'A1']", "[ipv4-addr:x_acme_score = 5]",
    "[ipv4-addr:value='198.51.100.1']", "  [ipv4-addr:value = '198.51.100.1']  ",
    "[ipv4-addr:value = '198.51.100.1']AND[ipv4-addr:value = '198.51.100.2']",
    "[file:hashes.SSDEEP = '3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C']",
    "[file:extensions.'windows-pebinary-ext'.sections[*].entropy > 7.0]",
    "[process:command_line = 'cmd.exe /c whoami' AND process:pid = 4]",
    "[email-message:from_ref.value = 'x@bad.example']",
    "[user-account:account_login = 'admin'] REPEATS 5 TIMES",
    "[network-traffic:start = t'2026-11-01T00:00:00Z']",
    "[ipv4-addr:value != '198.51.100.1']", "[software:name = 'app' OR software:version = '1']",
]
INVALID_PATTERNS = [
    "[ipv4-addr:value = '198.51.100.1'", "ipv4-addr:value = '198.51.100.1']",
    "198.51.100.1", "bad.example", "", "[]", "[ipv4-addr:value = 198.51.100.1]",
    "[ip-addr:value = '198.51.100.1']", "[ipv4:value = '198.51.100.1']",
    "[ipv4-addr:address = '198.51.100.1']", "[domain:value = 'bad.example']",
    "[ipv4-addr:value = '198.51.100.1' and ipv4-addr:value = '198.51.100.2']",
    "[ipv4-addr:value = '198.51.100.1'] or [ipv4-addr:value = '198.51.100.2']",
    "[file:hashes.MD5 = 'abc']", f"[file:hashes.'SHA-256' = '{MD5}']",
    f"[file:hashes.SHA-256 = '{SHA256}']", f"[file:hashes.'SHA-1' = '{MD5}']",
    "[ipv4-addr:value = \"198.51.100.1\"]", "[ipv4-addr:value = '198.51.100.1\\x']",
    "[ipv4-addr:value = '198.51.100.1'] WITHIN 600", "[ipv4-addr:value]",
    "[ipv4-addr:value = '198.51.100.1'] AND", "[[ipv4-addr:value = '198.51.100.1']]",
    "[ipv4-addr:value == '198.51.100.1']", "[ipv4-addr:value = 'a' OR]",
    "[network-traffic:dst_ref.AND = 'x']", "[network-traffic:dst_ref.true = 'x']",
    "[ipv4-addr:value = '198.51.100.1'] FOLLOWEDBY", "[file:name = 'a'] WITHIN 5 SECONDS "
    "WITHIN 6 SECONDS", "[Ipv4-Addr:value = '198.51.100.1']",
]

VERSIONED = {"spec_version": "2.1", "created": T1, "modified": T1}


def _sdo(kind: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "id": f"{kind}--{uuid.uuid5(NS, kind + key)}", **VERSIONED, **fields}


def _sco(kind: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1", "id": f"{kind}--{uuid.uuid5(NS, kind + key)}",
            **fields}


def _indicator(key: str, pattern: Any = "[ipv4-addr:value = '198.51.100.1']",
               **fields: Any) -> dict[str, Any]:
    return _sdo("indicator", key, pattern=pattern, pattern_type="stix", valid_from=T1, **fields)


IP4 = _sco("ipv4-addr", "a", value="198.51.100.1")
IP6 = _sco("ipv6-addr", "a", value="2001:db8::1")
BASES: dict[str, dict[str, Any]] = {
    "identity": _sdo("identity", "a", name="Example CERT", identity_class="organization"),
    "indicator": _indicator("base", created_by_ref=AUTHOR, confidence=80, valid_until=T2,
                            indicator_types=["malicious-activity"]),
    "malware": _sdo("malware", "a", name="Example", is_family=True, first_seen=T1,
                    last_seen=T2),
    "infrastructure": _sdo("infrastructure", "a", name="c2", first_seen=T1, last_seen=T2),
    "campaign": _sdo("campaign", "a", name="Op", first_seen=T1, last_seen=T2),
    "threat-actor": _sdo("threat-actor", "a", name="Actor", first_seen=T1, last_seen=T2),
    "intrusion-set": _sdo("intrusion-set", "a", name="Set", first_seen=T1, last_seen=T2),
    "attack-pattern": _sdo("attack-pattern", "a", name="Phishing"),
    "tool": _sdo("tool", "a", name="nmap"),
    "vulnerability": _sdo("vulnerability", "a", name="CVE-2026-0001"),
    "course-of-action": _sdo("course-of-action", "a", name="Block"),
    "location": _sdo("location", "a", country="DE"),
    "report": _sdo("report", "a", name="Weekly", published=T1, object_refs=[IP4["id"]]),
    "note": _sdo("note", "a", content="seen", object_refs=[IP4["id"]]),
    "grouping": _sdo("grouping", "a", context="suspicious-activity", object_refs=[IP4["id"]]),
    "observed-data": _sdo("observed-data", "a", first_observed=T1, last_observed=T2,
                          number_observed=3, object_refs=[IP4["id"]]),
    "sighting": _sdo("sighting", "a", sighting_of_ref=f"indicator--{uuid.uuid5(NS, 'x')}",
                     first_seen=T1, last_seen=T2, count=2),
    "relationship": _sdo("relationship", "a", relationship_type="indicates",
                         source_ref=f"indicator--{uuid.uuid5(NS, 'x')}",
                         target_ref=f"malware--{uuid.uuid5(NS, 'y')}", start_time=T1,
                         stop_time=T2),
    "ipv4-addr": IP4, "ipv6-addr": IP6,
    "domain-name": _sco("domain-name", "a", value="bad.example"),
    "url": _sco("url", "a", value="http://bad.example/path?q=1"),
    "email-addr": _sco("email-addr", "a", value="someone@bad.example"),
    "file": _sco("file", "a", name="a.exe", hashes={"MD5": MD5, "SHA-256": SHA256}),
    "network-traffic": _sco("network-traffic", "a", protocols=["tcp"], start=T1, end=T2,
                            is_active=False, src_ref=IP4["id"], dst_port=443),
    "mac-addr": _sco("mac-addr", "a", value="00:00:5e:00:53:01"),
    "autonomous-system": _sco("autonomous-system", "a", number=64496),
    "software": _sco("software", "a", name="app"),
    "user-account": _sco("user-account", "a", user_id="1001", account_created=T1),
    "x509-certificate": _sco("x509-certificate", "a", serial_number="01",
                             validity_not_before=T1, validity_not_after=T2),
}

# Values by property, valid ones first, for the observables and the shared rules.
VALUES: dict[tuple[str, str], tuple[list[Any], list[Any]]] = {
    ("ipv4-addr", "value"): (
        ["192.0.2.1", "198.51.100.0/24", "203.0.113.255", "0.0.0.0/0", "203.0.113.7/32"],
        ["999.1.1.1", "198.51.100", "198.51.100.1/33", "198.51.100.01", "2001:db8::1",
         " 198.51.100.1", "198.51.100.1\n", "bad.example", 3325256705, ""]),
    ("ipv6-addr", "value"): (
        ["2001:db8::1", "2001:db8::/32", "::", "2001:DB8:0:0:0:0:0:1", "2001:db8::1/128"],
        ["2001:db8::g", "2001:db8:::1", "198.51.100.1", "2001:db8::/129", "fe80::1%eth0",
         "::ffff:192.0.2.1", "", "2001:db8::1/064"]),
    ("domain-name", "value"): (
        ["bad.example", "a-b.bad.example", "xn--bcher-kva.example", "bücher.example",
         "localhost", "bad.example."],
        ["bad..example", "-bad.example", "bad example", "http://bad.example", "BAD.example",
         "bad.example/path", "*.bad.example", "", "a" * 64 + ".example", "_dmarc.example",
         "ab--cd.example"]),
    ("url", "value"): (
        ["http://bad.example/", "https://bad.example:8443/a/b?c=d#e", "ftp://198.51.100.1/x",
         "http://[2001:db8::1]/", "http://bad.example/%20x", "mailto:x@bad.example"],
        ["bad.example/path", "http://bad.example/a b", "http://bad.example/%zz",
         "http://bad.example:port/", "", "//bad.example/x", "http://bücher.example/"]),
    ("email-addr", "value"): (
        ["someone@bad.example", "first.last+tag@bad.example"],
        ["someone", "someone@", "@bad.example", "some one@bad.example", "x@bad..example"]),
    ("mac-addr", "value"): (
        ["00:00:5e:00:53:af"], ["00:00:5E:00:53:AF", "00-00-5e-00-53-af", "00:00:5e:00:53"]),
    ("file", "hashes"): (
        [{"MD5": MD5}, {"SHA-1": SHA1}, {"SHA-256": SHA256.upper()}, {"SHA-512": "a" * 128},
         {"SSDEEP": "3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C"}, {"x_acme": "opaque"}],
        [{"MD5": "abc"}, {"MD5": MD5 + "0"}, {"SHA-256": MD5}, {"SHA-1": "z" * 40},
         {"SHA-512": "a" * 127}, {}, {"MD5": 5}, {"ab": MD5}, {"MD5": ""},
         {"SHA256": MD5}, {"TLSH": "a" * 69}]),
    ("indicator", "confidence"): ([0, 50, 100], [-1, 101, 50.5, "80", True, None]),
    ("indicator", "valid_until"): (["2026-11-01T00:00:00.001Z", T2], [T1, "2026-10-31T00:00:00Z"]),
    ("indicator", "pattern_version"): (["2.1"], ["2.0", "3"]),
    ("sighting", "last_seen"): ([T1, T2], ["2026-10-31T23:59:59.999Z"]),
    ("malware", "last_seen"): ([T1, T3], ["2026-10-01T00:00:00Z"]),
    ("infrastructure", "last_seen"): ([T2], ["2026-10-01T00:00:00Z"]),
    ("campaign", "last_seen"): ([T2], ["2026-10-01T00:00:00Z"]),
    ("threat-actor", "last_seen"): ([T2], ["2026-10-01T00:00:00Z"]),
    ("intrusion-set", "last_seen"): ([T2], ["2026-10-01T00:00:00Z"]),
    ("observed-data", "last_observed"): ([T1], ["2026-10-01T00:00:00Z"]),
    ("relationship", "stop_time"): ([T3], [T1, "2026-10-01T00:00:00Z"]),
    ("network-traffic", "end"): ([T1, T3], ["2026-10-01T00:00:00Z", "not a time"]),
    ("network-traffic", "start"): (["2026-10-01T00:00:00Z"], ["2026-11-31T00:00:00Z"]),
    ("user-account", "account_created"): ([T1], ["yesterday", "2026-02-30T00:00:00Z"]),
    ("x509-certificate", "validity_not_after"): ([T3], ["2026-10-01T00:00:00Z"]),
    ("identity", "confidence"): ([0, 100], [101, -5]),
    ("malware", "confidence"): ([70], [1000]),
    ("relationship", "confidence"): ([10], [200]),
    ("indicator", "created"): (["2026-11-01T00:00:00.000000Z"], ["2026-11-01 00:00:00Z"]),
}

# Disagreements we keep, by case id, with the reason. Stricter on purpose: what no reader can
# use. Looser where the libraries refuse something this check leaves to other parts.
UNDEFINED_TYPE = "stricter: a pattern on an object type STIX 2.1 does not define (not x-)"
UNDEFINED_PROPERTY = "stricter: a pattern on a property its STIX 2.1 type lacks (not x_)"
OTHER_PATTERN_VERSION = "stricter: only STIX 2.1 patterns (the libraries switch grammars)"
TRAILING_NEWLINE = "stricter: a trailing newline the schema's `$` lets through"
ZONE_ID = "stricter: an IPv6 zone id (%eth0) names an interface, not an address"
EMAIL_DOMAIN = "stricter: an email address's domain is checked (the schema wants an '@')"
CERT_VALIDITY = "stricter: a certificate valid until before it is valid from"
DISAGREEMENTS: dict[str, str] = {
    "pattern \"[ip-addr:value = '198.51.100.1']\"": UNDEFINED_TYPE,
    "pattern \"[ipv4:value = '198.51.100.1']\"": UNDEFINED_TYPE,
    "pattern \"[domain:value = 'bad.example']\"": UNDEFINED_TYPE,
    "pattern \"[ipv4-addr:address = '198.51.100.1']\"": UNDEFINED_PROPERTY,
    "indicator pattern_version='2.0'": OTHER_PATTERN_VERSION,
    "indicator pattern_version='3'": OTHER_PATTERN_VERSION,
    "ipv4-addr value='198.51.100.1\\n'": TRAILING_NEWLINE,
    "ipv6-addr value='fe80::1%eth0'": ZONE_ID,
    "email-addr value='x@bad..example'": EMAIL_DOMAIN,
    "x509-certificate validity_not_after='2026-10-01T00:00:00Z'": CERT_VALIDITY,
}


def corpus() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind, base in BASES.items():
        yield f"{kind} as is", base
    for number, pattern in enumerate(VALID_PATTERNS + INVALID_PATTERNS):
        yield f"pattern {pattern!r}", _indicator(f"p{number}", pattern)
    for (kind, name), (good, bad) in VALUES.items():
        for value in good + bad:
            obj = copy.deepcopy(BASES[kind])
            obj[name] = value
            yield f"{kind} {name}={value!r}", obj
    for (kind, name), (good, bad) in VALUES.items():  # the same values inside patterns
        if name == "value":
            for value in good + bad:
                if isinstance(value, str) and "'" not in value and "\\" not in value:
                    pattern = f"[{kind}:value = '{value}']"
                    yield f"pattern {pattern!r} from values", _indicator(pattern, pattern)
        elif name == "hashes":
            for hashes in good + bad:
                for algorithm, digest in hashes.items():
                    pattern = f"[file:hashes.'{algorithm}' = '{digest}']"
                    yield f"pattern {pattern!r} from hashes", _indicator(pattern, pattern)
    traffic = BASES["network-traffic"]
    yield "network-traffic active with end", {**traffic, "is_active": True}
    yield "network-traffic active without end", {
        k: v for k, v in {**traffic, "is_active": True}.items() if k != "end"}
    yield "network-traffic ended, not active", {**traffic, "is_active": False}
    yield "network-traffic without endpoints", {
        k: v for k, v in traffic.items() if k != "src_ref"}
    for name in ("pattern", "valid_from", "name"):
        obj = {k: v for k, v in BASES["indicator" if name != "name" else "tool"].items()
               if k != name}
        yield f"without {name}", obj
    yield "indicator pattern not a string", _indicator("ns", ["[ipv4-addr:value = 'x']"])
    yield "indicator snort pattern", {**_indicator("snort", "alert tcp any any -> any 80"),
                                      "pattern_type": "snort"}


def _ours(obj: dict[str, Any]) -> str | None:
    try:
        check_object(obj)
    except InvalidObject as exc:
        return exc.description
    return None


_OPTIONS = ValidationOptions()


def _reference(obj: dict[str, Any]) -> str | None:
    try:
        stix2.parse(copy.deepcopy(obj), allow_custom=True)
    except Exception as exc:  # the library raises many kinds; any of them is a refusal
        return f"stix2: {exc}"
    result = validate_instance(copy.deepcopy(obj), _OPTIONS)
    if not result.is_valid:
        return f"stix2-validator: {result.errors[0]}"
    return None


def test_the_check_agrees_with_stix2_and_the_validator():
    cases = list(corpus())
    assert len(cases) >= 300 and len({case for case, _ in cases}) == len(cases)
    tally: Counter[str] = Counter()
    unlisted, stale = [], []
    for case, obj in cases:
        ours, theirs = _ours(obj), _reference(obj)
        if (ours is None) == (theirs is None):
            tally["agree, accepted" if ours is None else "agree, refused"] += 1
            if case in DISAGREEMENTS:
                stale.append(case)
        elif case in DISAGREEMENTS:
            tally[DISAGREEMENTS[case]] += 1
        else:
            unlisted.append(f"{case}: ours {ours!r}, reference {theirs!r}")
    print("\n".join(f"{count:5d}  {reason}" for reason, count in tally.most_common()))
    assert not unlisted, "\n".join(unlisted)
    assert not stale, f"listed but agreeing now: {stale}"


@pytest.mark.parametrize("pattern", VALID_PATTERNS + INVALID_PATTERNS + [
    p.replace(" = ", "=") for p in VALID_PATTERNS] + [p + " " for p in INVALID_PATTERNS])
def test_the_fast_path_never_accepts_what_the_grammar_refuses(pattern: str):
    if _simple(pattern):
        assert run_validator(pattern, "2.1") == []
