"""MISP events and feeds: attribute types, suspect or observed, C2 and families from tags,
the event report and its creator, TLP from event tags, rejects, and feed directories."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from exchange import stix_extensions as ext
from exchange.cli import main
from exchange.normalize import Context, Produced, Reject, jsondoc
from exchange.normalize import values as v
from exchange.normalize.base import TLP
from tests.conftest import Env
from tests.fixtures import misp as gen
from tests.fixtures.common import Sample
from tests.normalizing import preamble_only, run

EVENT, FEED = "misp-event", "misp-feed"
SOURCE_ID = Context("MISP").source_id
CERT_ID = Context(gen.ORGC["name"]).source_id


def _write(tmp_path: Path, attributes: list[Any], *, name: str = "event.json",
           labels: tuple[str, ...] = (), **fields: Any) -> Path:
    """An event file; `fields` replace the event's own (None drops one)."""
    document = gen.event(random.Random(1), "Test event", attributes, labels=labels)
    for key, value in fields.items():
        document["Event"][key] = value
        if value is None:
            del document["Event"][key]
    path = tmp_path / name
    path.write_bytes(orjson.dumps(document))
    return path


def _objects(tmp_path: Path, *attributes: dict[str, Any], tlp: str = "amber",
             labels: tuple[str, ...] = (), **fields: Any,
             ) -> tuple[list[dict[str, Any]], list[Reject]]:
    produced, rejects, _ = run(EVENT, _write(tmp_path, list(attributes), labels=labels,
                                             **fields), tlp)
    return [p.obj for p in produced], rejects


def _attr(kind: str, value: str, **more: Any) -> dict[str, Any]:
    return gen.attribute(random.Random(kind + value), kind, value, **more)


def _of(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["type"] == kind]


# -- attribute types ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind, value, expected", [
    pytest.param("ip-dst", "203.0.113.10", [("ipv4-addr", "203.0.113.10")], id="ip-dst"),
    pytest.param("ip-src", "2001:DB8::1", [("ipv6-addr", "2001:db8::1")], id="ip-src ipv6"),
    pytest.param("ip-dst|port", "203.0.113.11|8080", [("ipv4-addr", "203.0.113.11")],
                 id="ip-dst|port"),
    pytest.param("ip-src|port", "2001:db8::5|443", [("ipv6-addr", "2001:db8::5")],
                 id="ip-src|port ipv6"),
    pytest.param("domain", "Bad.Example.", [("domain-name", "bad.example")], id="domain"),
    pytest.param("hostname", "www.bad.example", [("domain-name", "www.bad.example")],
                 id="hostname"),
    pytest.param("domain|ip", "cdn.bad.example|203.0.113.12",
                 [("domain-name", "cdn.bad.example"), ("ipv4-addr", "203.0.113.12")],
                 id="domain|ip: both"),
    pytest.param("url", "HTTP://Dl.Bad.Example:80/x.exe", [("url", "http://dl.bad.example/x.exe")],
                 id="url"),
    pytest.param("uri", "https://dl.bad.example/a?b=c", [("url", "https://dl.bad.example/a?b=c")],
                 id="absolute uri"),
    pytest.param("email-src", "lure@Phish.Example", [("email-addr", "lure@phish.example")],
                 id="email-src"),
    pytest.param("email-dst", "drop@bad.example", [("email-addr", "drop@bad.example")],
                 id="email-dst"),
    pytest.param("email-src", "Billing.Dept@Phish.Example",
                 [("email-addr", "billing.dept@phish.example")], id="email: one case"),
])
def test_network_attributes_become_suspect_infrastructure(tmp_path: Path, kind: str, value: str,
                                                          expected: list[tuple[str, str]]):
    objects, rejects = _objects(tmp_path, _attr(kind, value))
    assert not rejects
    found = [(o["type"], o["value"]) for o in objects if "value" in o]
    assert found == expected
    indicators = _of(objects, "indicator")
    assert len(indicators) == len(expected) == len(_of(objects, "infrastructure"))
    for indicator in indicators:
        assert ext.data_subject(indicator) == "suspect-infrastructure"
        assert ext.fields_of(indicator, "misp")["type"] == kind
    assert _of(objects, "infrastructure")[0]["infrastructure_types"] == ["unknown"]
    if kind.endswith("|port"):
        assert ext.fields_of(indicators[0], "misp")["port"] == int(value.rpartition("|")[2])


@pytest.mark.parametrize("kind, value, hashes, name", [
    pytest.param("md5", "D41D8CD98F00B204E9800998ECF8427E",
                 {"MD5": "d41d8cd98f00b204e9800998ecf8427e"}, None, id="md5"),
    pytest.param("sha1", "a" * 40, {"SHA-1": "a" * 40}, None, id="sha1"),
    pytest.param("sha256", "b" * 64, {"SHA-256": "b" * 64}, None, id="sha256"),
    pytest.param("sha512", "c" * 128, {"SHA-512": "c" * 128}, None, id="sha512"),
    pytest.param("filename|md5", "drop.exe|" + "d" * 32, {"MD5": "d" * 32}, "drop.exe",
                 id="filename|md5"),
    pytest.param("filename|sha1", "a|b.dll|" + "e" * 40, {"SHA-1": "e" * 40}, "a|b.dll",
                 id="filename|sha1, a bar in the name"),
    pytest.param("filename|sha256", "x.js|" + "f" * 64, {"SHA-256": "f" * 64}, "x.js",
                 id="filename|sha256"),
])
def test_hash_attributes_are_malware_files_without_infrastructure(
        tmp_path: Path, kind: str, value: str, hashes: dict[str, str], name: str | None):
    objects, rejects = _objects(tmp_path, _attr(kind, value, category="Payload delivery",
                                                labels=('misp-galaxy:malpedia="QakBot"',)))
    assert not rejects
    (sample,) = _of(objects, "file")
    assert sample["hashes"] == hashes and sample.get("name") == name
    assert not _of(objects, "infrastructure")
    (indicator,) = _of(objects, "indicator")
    (family,) = _of(objects, "malware")
    assert family["name"] == "qakbot"
    assert [(r["source_ref"], r["relationship_type"], r["target_ref"])
            for r in _of(objects, "relationship")] == [(indicator["id"], "indicates",
                                                        family["id"])]


def test_as_numbers_are_context_never_indicators(tmp_path: Path):
    objects, rejects = _objects(tmp_path, _attr("AS", "AS64496"), _attr("AS", "64511"))
    assert not rejects and not _of(objects, "indicator")
    assert [o["number"] for o in _of(objects, "autonomous-system")] == [64496, 64511]
    assert {ext.data_subject(o) for o in _of(objects, "observed-data")} == \
        {"suspect-infrastructure"}


@pytest.mark.parametrize("kind", ["text", "comment", "attachment", "link", "malware-sample",
                                  "regkey", "sha224"])
def test_unsupported_types_are_counted_rejects(tmp_path: Path, kind: str):
    item = _attr(kind, "something")
    _, rejects, tally = run(EVENT, _write(tmp_path, [item, _attr("ip-dst", "203.0.113.1")]))
    assert tally.read == 3  # two attributes and the event
    assert [(r.row, r.reason) for r in rejects] == [(1, f"unsupported MISP attribute type "
                                                        f"{kind}")]
    assert orjson.loads(rejects[0].raw) == item


# -- suspect or observed ------------------------------------------------------------------------

@pytest.mark.parametrize("to_ids, labels, indicated, subject", [
    pytest.param(True, (), True, "suspect-infrastructure", id="to_ids -> indicator"),
    pytest.param(False, (), False, "unknown", id="not to_ids -> observed, subject unknown"),
    pytest.param("1", (), True, "suspect-infrastructure", id="legacy '1' -> indicator"),
    pytest.param("0", (), False, "unknown", id="legacy '0' -> observed"),
    pytest.param(False, (gen.VICTIM_TAG,), False, "victim", id="victim tag -> victim"),
    pytest.param(True, (gen.VICTIM_TAG,), False, "victim",
                 id="to_ids but victim tag -> never an indicator"),
    pytest.param(False, ('x-exchange:data-subject="suspect-infrastructure"',), False,
                 "suspect-infrastructure", id="subject tag without to_ids"),
    pytest.param(False, ('x-exchange:data-subject="nonsense"',), False, "unknown",
                 id="unknown subject value ignored"),
])
def test_to_ids_decides_indicator_or_observed_data(tmp_path: Path, to_ids: Any,
                                                   labels: tuple[str, ...], indicated: bool,
                                                   subject: str):
    item = _attr("ip-src", "198.51.100.7", to_ids=to_ids, labels=labels)
    objects, rejects = _objects(tmp_path, item)
    assert not rejects and not _of(objects, "sighting")  # MISP names no sighting source
    assert bool(_of(objects, "indicator")) is indicated
    holders = _of(objects, "indicator") or _of(objects, "observed-data")
    assert ext.data_subject(holders[0]) == subject
    if not indicated:
        (observed,) = _of(objects, "observed-data")
        assert observed["id"] == v.sdo_id("observed-data", SOURCE_ID, "misp-attribute",
                                          item["uuid"])
        assert observed["object_refs"] == [_of(objects, "ipv4-addr")[0]["id"]]
        assert ext.fields_of(observed, "misp")["uuid"] == item["uuid"]


@pytest.mark.parametrize("category, attribute_tags, event_tags, kind", [
    pytest.param("Network activity", (gen.C2_TAG,), (), "command-and-control",
                 id="network activity + c2 tag"),
    pytest.param("Network activity", (), ("c2",), "command-and-control",
                 id="c2 tag on the event"),
    pytest.param("Network activity", ("botnet_cc",), (), "command-and-control",
                 id="botnet_cc tag"),
    pytest.param("Payload delivery", (gen.C2_TAG,), (), "unknown",
                 id="c2 tag, other category -> unknown"),
    pytest.param("Network activity", ("osint:source-type=\"blog-post\"",), (), "unknown",
                 id="no c2 tag -> unknown"),
    pytest.param("Network activity", ("ec2-instance",), (), "unknown",
                 id="c2 inside a word is no c2 tag"),
])
def test_c2_comes_from_category_and_tags(tmp_path: Path, category: str,
                                         attribute_tags: tuple[str, ...],
                                         event_tags: tuple[str, ...], kind: str):
    item = _attr("domain", "panel.bad.example", category=category, labels=attribute_tags)
    objects, _ = _objects(tmp_path, item, labels=event_tags)
    (infrastructure,) = _of(objects, "infrastructure")
    assert infrastructure["infrastructure_types"] == [kind]


def test_family_from_a_galaxy_tag_attribute_first(tmp_path: Path):
    tagged = _attr("domain", "a.bad.example", labels=('misp-galaxy:malpedia="IcedID"', gen.C2_TAG))
    plain = _attr("domain", "b.bad.example")
    objects, _ = _objects(tmp_path, tagged, plain, labels=('misp-galaxy:botnet="Emotet"',))
    by_id = {o["id"]: o for o in objects}
    families = {by_id[r["source_ref"]]["name"].split(" ")[-1]: by_id[r["target_ref"]]["name"]
                for r in _of(objects, "relationship") if r["relationship_type"] == "controls"}
    assert families == {"a.bad.example": "icedid"}  # only the C2 controls its family
    named = {o["pattern"]: by_id[r["target_ref"]]["name"] for o in _of(objects, "indicator")
             for r in _of(objects, "relationship")
             if r["source_ref"] == o["id"] and r["target_ref"].startswith("malware--")}
    assert named == {"[domain-name:value = 'a.bad.example']": "icedid",
                     "[domain-name:value = 'b.bad.example']": "emotet"}
    objects, _ = _objects(tmp_path, _attr("domain", "c.bad.example"))
    assert not _of(objects, "malware")


# -- times --------------------------------------------------------------------------------------

def test_times_come_from_first_seen_last_seen_and_timestamp(tmp_path: Path):
    seen = _attr("domain", "seen.bad.example", at=500,
                 first_seen="2026-11-18T09:30:00.123456+01:00",
                 last_seen="2026-11-19T12:00:00Z")
    bare = _attr("domain", "bare.bad.example", at=600)
    backwards = _attr("domain", "odd.bad.example", at=700,
                      first_seen="2026-11-19T00:00:00Z", last_seen="2026-11-18T00:00:00Z")
    objects, rejects = _objects(tmp_path, seen, bare, backwards)
    assert not rejects
    indicators = {o["pattern"].split("'")[1]: o for o in _of(objects, "indicator")}
    infrastructure = {o["name"].split(" ")[-1]: o for o in _of(objects, "infrastructure")}
    first = indicators["seen.bad.example"]
    assert first["valid_from"] == first["created"] == "2026-11-18T08:30:00.123Z"
    assert first["modified"] == "2026-11-20T00:08:20.000Z"  # the attribute's last change
    assert infrastructure["seen.bad.example"]["last_seen"] == "2026-11-19T12:00:00.000Z"
    assert infrastructure["seen.bad.example"]["modified"] == first["modified"]
    assert indicators["bare.bad.example"]["valid_from"] == "2026-11-20T00:10:00.000Z"
    assert "last_seen" not in infrastructure["odd.bad.example"]
    assert ext.fields_of(indicators["odd.bad.example"], "misp")["last_seen"] == \
        "2026-11-18T00:00:00Z"


# -- the event report ---------------------------------------------------------------------------

def test_each_event_is_a_report_by_its_creator_over_its_objects(tmp_path: Path):
    path = _write(tmp_path, [_attr("ip-dst", "203.0.113.20"),
                             _attr("url", "http://x.bad.example/", to_ids=False),
                             _attr("text", "words")])
    produced, rejects, tally = run(EVENT, path)
    event = orjson.loads(path.read_bytes())["Event"]
    assert tally.read == 4 and [r.row for r in rejects] == [3]
    reports = [p for p in produced if p.obj["type"] == "report"]
    event_report, file_report = reports[0].obj, reports[1].obj
    assert reports[0].record is not None and reports[0].record.row == 0
    assert event_report["id"] == v.sdo_id("report", SOURCE_ID, "misp-event", event["uuid"])
    assert event_report["name"] == "Test event"
    assert event_report["created"] == "2026-11-20T00:00:00.000Z"  # the event date
    assert event_report["modified"] == "2026-11-20T01:00:00.000Z"  # its timestamp
    assert event_report["published"] == "2026-11-20T01:01:00.000Z"  # its publish_timestamp
    assert event_report["external_references"] == [{"source_name": "misp",
                                                     "external_id": event["uuid"]}]
    assert event_report["created_by_ref"] == CERT_ID
    assert ext.fields_of(event_report, "misp")["orgc_uuid"] == gen.ORGC["uuid"]
    assert ext.fields_of(event_report, "misp")["threat_level_id"] == "2"
    attribute_ids = {p.obj["id"] for p in produced if p.record is not None and p.record.row}
    assert set(event_report["object_refs"]) == attribute_ids
    creator = next(p.obj for p in produced if p.obj["id"] == CERT_ID)
    assert creator == Context(gen.ORGC["name"]).identity()
    assert event_report["id"] in file_report["object_refs"]
    assert CERT_ID in file_report["object_refs"]


def test_unpublished_events_without_creator_are_published_at_their_date(tmp_path: Path):
    objects, _ = _objects(tmp_path, _attr("ip-dst", "203.0.113.21"), publish_timestamp="0",
                          Orgc=None, date="2026-11-01")
    (report, _) = _of(objects, "report")
    assert report["published"] == report["created"] == "2026-11-01T00:00:00.000Z"
    assert report["created_by_ref"] == SOURCE_ID


def test_an_event_with_nothing_convertible_is_rejected_too(tmp_path: Path):
    _, rejects, tally = run(EVENT, _write(tmp_path, [_attr("comment", "hello")]))
    assert tally.read == 2
    assert [(r.row, r.reason) for r in rejects] == [
        (1, "unsupported MISP attribute type comment"),
        (0, "event has no attribute that could be converted: no report")]


# -- TLP ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("tlp, event_tag, attribute_tag, attribute_tlp, report_tlp", [
    pytest.param("amber", "tlp:red", None, "red", "red", id="stricter event tag wins"),
    pytest.param("amber", "tlp:clear", None, "amber", "amber", id="laxer tag never relaxes"),
    pytest.param("amber", "TLP:WHITE", None, "amber", "amber", id="tlp:white is clear"),
    pytest.param("green", "tlp:amber", None, "amber", "amber", id="green run, amber event"),
    pytest.param("amber", None, "tlp:red", "red", "amber",
                 id="attribute tag: that attribute only"),
    pytest.param("amber", "tlp:amber+strict", "tlp:green", "amber+strict", "amber+strict",
                 id="strictest of all three"),
    pytest.param("red", "tlp:green", None, "red", "red", id="red run stays red"),
])
def test_the_strictest_tlp_marks_the_events_objects(tmp_path: Path, tlp: str,
                                                    event_tag: str | None,
                                                    attribute_tag: str | None,
                                                    attribute_tlp: str, report_tlp: str):
    item = _attr("ip-dst", "203.0.113.30", labels=(attribute_tag,) if attribute_tag else ())
    objects, _ = _objects(tmp_path, item, tlp=tlp, labels=(event_tag,) if event_tag else ())
    event_report, file_report = _of(objects, "report")
    for obj in objects:
        if obj["type"] in ("ipv4-addr", "indicator", "infrastructure", "relationship"):
            assert obj["object_marking_refs"] == [TLP[attribute_tlp]], obj["type"]
    assert event_report["object_marking_refs"] == [TLP[report_tlp]]
    assert file_report["object_marking_refs"] == [TLP[tlp]]


# -- rejects ------------------------------------------------------------------------------------

def test_hostile_attributes_are_rejected_on_their_rows(samples: dict[str, list[Sample]]):
    sample = samples[EVENT][1]
    produced, rejects, _ = run(EVENT, sample.path)
    assert len(rejects) == len(gen.HOSTILE_ATTRIBUTES)
    for (fragment, _), reject in zip(gen.HOSTILE_ATTRIBUTES, rejects, strict=True):
        assert fragment in reject.reason
        assert reject.source == str(sample.path) and reject.row > 0 and reject.raw
    rows = [r.row for r in rejects]
    assert rows == sorted(rows) and len(set(rows)) == len(rows)
    assert any(p.obj["type"] == "report" and p.record for p in produced)


def test_rows_number_object_attributes_after_the_events_own(
        samples: dict[str, list[Sample]]):
    produced, rejects, _ = run(EVENT, samples[EVENT][0].path)
    assert [(r.row, r.reason) for r in rejects] == [
        (11, "unsupported MISP attribute type text"), (14, "not an IP address: '999.1.1.1'")]
    rows = {p.record.row: p.obj for p in produced if p.record and p.obj["type"] == "indicator"}
    assert ext.fields_of(rows[12], "misp")["object"]["name"] == "domain-ip"
    assert ext.fields_of(rows[12], "misp")["object_relation"] == "domain"


def _event_bytes(**changes: Any) -> bytes:
    document = gen.event(random.Random(2), "Event", [_attr("ip-dst", "203.0.113.40")])
    document["Event"].update(changes)
    return orjson.dumps(document)


@pytest.mark.parametrize("body, reason", [
    pytest.param(b"", "not valid JSON", id="empty file"),
    pytest.param(b'{"Event": ', "not valid JSON", id="truncated"),
    pytest.param('{"Event": {}}'.encode("utf-16"), "not valid JSON", id="UTF-16"),
    pytest.param(b"\xff\xfe\x00garbage", "not valid JSON", id="binary"),
    pytest.param(b"[]", "(top level): [] is not of type 'object'", id="a list"),
    pytest.param(b'{"event": {}}', "'Event' is a required property", id="no Event"),
    pytest.param(_event_bytes(uuid="not-a-uuid"), "Event/uuid: 'not-a-uuid' does not match",
                 id="bad uuid"),
    pytest.param(_event_bytes(info="  "), "Event/info", id="blank info"),
    pytest.param(_event_bytes(date="2026-02-30"), "not a UTC date", id="impossible date"),
    pytest.param(_event_bytes(timestamp="-5"), "Event/timestamp", id="negative timestamp"),
    pytest.param(_event_bytes(Attribute={"a": 1}), "Event/Attribute", id="attributes not a list"),
    pytest.param(_event_bytes(Object=["x"]), "Event/Object/0", id="object not an object"),
    pytest.param(_event_bytes(Tag=[{"colour": "#fff"}]), "'name' is a required property",
                 id="tag without name"),
    pytest.param(_event_bytes(Orgc={"uuid": "x"}), "Event/Orgc", id="Orgc without name"),
])
def test_an_unreadable_event_is_one_reject(tmp_path: Path, body: bytes, reason: str):
    path = tmp_path / "bad.json"
    path.write_bytes(body)
    produced, rejects, tally = run(EVENT, path)
    assert tally.read == 1 and preamble_only(produced)
    assert rejects[0].row == 0 and reason in rejects[0].reason, rejects[0].reason


def test_a_file_over_the_size_cap_is_one_reject(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "big.json"
    path.write_bytes(_event_bytes())
    monkeypatch.setattr(jsondoc, "MAX_FILE", 10)
    _, rejects, _ = run(EVENT, path)
    assert [(r.row, r.reason) for r in rejects] == [(0, "file larger than 10 bytes")]


def test_a_bom_and_legacy_number_times_are_read(samples: dict[str, list[Sample]]):
    for sample in samples[EVENT][1:]:
        _, rejects, tally = run(EVENT, sample.path)
        assert tally.read - len(rejects) == sample.good


# -- feeds --------------------------------------------------------------------------------------

def test_a_feed_reads_the_events_its_manifest_lists(samples: dict[str, list[Sample]]):
    sample = samples[FEED][0]
    manifest = orjson.loads((sample.path / "manifest.json").read_bytes())
    produced, rejects, tally = run(FEED, sample.path)
    assert tally.read == sample.good + sample.bad
    listed = {f"{key}.json" for key in manifest}
    sources = {Path(p.record.source).name for p in produced if p.record}
    assert sources < listed  # the stray event file and hashes.csv were not read
    (missing,) = rejects
    assert missing.row == 0 and missing.reason == "file missing"
    assert Path(missing.source).name in listed and Path(missing.source).name not in sources
    reports = [p.obj for p in produced if p.obj["type"] == "report" and p.record]
    assert sorted(r["name"] for r in reports) == ["Feed event 0", "Feed event 1"]
    red = next(r for r in reports if r["name"] == "Feed event 1")
    assert red["object_marking_refs"] == [TLP["red"]]  # that event's tlp:red tag


def test_hostile_feed_entries_are_rejects_with_their_files(samples: dict[str, list[Sample]]):
    sample = samples[FEED][1]
    _, rejects, _ = run(FEED, sample.path)
    whole = [(Path(r.source).name, r.reason) for r in rejects if r.row == 0]
    reasons = [reason for _, reason in whole]
    assert sum("not valid JSON" in r for r in reasons) == 3
    assert any("is not the" in r and "its manifest lists" in r for r in reasons)
    assert any(r.startswith("Event: 'info' is a required property") for r in reasons)
    assert "file missing" in reasons
    assert ("manifest.json", "manifest key is not an event uuid: '../../etc/passwd'") in [
        (Path(r.source).name, r.reason) for r in rejects]
    assert all(Path(r.source).parent == sample.path for r in rejects)


@pytest.mark.parametrize("manifest, reason", [
    pytest.param(None, "file missing", id="no manifest"),
    pytest.param(b"{", "not valid JSON", id="broken manifest"),
    pytest.param(b"[]", "(top level): [] is not of type 'object'", id="manifest not an object"),
    pytest.param(b'{"5f6a7b8c-0000-4000-8000-0000000000c1": 5}', "is not of type 'object'",
                 id="summary not an object"),
])
def test_a_broken_manifest_is_one_reject(tmp_path: Path, manifest: bytes | None, reason: str):
    if manifest is not None:
        (tmp_path / "manifest.json").write_bytes(manifest)
    produced, rejects, _ = run(FEED, tmp_path)
    assert [(Path(r.source).name, r.row) for r in rejects] == [("manifest.json", 0)]
    assert reason in rejects[0].reason
    assert preamble_only(produced)


def test_both_formats_give_the_same_objects_for_the_same_event(tmp_path: Path):
    path = _write(tmp_path, [_attr("ip-dst", "203.0.113.50"), _attr("md5", "a" * 32)])
    key = orjson.loads(path.read_bytes())["Event"]["uuid"]
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / f"{key}.json").write_bytes(path.read_bytes())
    (feed / "manifest.json").write_bytes(orjson.dumps({key: {"info": "Test event"}}))

    def objects(produced: list[Produced]) -> list[dict[str, Any]]:
        return [p.obj for p in produced if p.record is not None]

    assert objects(run(EVENT, path)[0]) == objects(run(FEED, feed)[0])


# -- end to end ---------------------------------------------------------------------------------

def test_a_feed_directory_ingests_once_through_the_command_line(
        env: Env, tmp_path: Path, samples: dict[str, list[Sample]],
        capsys: pytest.CaptureFixture[str]):
    sample = samples[FEED][1]
    rejects = tmp_path / "rejects.jsonl"
    command = ["--config", str(tmp_path / "env" / "config.yaml"), "ingest", "--format", FEED,
               "--collection", "open", "--rejects", str(rejects), str(sample.path)]
    assert main(command) == 1  # the hostile entries were rejected
    first = _summary(capsys.readouterr().out)
    assert first["read"] == sample.good + sample.bad and first["rejected"] == sample.bad
    assert first["stored"] == first["produced"] > sample.good
    lines = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert {Path(line["source"]).parent for line in lines} == {sample.path}
    assert main(command) == 1  # re-ingesting the same feed changes nothing
    second = _summary(capsys.readouterr().out)
    assert second["stored"] == 0 and second["unchanged"] == first["produced"]


def _summary(out: str) -> dict[str, int]:
    line = out.strip().splitlines()[-1]
    return {part.split()[0]: int(part.split()[1]) for part in line.split(", ")}
