"""Markings the policy reads: TLP ranks, references, reserved TLP definitions, and the
law-enforcement handling extension (its definition, its schema, its validation)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import stix2
from stix2validator import validate_instance

from exchange.errors import InvalidObject
from exchange.markings import (
    HANDLING_EXTENSION,
    RESERVED,
    TLP,
    TLP1,
    handling,
    handling_extension_definition,
    server_identity,
)
from exchange.model import AMBER, AMBER_STRICT, CLEAR, GREEN, RED
from exchange.schemas import problem
from exchange.stix import check_object, references
from tests.conftest import LiveServer

T0 = "2026-01-01T00:00:00.000Z"
STATEMENT = "marking-definition--" + str(uuid.uuid5(uuid.NAMESPACE_URL, "statement"))


def sid(kind: str) -> str:
    return f"{kind}--{uuid.uuid4()}"


def indicator(**extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": sid("indicator"), "created": T0,
            "modified": T0, "pattern": "[ipv4-addr:value = '192.0.2.1']",
            "pattern_type": "stix", "valid_from": T0, **extra}


@pytest.mark.parametrize(("markings", "expected"), [
    pytest.param({}, None, id="unmarked"),
    pytest.param({"object_marking_refs": [STATEMENT]}, None, id="a statement is not a TLP"),
    pytest.param({"object_marking_refs": [TLP["green"]]}, GREEN, id="TLP 2.0 green"),
    pytest.param({"object_marking_refs": [TLP["amber+strict"]]}, AMBER_STRICT,
                 id="TLP 2.0 amber+strict"),
    pytest.param({"object_marking_refs": [TLP1["white"]]}, CLEAR, id="TLP 1.0 white is clear"),
    pytest.param({"object_marking_refs": [TLP1["amber"]]}, AMBER, id="TLP 1.0 amber"),
    pytest.param({"object_marking_refs": [TLP["clear"], TLP1["red"]]}, RED,
                 id="the highest of several"),
    pytest.param({"object_marking_refs": [TLP["green"]],
                  "granular_markings": [{"marking_ref": TLP["red"], "selectors": ["name"]}],
                  "name": "x"}, RED, id="a granular marking counts"),
    pytest.param({"granular_markings": [{"lang": "en", "selectors": ["name"]}], "name": "x"},
                 None, id="a language marking does not"),
])
def test_the_tlp_rank_of_an_object(markings: dict[str, Any], expected: int | None):
    assert check_object(indicator(**markings)).rank == expected


def test_the_reserved_tlp_definitions_are_public():
    for definition in RESERVED.values():
        assert check_object(definition).rank == CLEAR
        stix2.parse(definition)  # the standard content, as the library knows it
    for name, constant in (("white", stix2.v21.TLP_WHITE), ("red", stix2.v21.TLP_RED)):
        assert RESERVED[TLP1[name]] == json.loads(constant.serialize())


@pytest.mark.parametrize("change", [
    pytest.param({"name": "TLP:CLEAR"}, id="renamed"),
    pytest.param({"extensions": {"extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d": {
        "extension_type": "property-extension", "tlp_2_0": "clear"}}}, id="relabelled"),
    pytest.param({"created": "2024-01-01T00:00:00.000Z"}, id="another date"),
    pytest.param({"description": "harmless?"}, id="an extra property"),
])
def test_a_reserved_tlp_id_with_other_content_is_refused(change: dict[str, Any]):
    tampered = {**RESERVED[TLP["red"]], **change}
    with pytest.raises(InvalidObject, match="reserved TLP:RED marking definition"):
        check_object(tampered)


def test_references_are_everything_but_author_and_markings():
    ident, marking = sid("identity"), TLP["amber"]
    sighting = {"type": "sighting", "spec_version": "2.1", "id": sid("sighting"),
                "created": T0, "modified": T0, "created_by_ref": ident,
                "object_marking_refs": [marking], "sighting_of_ref": sid("malware"),
                "observed_data_refs": [sid("observed-data")],
                "where_sighted_refs": [sid("identity")],
                "granular_markings": [{"marking_ref": TLP["red"], "selectors": ["count"]}],
                "count": 2}
    traffic = {"type": "network-traffic", "spec_version": "2.1", "id": sid("network-traffic"),
               "protocols": ["tcp"], "src_ref": sid("ipv4-addr"),
               "extensions": {"http-request-ext": {"request_method": "get",
                                                   "request_value": "/",
                                                   "message_body_data_ref": sid("artifact")}}}
    for obj in (sighting, traffic):
        found = check_object(obj).refs
        assert ident not in found and marking not in found and TLP["red"] not in found
        assert set(found) == set(references(obj))  # the same, read back from storage
    assert len(check_object(sighting).refs) == 3
    assert check_object(traffic).refs == (traffic["src_ref"], traffic["extensions"][
        "http-request-ext"]["message_body_data_ref"])


# -- the handling extension --------------------------------------------------------------------

@pytest.mark.parametrize(("value", "valid"), [
    pytest.param(handling(("H2",))[HANDLING_EXTENSION], True, id="H2"),
    pytest.param(handling(("H1", "H2"), reliability="B", accuracy="2")[HANDLING_EXTENSION],
                 True, id="H1,H2 with evaluation"),
    pytest.param(handling(("H3",), "only for case 0815")[HANDLING_EXTENSION], True,
                 id="H3 with its conditions"),
    pytest.param(handling(reliability="X")[HANDLING_EXTENSION], True, id="evaluation only"),
    pytest.param({"extension_type": "property-extension", "handling_codes": ["H3"]}, False,
                 id="H3 without conditions"),
    pytest.param({"extension_type": "property-extension", "handling_codes": ["H5"]}, False,
                 id="unknown code"),
    pytest.param({"extension_type": "property-extension", "handling_codes": []}, False,
                 id="no codes"),
    pytest.param({"extension_type": "property-extension", "handling_codes": ["H2", "H2"]},
                 False, id="a code twice"),
    pytest.param({"extension_type": "property-extension", "handling_codes": "H2"}, False,
                 id="a string, not a list"),
    pytest.param({"extension_type": "property-extension", "source_reliability": "E"}, False,
                 id="unknown reliability"),
    pytest.param({"extension_type": "property-extension", "information_accuracy": 1}, False,
                 id="accuracy as a number"),
    pytest.param({"extension_type": "toplevel-property-extension", "handling_codes": ["H0"]},
                 False, id="wrong extension type"),
    pytest.param({"extension_type": "property-extension"}, False, id="nothing said"),
    pytest.param({"extension_type": "property-extension", "handling_codes": ["H0"],
                  "x_note": 1}, False, id="an unknown property"),
])
def test_the_handling_extension_is_checked_on_every_object(value: dict[str, Any], valid: bool):
    obj = indicator(extensions={HANDLING_EXTENSION: value})
    if valid:
        facts = check_object(obj)
        assert facts.h2 == ("H2" in value.get("handling_codes", ()))
        stix2.parse(obj)  # the reference library takes it with its defaults
    else:
        with pytest.raises(InvalidObject, match="handling extension"):
            check_object(obj)


def test_the_extension_definition_is_valid_stix():
    for obj in (handling_extension_definition(), server_identity()):
        check_object(obj)
        stix2.parse(obj)
        assert validate_instance(obj).is_valid
    assert problem("handling-extension", handling(("H0",))[HANDLING_EXTENSION]) is None


def test_the_server_serves_its_extension_definition_without_credentials(live: LiveServer):
    listed = httpx.get(f"{live.url}extensions/")
    assert listed.status_code == 200 and listed.headers["content-type"].startswith(
        "application/stix+json")
    assert handling_extension_definition() in listed.json()["objects"]
    one = httpx.get(f"{live.url}extensions/{HANDLING_EXTENSION}/")
    assert stix2.parse(one.json()).id == HANDLING_EXTENSION
    schema = httpx.get(f"{live.url}extensions/{HANDLING_EXTENSION}/schema")
    assert schema.json()["$id"] == handling_extension_definition()["schema"]
    missing = httpx.get(f"{live.url}extensions/extension-definition--{uuid.uuid4()}/")
    assert missing.status_code == 404 and missing.json()["http_status"] == "404"
