"""The value helpers the formats share (`values.py`, after the id and address functions):
email addresses, AS numbers, confidences, extra-dictionary keys, hash names and the times
feeds send beyond `timestamp` (Unix seconds, plain dates, ` UTC`, ISO 8601 offsets)."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from exchange.normalize import values as v
from tests.fixtures import misp as gen
from tests.normalizing import run

# -- email addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    pytest.param("Bad.Actor@Phish.Example", "bad.actor@phish.example", id="lower case"),
    pytest.param(" lure@bad.example ", "lure@bad.example", id="spaces around"),
    pytest.param("x+tag@bücher.example", "x+tag@xn--bcher-kva.example", id="idna domain"),
    pytest.param("josé@bad.example", "josé@bad.example", id="non-ascii local part"),
    pytest.param("o'brien.{x}@bad.example", "o'brien.{x}@bad.example", id="rfc 5322 atext"),
])
def test_email_addresses_are_normalised(text: str, expected: str):
    assert v.email(text) == expected


@pytest.mark.parametrize("text", [
    pytest.param("no-at.example", id="no @"),
    pytest.param("@bad.example", id="no local part"),
    pytest.param("a@b@bad.example", id="two @"),
    pytest.param("a b@bad.example", id="space in local part"),
    pytest.param("<a@bad.example", id="angle bracket"),
    pytest.param('"a"@bad.example', id="quoted local part"),
    pytest.param("a\x00@bad.example", id="NUL"),
    pytest.param("a" * 65 + "@bad.example", id="local part over 64"),
    pytest.param("a@bad_label!.example", id="bad domain"),
])
def test_bad_email_addresses_are_refused(text: str):
    with pytest.raises(v.BadValue, match="not (an email address|a valid domain name)"):
        v.email(text)


# -- AS numbers and confidences -----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    pytest.param("AS64496", 64496, id="AS prefix"),
    pytest.param("as64496", 64496, id="lower-case prefix"),
    pytest.param(" 64496 ", 64496, id="bare number"),
    pytest.param("4294967295", 2**32 - 1, id="largest"),
])
def test_as_numbers(text: str, expected: int):
    assert v.asn(text) == expected


@pytest.mark.parametrize("text, reason", [
    pytest.param("ASX", "not an AS number: 'X'", id="letters"),
    pytest.param("0", "not an AS number: '0'", id="zero"),
    pytest.param("4294967296", "not an AS number: '4294967296'", id="over 32 bits"),
    pytest.param("AS 64496", "not an AS number: ' 64496'", id="space after AS"),
    pytest.param("AS²", "not an AS number: '²'", id="a digit int() does not read"),
    pytest.param("", "not an AS number: ''", id="empty"),
])
def test_bad_as_numbers_are_refused(text: str, reason: str):
    with pytest.raises(v.BadValue) as caught:
        v.asn(text)
    assert str(caught.value) == reason


@pytest.mark.parametrize("text, expected", [("0", 0), ("75", 75), (" 100 ", 100), ("007", 7)])
def test_confidences(text: str, expected: int):
    assert v.confidence(text) == expected


@pytest.mark.parametrize("text", ["101", "-5", "8.5", "high", "", "²", "1000"])
def test_bad_confidences_are_refused(text: str):
    with pytest.raises(v.BadValue, match="not a confidence from 0 to 100"):
        v.confidence(text)


# -- extra-dictionary keys and hash names -------------------------------------------------------

@pytest.mark.parametrize("name, fallback, limit, expected", [
    pytest.param("as_number", "field", 250, "as_number", id="kept"),
    pytest.param("Threat Type (desc)", "field", 250, "threat_type_desc",
                 id="lower case, underscores"),
    pytest.param("--", "field", 250, "field", id="nothing left: the fallback"),
    pytest.param("--", "column", 250, "column", id="another fallback"),
    pytest.param("x" * 300, "field", 250, "x" * 250, id="STIX key limit"),
    pytest.param("x" * 300, "field", 240, "x" * 240, id="room for a suffix"),
])
def test_extra_keys_are_stix_dictionary_keys(name: str, fallback: str, limit: int,
                                              expected: str):
    assert v.extra_key(name, fallback, limit) == expected
    if (fallback, limit) == ("field", 250):
        assert v.extra_key(name) == expected  # the defaults


def test_hash_names_are_the_algorithms_hash_value_checks():
    assert v.HASH_NAMES == {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256",
                            "sha512": "SHA-512"}
    for length, algorithm in zip((32, 40, 64, 128), v.HASH_NAMES.values(), strict=True):
        assert v.hash_value(algorithm, "A" * length) == "a" * length
        with pytest.raises(v.BadValue):
            v.hash_value(algorithm, "a" * (length - 1))


# -- times --------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    pytest.param("1793772000", "2026-11-04T06:00:00.000Z", id="string"),
    pytest.param(1793772000, "2026-11-04T06:00:00.000Z", id="integer"),
    pytest.param("1793772000.5", "2026-11-04T06:00:00.500Z", id="fraction"),
    pytest.param(1793772000.25, "2026-11-04T06:00:00.250Z", id="float"),
    pytest.param("1793772000.1239", "2026-11-04T06:00:00.123Z", id="to the millisecond"),
    pytest.param("0", "1970-01-01T00:00:00.000Z", id="the epoch"),
])
def test_unix_seconds(value: str | int | float, expected: str):
    assert v.epoch_timestamp(value) == expected


@pytest.mark.parametrize("value", [
    pytest.param("999999999999", id="after year 9999"),
    pytest.param("1e999999999", id="huge exponent"),
    pytest.param("NaN", id="not a number"),
    pytest.param("Infinity", id="infinity"),
    pytest.param("yesterday", id="words"),
    pytest.param(True, id="a boolean"),
])
def test_bad_unix_seconds_are_refused(value: str | int | float):
    with pytest.raises(v.BadValue, match="not a Unix time"):
        v.epoch_timestamp(value)


@pytest.mark.parametrize("text, expected", [
    pytest.param("2026-11-20 10:00:00", "2026-11-20T10:00:00.000Z", id="as timestamp"),
    pytest.param("2026-11-20T10:00:00.123456Z", "2026-11-20T10:00:00.123Z", id="Z, fraction"),
    pytest.param("2026-11-20 10:00:00 UTC", "2026-11-20T10:00:00.000Z", id="trailing UTC"),
    pytest.param(" 2026-11-21 ", "2026-11-21T00:00:00.000Z", id="plain date: midnight"),
    pytest.param("2026-11-21 UTC", "2026-11-21T00:00:00.000Z", id="plain date and UTC"),
    pytest.param("2026-11-20T10:00:00+00:00", "2026-11-20T10:00:00.000Z", id="+00:00"),
])
def test_loose_times_in_utc(text: str, expected: str):
    assert v.loose_timestamp(text) == expected
    assert v.loose_timestamp(text, iso8601=True) == expected


@pytest.mark.parametrize("text, expected", [
    pytest.param("2026-11-20T10:00:00+02:00", "2026-11-20T08:00:00.000Z", id="east of UTC"),
    pytest.param("2026-11-20T23:30:00-05:00", "2026-11-21T04:30:00.000Z", id="west, next day"),
    pytest.param("2026-11-18T09:30:00.123456+01:00", "2026-11-18T08:30:00.123Z",
                 id="offset and fraction"),
    pytest.param("20261120T100000Z", "2026-11-20T10:00:00.000Z", id="compact"),
    pytest.param("2026-11-20T10:00", "2026-11-20T10:00:00.000Z", id="no seconds"),
    pytest.param("2026-11-20T10:00:00.1234567Z", "2026-11-20T10:00:00.123Z",
                 id="beyond microseconds"),
])
def test_other_iso_8601_forms_only_when_asked(text: str, expected: str):
    assert v.loose_timestamp(text, iso8601=True) == expected
    with pytest.raises(v.BadValue, match="not a UTC date and time"):
        v.loose_timestamp(text)


@pytest.mark.parametrize("text", [
    pytest.param("2026-11-31", id="no such day"),
    pytest.param("2026-13-45 99:00:00", id="no such month or hour"),
    pytest.param("20 Nov 2026", id="words"),
    pytest.param("UTC", id="only UTC"),
    pytest.param("", id="empty"),
    pytest.param("0001-01-01T00:30:00+01:00", id="before year 1 in UTC"),
])
def test_bad_loose_times_are_refused(text: str):
    for iso8601 in (False, True):
        with pytest.raises(v.BadValue) as caught:
            v.loose_timestamp(text, iso8601=iso8601)
        assert str(caught.value) == f"not a UTC date and time: {text!r}"


# -- domain names: IDNA 2008 with UTS 46 mapping -------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    pytest.param("straße.example", "xn--strae-oqa.example",
                 id="sharp s kept (IDNA 2003 would make strasse.example)"),
    pytest.param("Straße.Example", "xn--strae-oqa.example", id="mixed case"),
    pytest.param("faß.example", "xn--fa-hia.example", id="sharp s at the end"),
    pytest.param("bücher.example", "xn--bcher-kva.example", id="umlaut"),
    pytest.param("BÜCHER.EXAMPLE", "xn--bcher-kva.example", id="upper-case umlaut"),
    pytest.param("XN--BCHER-KVA.Example", "xn--bcher-kva.example", id="upper-case A-label"),
    pytest.param("ＢＡＤ．ｅｘａｍｐｌｅ", "bad.example", id="full-width letters and dot"),
    pytest.param("bücher。example", "xn--bcher-kva.example", id="ideographic full stop"),
    pytest.param("WWW.Bad.Example.", "www.bad.example", id="trailing dot (the root)"),
    pytest.param("bücher.example.", "xn--bcher-kva.example", id="trailing dot, unicode"),
    pytest.param(" c2.bad.example ", "c2.bad.example", id="spaces around"),
    pytest.param("r3---sn-x.bad.example", "r3---sn-x.bad.example",
                 id="ascii label with -- at position 3"),
    pytest.param("ΣΑΣ.example", "xn--mxa9ab.example", id="greek capitals folded"),
])
def test_domain_names_follow_idna_2008(text: str, expected: str):
    assert v.domain(text) == expected


@pytest.mark.parametrize("text", [
    pytest.param("xn--zz.example", id="invalid A-label"),
    pytest.param("😀.example", id="emoji (IDNA 2003 allowed them)"),
    pytest.param("\ud800.example", id="lone surrogate"),
    pytest.param("a" * 64 + ".example", id="label over 63"),
    pytest.param("bad_label.example", id="underscore"),
    pytest.param("-lead.example", id="leading hyphen"),
    pytest.param("bücher..example", id="empty label"),
    pytest.param("bad.example..", id="two trailing dots"),
    pytest.param(".".join(["a" * 60] * 5), id="over 253 characters"),
    pytest.param("a b.example", id="space inside"),
])
def test_invalid_domain_names_are_refused(text: str):
    with pytest.raises(v.BadValue, match="not a valid domain name"):
        v.domain(text)


@pytest.mark.parametrize("text, expected", [
    pytest.param("http://Straße.Example/Pfad", "http://xn--strae-oqa.example/Pfad",
                 id="url host"),
    pytest.param("https://ＢＡＤ．ｅｘａｍｐｌｅ/", "https://bad.example/",
                 id="full-width url host"),
])
def test_url_hosts_follow_idna_2008(text: str, expected: str):
    assert v.url(text) == expected


def test_email_domains_follow_idna_2008():
    assert v.email("x@Straße.example") == "x@xn--strae-oqa.example"


@pytest.mark.parametrize("value", [
    pytest.param("xn--zz.example", id="invalid A-label"),
    pytest.param("😀.example", id="emoji"),
])
def test_an_invalid_domain_in_a_feed_is_a_reject_not_a_crash(tmp_path: Path, value: str):
    """A MISP domain attribute with a name IDNA 2008 refuses is one reject; the rest stays."""
    rng = random.Random(3)
    document = gen.event(rng, "Domains", [gen.attribute(rng, "domain", value),
                                          gen.attribute(rng, "domain", "straße.example")])
    path = tmp_path / "event.json"
    path.write_bytes(orjson.dumps(document))
    produced, rejects, _ = run("misp-event", path)
    assert [(r.row, r.reason) for r in rejects] == \
        [(1, f"not a valid domain name: {value!r}")]
    assert {p.obj["value"] for p in produced if p.obj["type"] == "domain-name"} == \
        {"xn--strae-oqa.example"}
