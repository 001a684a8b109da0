import pytest

from exchange.errors import Invalid, InvalidObject
from exchange.stix import check_object, format_micros, timestamp_micros, version_key

INDICATOR = {
    "type": "indicator",
    "spec_version": "2.1",
    "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
    "created": "2024-01-01T00:00:00.000Z",
    "modified": "2024-01-02T00:00:00.000Z",
    "pattern": "[ipv4-addr:value = '198.51.100.7']",
    "pattern_type": "stix",
    "valid_from": "2024-01-01T00:00:00Z",
}


def test_valid_indicator_gives_its_facts():
    facts = check_object(INDICATOR)
    assert (facts.id, facts.type, facts.spec_version) == (INDICATOR["id"], "indicator", "2.1")
    assert facts.version == "2024-01-02T00:00:00.000Z"


def test_sco_is_unversioned():
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "value": "192.0.2.1",
           "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd"}
    assert check_object(sco).version is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"id": None}, "'id' is missing", id="missing id"),
        pytest.param({"type": None}, "'type' is missing", id="missing type"),
        pytest.param({"spec_version": None}, "'spec_version' is required", id="no spec_version"),
        pytest.param({"spec_version": "2.0"}, "not supported", id="2.0 spec_version"),
        pytest.param({"id": "indicator--not-a-uuid"}, "RFC 4122", id="malformed id"),
        pytest.param({"id": "malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"}, "does not start",
                     id="id of another type"),
        pytest.param({"modified": "2024-13-02T00:00:00Z"}, "not a real date", id="month 13"),
        pytest.param({"created": "yesterday"}, "RFC 3339", id="free-text timestamp"),
        pytest.param({"modified": "2023-01-01T00:00:00Z"}, "earlier than", id="modified<created"),
        pytest.param({"pattern": None}, "requires 'pattern'", id="indicator without pattern"),
        pytest.param({"created_by_ref": "someone"}, "not a STIX identifier", id="bad ref"),
        pytest.param({"object_marking_refs": []}, "non-empty list", id="empty refs"),
        pytest.param({"Bad-Name": 1}, "property name", id="bad property name"),
    ],
)
def test_invalid_objects_say_what_is_wrong(change, message):
    obj = {k: v for k, v in {**INDICATOR, **change}.items() if v is not None}
    with pytest.raises(InvalidObject, match=message):
        check_object(obj)


def test_version_keys_sort_like_time_and_keep_precision():
    keys = [version_key(t) for t in (
        "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.0000001Z", "2024-01-01T00:00:00.5Z",
        "2024-01-01T00:00:01.000Z")]
    assert keys == sorted(keys) and len(set(keys)) == 4
    assert version_key("2024-01-01T00:00:00.500Z") == version_key("2024-01-01T00:00:00.5Z")


def test_micros_round_trip():
    micros = timestamp_micros("2024-02-29T23:59:59.123456Z")
    assert format_micros(micros) == "2024-02-29T23:59:59.123456Z"
    with pytest.raises(Invalid):
        timestamp_micros("2024-02-30T00:00:00Z")


@pytest.mark.parametrize("ref", [["a", "list"], {"an": "object"}, 7, None])
def test_a_reference_that_is_not_a_string_is_refused_not_a_crash(ref: object):
    obj = {"type": "note", "spec_version": "2.1", "id": "note--" + "1" * 8 + "-1111-4111-8111-"
           + "1" * 12, "created": "2026-11-20T00:00:00.000Z", "modified":
           "2026-11-20T00:00:00.000Z", "content": "x", "object_refs": [ref],
           "created_by_ref": ref}
    with pytest.raises(InvalidObject):
        check_object(obj)
