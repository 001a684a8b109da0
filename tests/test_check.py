"""The write path's STIX check: what it refuses, why, and that what it lets in every reader can
parse (tests/test_check_differential.py compares it with stix2 and stix2-validator at large)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import stix2
import yaml
from taxii2client.v21 import Collection

from exchange.errors import InvalidObject
from exchange.stix import check_object
from tests.conftest import ALICE, Env, LiveServer, start_server

TAXII = "application/taxii+json;version=2.1"
NS = uuid.UUID("0c5b2a52-2f7e-4c59-8d58-3c6b0f0f6a11")
T1, T2 = "2026-11-01T00:00:00.000Z", "2026-11-02T00:00:00.000Z"
GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"


def sdo(kind: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1", "id": f"{kind}--{uuid.uuid5(NS, key)}",
            "created": T1, "modified": T1, "created_by_ref": ALICE,
            "object_marking_refs": [GREEN], **fields}


def indicator(key: str, pattern: str = "[ipv4-addr:value = '198.51.100.1']",
              **fields: Any) -> dict[str, Any]:
    return sdo("indicator", key, **{"pattern": pattern, "pattern_type": "stix", "valid_from": T1,
                                    **fields})


def sco(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1",
            "id": f"{kind}--{uuid.uuid5(NS, json.dumps(fields, sort_keys=True))}", **fields}


REFUSED = [
    pytest.param(indicator("a", "[ipv4-addr:value = '198.51.100.1'"), "missing ']'",
                 id="pattern without its ]"),
    pytest.param(indicator("b", "[ip-addr:value = '198.51.100.1']"),
                 "object type 'ip-addr', which STIX 2.1 does not define",
                 id="pattern on an undefined object type"),
    pytest.param(indicator("c", "198.51.100.1"), "missing square brackets",
                 id="bare address as pattern"),
    pytest.param(indicator("d", "[file:hashes.MD5 = 'abc']"), "not a valid MD5 hash",
                 id="pattern with a short MD5"),
    pytest.param(indicator("e", "[ipv4-addr:address = '198.51.100.1']"),
                 "property 'address'", id="pattern on an undefined property"),
    pytest.param(indicator("f", "   "), "pattern is empty", id="blank pattern"),
    pytest.param(indicator("g", confidence=101), "confidence must be an integer from 0 to 100",
                 id="confidence over 100"),
    pytest.param(indicator("h", confidence="80"), "confidence must be an integer",
                 id="confidence as text"),
    pytest.param(indicator("i", valid_until=T1), "'valid_until' .* must be after 'valid_from'",
                 id="valid_until equal to valid_from"),
    pytest.param(sdo("sighting", "j", sighting_of_ref=indicator("x")["id"], first_seen=T2,
                     last_seen=T1), "'last_seen' .* must be at or after 'first_seen'",
                 id="sighting last_seen before first_seen"),
    pytest.param(sdo("malware", "k", name="m", is_family=True, first_seen=T2, last_seen=T1),
                 "'last_seen'", id="malware last_seen before first_seen"),
    pytest.param(sco("network-traffic", protocols=["tcp"], start=T2, end=T1), "'end'",
                 id="traffic ending before it starts"),
    pytest.param(sco("network-traffic", protocols=["tcp"], start=T1, end=T2, is_active=True),
                 "cannot be 'is_active': true", id="traffic active with an end"),
    pytest.param(sco("network-traffic", protocols=["tcp"], start="2026-02-30T00:00:00Z"),
                 "not a real date", id="traffic start on 30 February"),
    pytest.param(sco("network-traffic", protocols=["tcp"]), "needs 'src_ref' or 'dst_ref'",
                 id="traffic between no endpoints"),
    pytest.param(sco("ipv4-addr", value="999.1.1.1"), "not an IPv4 address",
                 id="IPv4 octet over 255"),
    pytest.param(sco("ipv4-addr", value="198.51.100.0/33"), "not an IPv4 address",
                 id="IPv4 prefix over 32"),
    pytest.param(sco("ipv6-addr", value="2001:db8:::1"), "not an IPv6 address",
                 id="IPv6 with three colons"),
    pytest.param(sco("file", hashes={"SHA-256": "ab" * 16}), "SHA-256 must be 64 hexadecimal",
                 id="SHA-256 of MD5's length"),
    pytest.param(sco("file", hashes={"MD5": "z" * 32}), "MD5 must be 32 hexadecimal",
                 id="MD5 not hexadecimal"),
    pytest.param(sco("url", value="http://bad.example/a b"), "not a URL", id="URL with a space"),
    pytest.param(sco("url", value="bad.example/path"), "not a URL", id="URL without a scheme"),
    pytest.param(sco("domain-name", value="bad..example"), "not a domain name",
                 id="domain with an empty label"),
    pytest.param(sco("email-addr", value="someone"), "not an email address",
                 id="email address without @"),
]


@pytest.mark.parametrize(("obj", "message"), REFUSED)
def test_the_check_refuses_what_readers_cannot_parse(obj: dict[str, Any], message: str):
    with pytest.raises(InvalidObject, match=message) as refused:
        check_object(obj)
    assert refused.value.description.startswith(obj["id"] + ": ")


ACCEPTED = [
    pytest.param(indicator("p1"), id="simple pattern"),
    pytest.param(indicator("p2", "[ipv4-addr:value = '198.51.100.1'] AND "
                                 "[domain-name:value = 'bad.example']"), id="two observations"),
    pytest.param(indicator("p3", "[network-traffic:dst_port = 443] WITHIN 60 SECONDS"),
                 id="pattern only the grammar decides"),
    pytest.param(indicator("p4", "[x-acme-widget:serial = 'A1']"), id="custom object type"),
    pytest.param(indicator("p5", "alert tcp any any -> any 80", pattern_type="snort"),
                 id="a snort rule is not parsed"),
    pytest.param(indicator("p6", confidence=0, valid_until=T2), id="confidence 0, valid_until"),
    pytest.param(sco("ipv6-addr", value="2001:db8::/32"), id="IPv6 CIDR"),
    pytest.param(sco("domain-name", value="bücher.example"), id="internationalised domain"),
    pytest.param(sco("network-traffic", protocols=["tcp"], start=T1, is_active=True,
                     dst_ref=sco("ipv4-addr", value="198.51.100.1")["id"]),
                 id="active traffic without an end"),
]


@pytest.mark.parametrize("obj", ACCEPTED)
def test_the_check_accepts_valid_objects_that_stix2_parses(obj: dict[str, Any]):
    check_object(obj)
    stix2.parse(obj, allow_custom=True)


def test_a_push_stores_the_valid_objects_and_names_each_refused_one(live: LiveServer):
    good = [indicator("good1"), indicator("good2", "[domain-name:value = 'bad.example']")]
    bad = [indicator("bad1", "[ipv4-addr:value = '198.51.100.1'"),
           indicator("bad2", confidence=150), indicator("bad3", valid_until=T1)]
    headers = {"Accept": TAXII, "Content-Type": TAXII}
    answer = httpx.post(live.collection() + "objects/", auth=live.env.basic("alice"),
                        headers=headers, content=json.dumps({"objects": good + bad}))
    assert answer.status_code == 202, answer.text
    status = answer.json()
    assert (status["status"], status["success_count"], status["failure_count"]) == \
        ("complete", 2, 3)
    messages = {f["id"]: f["message"] for f in status["failures"]}
    assert "missing ']'" in messages[bad[0]["id"]]
    assert "confidence" in messages[bad[1]["id"]]
    assert "valid_until" in messages[bad[2]["id"]]
    user, password = live.env.basic("alice")
    with Collection(live.collection(), user=user, password=password) as collection:
        found = stix2.TAXIICollectionSource(collection).query()  # raised before the check
    assert sorted(o.id for o in found) == sorted(o["id"] for o in good)


@pytest.mark.parametrize("custom_properties, stored", [
    pytest.param(True, 3, id="custom content accepted (the default)"),
    pytest.param(False, 1, id="custom content refused where the collection says so"),
])
def test_a_collection_may_refuse_custom_properties(env: Env, custom_properties: bool,
                                                   stored: int):
    collection = env.settings.collections_dir / "open.yaml"
    document = yaml.safe_load(collection.read_text())
    collection.write_text(yaml.safe_dump({**document, "custom_properties": custom_properties}))
    live = start_server(env)
    try:
        extended = indicator("extended")
        with_x = {**indicator("with-x"), "x_acme_score": 7}
        x_type = {"type": "x-acme-note", "spec_version": "2.1",
                  "id": f"x-acme-note--{uuid.uuid4()}", "created": T1, "modified": T1,
                  "created_by_ref": ALICE, "text": "seen at 198.51.100.1"}
        answer = httpx.post(live.collection() + "objects/", auth=live.env.basic("alice"),
                            json={"objects": [extended, with_x, x_type]},
                            headers={"Accept": TAXII, "Content-Type": TAXII})
        status = answer.json()
        assert answer.status_code == 202 and status["success_count"] == stored, status
        if not custom_properties:
            assert {f["id"] for f in status["failures"]} == {with_x["id"], x_type["id"]}
            assert all("property extension" in f["message"] for f in status["failures"])
    finally:
        live.stop()


SUBJECT = "extension-definition--e9e57ccc-8296-4b01-8f70-a8416660c335"
SHADOWSERVER = "extension-definition--3c517148-10d2-4960-962f-72a836f5abc1"


@pytest.mark.parametrize("extensions, says", [
    pytest.param([1], "extensions must be an object of objects", id="not an object"),
    pytest.param({SUBJECT: "victim"}, "extensions must be an object of objects",
                 id="an extension that is not an object"),
    pytest.param({SUBJECT: {"extension_type": "property-extension", "data_subject": "bystander"}},
                 "data_subject must be one of", id="data subject off its list"),
    pytest.param({SUBJECT: {"extension_type": "toplevel-property-extension",
                            "data_subject": "victim"}},
                 "extension_type must be property-extension", id="wrong extension type"),
    pytest.param({SHADOWSERVER: {"extension_type": "property-extension", "fields": {}}},
                 "fields must be a non-empty object", id="no fields"),
    pytest.param({SHADOWSERVER: {"extension_type": "property-extension",
                                 "fields": {"src ip": "x"}}},
                 "fields must be a non-empty object", id="a field name STIX refuses"),
    pytest.param({SHADOWSERVER: {"extension_type": "property-extension",
                                 "fields": {"tag": "x"}, "extra": 1}},
                 "and nothing else", id="a property the extension does not have"),
])
def test_the_projects_extensions_are_held_to_their_schemas(extensions: Any, says: str):
    with pytest.raises(InvalidObject, match=says):
        check_object({**indicator("extended"), "extensions": extensions})


def test_the_projects_extensions_as_produced_pass():
    produced = {SUBJECT: {"extension_type": "property-extension",
                          "data_subject": "suspect-infrastructure"},
                SHADOWSERVER: {"extension_type": "property-extension",
                               "fields": {"tag": "skimmer", "src_port": 443}}}
    check_object({**indicator("extended"), "extensions": produced})
