"""abuse.ch feeds: each feed's modelling, the same objects from its CSV and JSON forms, and the
hostile records each form must reject."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from exchange import stix_extensions as ext
from exchange.normalize import (
    PARSERS,
    Context,
    Produced,
    Reject,
    abusech_common,
    jsondoc,
    normalize,
)
from exchange.normalize import values as v
from tests.fixtures import abusech as gen
from tests.normalizing import PREAMBLE_TYPES, preamble_only, run

URLHAUS_CSV, URLHAUS_JSON = "abusech-urlhaus-csv", "abusech-urlhaus-json"
FEODO_CSV, FEODO_JSON = "abusech-feodo-csv", "abusech-feodo-json"
THREATFOX_CSV, THREATFOX_JSON = "abusech-threatfox-csv", "abusech-threatfox-json"
BAZAAR = "abusech-malwarebazaar-csv"
Objects = list[dict[str, Any]]


def _objects(name: str, path: Path, **settings: str) -> Objects:
    """Every object but the file's own report, after checking nothing was rejected."""
    produced, rejects, _ = run(name, path, settings=settings or None)
    assert not rejects, [r.reason for r in rejects]
    return [p.obj for p in produced if p.obj["type"] != "report"]


def _of(objects: Objects, kind: str) -> Objects:
    return [o for o in objects if o["type"] == kind]


def _links(objects: Objects) -> set[tuple[str, str, str]]:
    by_id = {o["id"]: o for o in objects}
    return {(by_id[o["source_ref"]]["type"], o["relationship_type"], by_id[o["target_ref"]]["type"])
            for o in _of(objects, "relationship")}


def _without_extra(objects: Objects, *keys: str) -> Objects:
    out = []
    kept_in = ext.SOURCE_FIELDS["abusech"]
    for obj in objects:
        obj = dict(obj)
        fields = {k: x for k, x in ext.fields_of(obj, "abusech").items() if k not in keys}
        if kept_in in obj.get("extensions", {}):
            obj["extensions"] = {k: x for k, x in obj["extensions"].items() if k != kept_in}
            obj["extensions"].update(ext.source_fields("abusech", fields))  # none when empty
        out.append(obj)
    return out


# -- the same entries from every form of a feed --------------------------------------------------

def test_urlhaus_csv_and_json_export_give_identical_objects(tmp_path: Path):
    entries = gen.urlhaus_entries(random.Random(11), 24)
    csv = gen.write_urlhaus_csv(tmp_path / "urlhaus.csv", entries)
    export = gen.write_urlhaus_json(tmp_path / "urlhaus.json", entries)
    from_csv = _objects(URLHAUS_CSV, csv.path)
    assert len(_of(from_csv, "indicator")) == 24
    assert from_csv == _objects(URLHAUS_JSON, export.path)


def test_urlhaus_api_answer_gives_the_same_indicators_without_last_online(tmp_path: Path):
    entries = gen.urlhaus_entries(random.Random(12), 12)
    for entry in entries:
        entry["last_online"] = ""  # the API does not say
    from_csv = _objects(URLHAUS_CSV, gen.write_urlhaus_csv(tmp_path / "u.csv", entries).path)
    from_api = _objects(URLHAUS_JSON, gen.write_urlhaus_api(tmp_path / "u.json", entries).path)
    # The API adds host, blacklists and larted; everything else is the same.
    assert _without_extra(from_api, "host", "blacklists", "larted") == from_csv
    assert ext.fields_of(_of(from_api, "indicator")[0], "abusech")["larted"] == "true"


def test_feodo_csv_and_json_give_identical_objects_but_the_json_only_fields(tmp_path: Path):
    entries = gen.feodo_entries(random.Random(13), 20)
    from_csv = _objects(FEODO_CSV, gen.write_feodo_csv(tmp_path / "f.csv", entries).path)
    from_json = _objects(FEODO_JSON, gen.write_feodo_json(tmp_path / "f.json", entries).path)
    assert len(_of(from_csv, "indicator")) == 20
    assert _without_extra(from_json, "hostname", "as_number", "as_name", "country") == from_csv
    assert ext.fields_of(_of(from_json, "indicator")[1], "abusech")["hostname"] == \
        "c2-1.bad.example"


def test_threatfox_csv_and_json_export_give_identical_objects(tmp_path: Path):
    entries = gen.threatfox_entries(random.Random(14), 32)
    csv = gen.write_threatfox_csv(tmp_path / "t.csv", entries)
    export = gen.write_threatfox_json(tmp_path / "t.json", entries)
    from_csv = _objects(THREATFOX_CSV, csv.path)
    assert len(_of(from_csv, "indicator")) == 32
    assert from_csv == _objects(THREATFOX_JSON, export.path)


def test_threatfox_api_answer_gives_identical_objects_but_the_api_only_fields(tmp_path: Path):
    entries = gen.threatfox_entries(random.Random(15), 16)
    from_csv = _objects(THREATFOX_CSV, gen.write_threatfox_csv(tmp_path / "t.csv", entries).path)
    from_api = _objects(THREATFOX_JSON, gen.write_threatfox_api(tmp_path / "t.json", entries).path)
    api_only = ("threat_type_desc", "ioc_type_desc", "malware_malpedia")
    assert _without_extra(from_api, *api_only) == _without_extra(from_csv, "anonymous")


# -- URLhaus --------------------------------------------------------------------------------------

def _urlhaus(**changes: Any) -> dict[str, Any]:
    entry = {"id": "3100001", "dateadded": "2026-11-20 10:00:00",
             "url": "http://DL.Bad.Example/x/setup.exe", "url_status": "online",
             "last_online": "2026-11-21 09:00:00", "threat": "malware_download",
             "tags": ["32-bit", "elf", "Mozi"], "urlhaus_link": "https://urlhaus.abuse.ch/url/3100001/",
             "reporter": "analyst_a"}
    return entry | changes


def _one(name: str, path: Path, **settings: str) -> dict[str, Any]:
    objects = _objects(name, path, **settings)
    indicator, = _of(objects, "indicator")
    infra = _of(objects, "infrastructure")
    return {"objects": objects, "indicator": indicator,
            "infrastructure": infra[0] if infra else None,
            "families": [o["name"] for o in _of(objects, "malware")], "links": _links(objects)}


def test_a_urlhaus_url_is_infrastructure_hosting_malware(tmp_path: Path):
    found = _one(URLHAUS_CSV, gen.write_urlhaus_csv(tmp_path / "u.csv", [_urlhaus()]).path)
    indicator, infra = found["indicator"], found["infrastructure"]
    assert _of(found["objects"], "url")[0]["value"] == "http://dl.bad.example/x/setup.exe"
    assert indicator["pattern"] == "[url:value = 'http://dl.bad.example/x/setup.exe']"
    assert indicator["valid_from"] == indicator["created"] == "2026-11-20T10:00:00.000Z"
    assert "valid_until" not in indicator
    assert indicator["modified"] == infra["last_seen"] == "2026-11-21T09:00:00.000Z"
    assert infra["infrastructure_types"] == ["hosting-malware"]
    assert found["families"] == ["mozi"]
    assert found["links"] == {("indicator", "indicates", "malware"),
                              ("indicator", "indicates", "infrastructure"),
                              ("infrastructure", "consists-of", "url"),
                              ("infrastructure", "delivers", "malware")}
    assert indicator["labels"] == ["32-bit", "elf", "mozi"]
    assert indicator["external_references"] == [
        {"source_name": "abuse.ch URLhaus", "url": "https://urlhaus.abuse.ch/url/3100001/",
         "external_id": "3100001"}]
    assert ext.fields_of(indicator, "abusech") == {"id": "3100001", "reporter": "analyst_a",
                                            "threat": "malware_download"}
    assert ext.data_subject(indicator) == "suspect-infrastructure"
    assert not _of(found["objects"], "observed-data")  # suspect infrastructure, no victim


@pytest.mark.parametrize("changes, family", [
    pytest.param({}, "mozi", id="a family tag among generic ones"),
    pytest.param({"tags": ["exe", "dropped-by-SmokeLoader", "ua-wget"]}, None,
                 id="only generic tags -> no family"),
    pytest.param({"tags": []}, None, id="no tags -> no family"),
    pytest.param({"tags": ["AgentTesla", "exe", "Formbook"]}, "agenttesla",
                 id="the first family tag"),
    pytest.param({"threat": "Emotet"}, "emotet", id="a threat naming a family"),
])
def test_the_urlhaus_family_comes_from_threat_or_a_tag_naming_one(
        tmp_path: Path, changes: dict[str, Any], family: str | None):
    found = _one(URLHAUS_CSV, gen.write_urlhaus_csv(tmp_path / "u.csv", [_urlhaus(**changes)]).path)
    assert found["families"] == ([family] if family else [])
    if family is None:
        assert ("infrastructure", "delivers", "malware") not in found["links"]
        assert not found["indicator"]["name"].startswith("mozi")


def test_generic_tags_option_adds_tags_that_never_name_a_family(tmp_path: Path):
    path = gen.write_urlhaus_csv(tmp_path / "u.csv", [_urlhaus()]).path
    assert _one(URLHAUS_CSV, path, generic_tags="mozi, other")["families"] == []


@pytest.mark.parametrize("status, last_online, valid_until", [
    pytest.param("offline", "2026-11-21 09:00:00", "2026-11-21T09:00:00.000Z",
                 id="offline -> last_online"),
    pytest.param("offline", "", "2026-11-20T10:00:00.001Z",
                 id="offline, never seen online since -> dateadded (and an instant)"),
    pytest.param("online", "2026-11-21 09:00:00", None, id="online -> no valid_until"),
    pytest.param("unknown", "", None, id="unknown -> no valid_until"),
])
def test_an_offline_url_is_valid_until_it_was_last_online(
        tmp_path: Path, status: str, last_online: str, valid_until: str | None):
    entry = _urlhaus(url_status=status, last_online=last_online)
    found = _one(URLHAUS_CSV, gen.write_urlhaus_csv(tmp_path / "u.csv", [entry]).path)
    assert found["indicator"].get("valid_until") == valid_until
    if valid_until:
        assert found["indicator"]["modified"] == found["infrastructure"]["modified"] == valid_until


# -- Feodo Tracker -------------------------------------------------------------------------------

def test_a_feodo_entry_is_a_c2_server_on_its_port(tmp_path: Path):
    entries = [{"first_seen_utc": "2026-11-01 08:00:00", "dst_ip": "203.0.113.5",
                "dst_port": "443", "c2_status": "offline", "last_online": "2026-11-21",
                "malware": "QakBot"},
               {"first_seen_utc": "2026-11-02 08:00:00", "dst_ip": "2001:DB8::C2",
                "dst_port": "8080", "c2_status": "online", "last_online": "2026-11-22",
                "malware": "Emotet"}]
    objects = _objects(FEODO_CSV, gen.write_feodo_csv(tmp_path / "f.csv", entries).path)
    first, second = _of(objects, "indicator")
    assert first["pattern"] == ("[network-traffic:dst_ref.type = 'ipv4-addr' AND "
                                "network-traffic:dst_ref.value = '203.0.113.5' AND "
                                "network-traffic:dst_port = 443]")
    assert first["name"] == "qakbot command and control: 203.0.113.5:443"
    assert not ext.fields_of(first, "abusech")  # the port is in the pattern, nothing else is left
    assert first["valid_until"] == "2026-11-21T00:00:00.000Z"  # last_online is a day
    assert second["pattern"] == ("[network-traffic:dst_ref.type = 'ipv6-addr' AND "
                                 "network-traffic:dst_ref.value = '2001:db8::c2' AND "
                                 "network-traffic:dst_port = 8080]")
    assert second["name"] == "emotet command and control: [2001:db8::c2]:8080"
    assert "valid_until" not in second
    infra = _of(objects, "infrastructure")
    assert [i["infrastructure_types"] for i in infra] == [["command-and-control"]] * 2
    assert [i["name"] for i in infra] == ["qakbot command-and-control 203.0.113.5:443",
                                          "emotet command-and-control [2001:db8::c2]:8080"]
    assert [i["last_seen"] for i in infra] == ["2026-11-21T00:00:00.000Z",
                                               "2026-11-22T00:00:00.000Z"]
    assert {"qakbot", "emotet"} == {m["name"] for m in _of(objects, "malware")}
    assert ("infrastructure", "controls", "malware") in _links(objects)
    assert ("infrastructure", "consists-of", "ipv4-addr") in _links(objects)


@pytest.mark.parametrize("name, write", [
    pytest.param(FEODO_CSV, gen.write_feodo_csv, id="feodo csv"),
    pytest.param(FEODO_JSON, gen.write_feodo_json, id="feodo json"),
])
def test_one_address_on_two_ports_is_two_servers(tmp_path: Path, name: str, write: Any):
    """Each server keeps its own id and its own `created`: none collide on the address."""
    entries = [{"first_seen_utc": f"2026-11-0{day} 08:00:00", "dst_ip": "203.0.113.5",
                "dst_port": port, "c2_status": "online", "last_online": "2026-11-21",
                "malware": "QakBot"} for day, port in ((1, "443"), (3, "8080"))]
    objects = _objects(name, write(tmp_path / "f", entries).path)
    indicators, infra = _of(objects, "indicator"), _of(objects, "infrastructure")
    assert len({o["id"] for o in indicators}) == len({o["id"] for o in infra}) == 2
    assert [o["created"] for o in indicators] == ["2026-11-01T08:00:00.000Z",
                                                  "2026-11-03T08:00:00.000Z"]
    assert len({o["id"] for o in _of(objects, "ipv4-addr")}) == 1  # one address observable


# -- ThreatFox -----------------------------------------------------------------------------------

def _threatfox(**changes: str) -> dict[str, str]:
    entry = {"first_seen_utc": "2026-11-20 10:00:00", "ioc_id": "1500001",
             "ioc_value": "cc.bad.example", "ioc_type": "domain", "threat_type": "botnet_cc",
             "fk_malware": "win.cobalt_strike", "malware_alias": "Agentemis,BEACON,CobaltStrike",
             "malware_printable": "Cobalt Strike", "last_seen_utc": "", "confidence_level": "75",
             "is_compromised": "False", "reference": "https://analyst.example/r/1",
             "tags": "CobaltStrike,cs-watermark-1", "anonymous": "0", "reporter": "analyst_a"}
    return entry | changes


@pytest.mark.parametrize("ioc_type, value, threat_type, observable, infrastructure", [
    pytest.param("ip:port", "203.0.113.7:4444", "botnet_cc", "ipv4-addr", "command-and-control",
                 id="ip:port botnet_cc -> C2"),
    pytest.param("ip:port", "[2001:db8::7]:443", "botnet_cc", "ipv6-addr", "command-and-control",
                 id="ipv6 ip:port -> C2"),
    pytest.param("domain", "cc.bad.example", "botnet_cc", "domain-name", "command-and-control",
                 id="domain botnet_cc -> C2"),
    pytest.param("url", "http://dl.bad.example/a.exe", "payload_delivery", "url",
                 "hosting-malware", id="url payload_delivery -> distribution"),
    pytest.param("domain", "shop.bad.example", "cc_skimming", "domain-name", "unknown",
                 id="another threat type -> unknown"),
    pytest.param("sha256_hash", "A" * 64, "payload", "file", None,
                 id="sha256 payload -> malware file"),
    pytest.param("md5_hash", "b" * 32, "botnet_cc", "file", None, id="a hash is always a file"),
    pytest.param("sha1_hash", "c" * 40, "payload", "file", None, id="sha1 -> malware file"),
])
def test_the_threatfox_kind_follows_threat_type_and_hashes_are_files(
        tmp_path: Path, ioc_type: str, value: str, threat_type: str, observable: str,
        infrastructure: str | None):
    entry = _threatfox(ioc_type=ioc_type, ioc_value=value, threat_type=threat_type)
    found = _one(THREATFOX_CSV, gen.write_threatfox_csv(tmp_path / "t.csv", [entry]).path)
    first = next(o for o in found["objects"] if o["type"] not in PREAMBLE_TYPES)
    assert first["type"] == observable
    if infrastructure is None:
        assert found["infrastructure"] is None
        assert found["links"] == {("indicator", "indicates", "malware")}
        assert found["indicator"]["pattern"].startswith("[file:hashes.")
        assert value.lower() in found["indicator"]["name"]
    else:
        assert found["infrastructure"]["infrastructure_types"] == [infrastructure]
    assert ext.fields_of(found["indicator"], "abusech")["threat_type"] == threat_type


def test_a_threatfox_ip_port_is_the_server_on_that_port(tmp_path: Path):
    entries = [_threatfox(ioc_id=str(1500001 + n), ioc_type="ip:port", ioc_value=value)
               for n, value in enumerate(("203.0.113.7:4444", "203.0.113.7:443"))]
    objects = _objects(THREATFOX_CSV, gen.write_threatfox_csv(tmp_path / "t.csv", entries).path)
    indicators = _of(objects, "indicator")
    assert [i["pattern"] for i in indicators] == [
        f"[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = "
        f"'203.0.113.7' AND network-traffic:dst_port = {port}]" for port in (4444, 443)]
    assert [i["name"] for i in indicators] == [
        "cobalt strike command and control: 203.0.113.7:4444",
        "cobalt strike command and control: 203.0.113.7:443"]
    assert all("port" not in ext.fields_of(i, "abusech") for i in indicators)
    assert len({o["id"] for o in _of(objects, "infrastructure")}) == 2
    assert len(_of(objects, "ipv4-addr")) == 1


def test_a_threatfox_ioc_keeps_its_confidence_family_tags_and_references(tmp_path: Path):
    found = _one(THREATFOX_CSV, gen.write_threatfox_csv(tmp_path / "t.csv", [_threatfox()]).path)
    indicator = found["indicator"]
    assert indicator["confidence"] == 75
    assert found["families"] == ["cobalt strike"]
    assert indicator["labels"] == ["cobaltstrike", "cs-watermark-1"]
    assert indicator["external_references"] == [
        {"source_name": "abuse.ch ThreatFox", "url": "https://threatfox.abuse.ch/ioc/1500001/",
         "external_id": "1500001"},
        {"source_name": "reference", "url": "https://analyst.example/r/1"}]
    assert ext.fields_of(indicator, "abusech") == {
        "anonymous": False, "ioc_id": "1500001", "is_compromised": False,
        "malware": "win.cobalt_strike", "malware_alias": ["Agentemis", "BEACON", "CobaltStrike"],
        "reporter": "analyst_a", "threat_type": "botnet_cc"}


def test_the_run_confidence_stands_where_threatfox_gives_none(tmp_path: Path):
    path = gen.write_threatfox_csv(tmp_path / "t.csv", [
        _threatfox(), _threatfox(ioc_id="1500002", ioc_value="cc2.bad.example",
                                 confidence_level="")]).path
    parser = PARSERS[THREATFOX_CSV]()
    items = list(normalize(parser, path, Context(parser.default_source, "clear", confidence=40)))
    objects = [i.obj for i in items if isinstance(i, Produced)]
    assert not [i for i in items if isinstance(i, Reject)]
    assert [o["confidence"] for o in _of(objects, "indicator")] == [75, 40]
    assert {o["confidence"] for o in _of(objects, "infrastructure")} == {40}


@pytest.mark.parametrize("printable, malware, family", [
    pytest.param("Cobalt Strike", "win.cobalt_strike", "cobalt strike", id="printable name"),
    pytest.param("", "win.cobalt_strike", "win.cobalt_strike", id="malware when no printable"),
    pytest.param("Unknown malware", "unknown", None, id="unknown malware -> no family"),
])
def test_the_threatfox_family(tmp_path: Path, printable: str, malware: str, family: str | None):
    entry = _threatfox(malware_printable=printable, fk_malware=malware)
    found = _one(THREATFOX_CSV, gen.write_threatfox_csv(tmp_path / "t.csv", [entry]).path)
    assert found["families"] == ([family] if family else [])


def test_a_threatfox_reference_that_is_no_url_is_a_description(tmp_path: Path):
    entry = _threatfox(reference="seen in a sandbox run")
    found = _one(THREATFOX_CSV, gen.write_threatfox_csv(tmp_path / "t.csv", [entry]).path)
    assert found["indicator"]["external_references"][1] == {
        "source_name": "reference", "description": "seen in a sandbox run"}


# -- MalwareBazaar -------------------------------------------------------------------------------

def test_a_malwarebazaar_sample_is_a_malware_file_with_its_hashes(tmp_path: Path):
    entries = gen.bazaar_entries(random.Random(16), 6)
    entries[0] |= {"file_name": 'say "hi", "bye".js', "signature": "AgentTesla"}
    entries[1] |= {"signature": "n/a", "md5_hash": "n/a", "file_name": "n/a"}
    objects = _objects(BAZAAR, gen.write_bazaar_csv(tmp_path / "b.csv", entries).path)
    assert not _of(objects, "infrastructure")
    files, indicators = _of(objects, "file"), _of(objects, "indicator")
    assert len(files) == len(indicators) == 6
    first, second = files[0], files[1]
    assert first["hashes"] == {"SHA-256": entries[0]["sha256_hash"],
                               "MD5": entries[0]["md5_hash"], "SHA-1": entries[0]["sha1_hash"]}
    assert first["name"] == 'say "hi", "bye".js'
    assert first["mime_type"] == entries[0]["mime_type"]
    assert set(second["hashes"]) == {"SHA-256", "SHA-1"} and "name" not in second
    assert indicators[0]["name"] == f"agenttesla malware file: {entries[0]['sha256_hash']}"
    assert indicators[1]["name"] == f"malware file: {entries[1]['sha256_hash']}"
    assert "agenttesla" in {m["name"] for m in _of(objects, "malware")}
    assert indicators[0]["external_references"] == [{
        "source_name": "abuse.ch MalwareBazaar", "external_id": entries[0]["sha256_hash"],
        "url": f"https://bazaar.abuse.ch/sample/{entries[0]['sha256_hash']}/"}]
    kept = ext.fields_of(indicators[0], "abusech")
    assert set(kept) <= {"reporter", "file_type_guess", "clamav", "vtpercent", "imphash",
                         "ssdeep", "tlsh"}
    assert kept["ssdeep"] == entries[0]["ssdeep"] and kept["reporter"] == entries[0]["reporter"]


# -- hostile input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, write, entries, hostile", [
    pytest.param(URLHAUS_CSV, gen.write_urlhaus_csv, gen.urlhaus_entries,
                 gen.HOSTILE_URLHAUS_CSV, id="urlhaus csv"),
    pytest.param(URLHAUS_JSON, gen.write_urlhaus_json, gen.urlhaus_entries,
                 gen.HOSTILE_URLHAUS_JSON, id="urlhaus json"),
    pytest.param(FEODO_CSV, gen.write_feodo_csv, gen.feodo_entries, gen.HOSTILE_FEODO_CSV,
                 id="feodo csv"),
    pytest.param(FEODO_JSON, gen.write_feodo_json, gen.feodo_entries, gen.HOSTILE_FEODO_JSON,
                 id="feodo json"),
    pytest.param(THREATFOX_CSV, gen.write_threatfox_csv, gen.threatfox_entries,
                 gen.HOSTILE_THREATFOX_CSV, id="threatfox csv"),
    pytest.param(THREATFOX_JSON, gen.write_threatfox_json, gen.threatfox_entries,
                 gen.HOSTILE_THREATFOX_JSON, id="threatfox json"),
    pytest.param(BAZAAR, gen.write_bazaar_csv, gen.bazaar_entries, gen.HOSTILE_BAZAAR_CSV,
                 id="malwarebazaar csv"),
])
def test_hostile_records_are_rejected_with_their_reason(
        tmp_path: Path, name: str, write: Any, entries: Any, hostile: list[tuple[str, Any]]):
    sample = write(tmp_path / "input", entries(random.Random(1), 24), hostile)
    produced, rejects, tally = run(name, sample.path)
    assert tally.read == sample.good + sample.bad
    assert len(_of([p.obj for p in produced], "indicator")) == sample.good
    reasons = [r.reason for r in rejects]
    assert len(reasons) == len(hostile), reasons
    for (fragment, _), reason in zip(hostile, reasons, strict=True):
        assert fragment in reason


def test_a_rejected_csv_row_keeps_its_original_line(tmp_path: Path):
    """ThreatFox writes `"a", "b"`: the reject's raw is the line as written, not as read."""
    hostile = [h for h in gen.HOSTILE_THREATFOX_CSV if "header has" in h[0]]
    sample = gen.write_threatfox_csv(tmp_path / "t.csv", [_threatfox()], hostile)
    reject, = run(THREATFOX_CSV, sample.path)[1]
    assert reject.raw == hostile[0][1].decode()
    assert reject.row == 11  # seven banner lines, the header, one entry, then this line


def test_a_csv_header_may_be_plain_or_in_a_comment(tmp_path: Path):
    plain = tmp_path / "plain.csv"
    entry = _threatfox()
    plain.write_text(gen._quoted(gen.THREATFOX_COLUMNS) + "\n"
                     + gen._quoted([entry[c] for c in gen.THREATFOX_COLUMNS], ", ") + "\n")
    commented = gen.write_threatfox_csv(tmp_path / "commented.csv", [entry]).path
    assert _objects(THREATFOX_CSV, plain) == _objects(THREATFOX_CSV, commented)


def test_an_older_urlhaus_export_without_last_online_is_read(tmp_path: Path):
    path = tmp_path / "old.csv"
    path.write_text("# abuse.ch URLhaus Database Dump\n"
                    "# id,dateadded,url,url_status,threat,tags,urlhaus_link,reporter\n"
                    '"1","2026-11-20 10:00:00","http://a.bad.example/i","offline",'
                    '"malware_download","elf,Mozi","https://urlhaus.abuse.ch/url/1/","x"\n')
    found = _one(URLHAUS_CSV, path)
    assert found["families"] == ["mozi"]
    assert found["indicator"]["valid_until"] == "2026-11-20T10:00:00.001Z"


@pytest.mark.parametrize("body, reason, row", [
    pytest.param(b"", "empty file: no header", 0, id="empty"),
    pytest.param(b"# only comments\n#\n", "empty file: no header", 0, id="only comments"),
    pytest.param(b'# banner\n"time","ip"\n"2026-11-20 00:00:00","203.0.113.1"\n',
                 "header lacks required columns: first_seen_utc, ioc_value, ioc_type", 2,
                 id="header without the required columns"),
])
def test_csv_files_without_a_usable_header_are_one_reject(tmp_path: Path, body: bytes,
                                                         reason: str, row: int):
    path = tmp_path / "bad.csv"
    path.write_bytes(body)
    produced, rejects, _ = run(THREATFOX_CSV, path)
    assert [(r.reason, r.row) for r in rejects] == [(reason, row)]
    assert preamble_only(produced)


@pytest.mark.parametrize("name, body, reason", [
    pytest.param(URLHAUS_JSON, b"{not json", "not valid JSON", id="not JSON"),
    pytest.param(URLHAUS_JSON, b"42", "not an object", id="a number"),
    pytest.param(FEODO_JSON, b'{"ip_address": "203.0.113.1"}', "not a JSON list",
                 id="feodo: an object"),
    pytest.param(THREATFOX_JSON, b'{"query_status": "illegal_auth_key"}',
                 "the API answered query_status 'illegal_auth_key'", id="an API error"),
    pytest.param(THREATFOX_JSON, b'{"query_status": "ok", "data": "nothing"}',
                 "an API answer without a 'data' list", id="API data not a list"),
    pytest.param(URLHAUS_JSON, b"\xff\xfe{", "not valid JSON", id="bad encoding"),
])
def test_a_json_document_of_the_wrong_shape_is_one_whole_file_reject(
        tmp_path: Path, name: str, body: bytes, reason: str):
    path = tmp_path / "bad.json"
    path.write_bytes(body)
    produced, rejects, _ = run(name, path)
    assert len(rejects) == 1 and rejects[0].row == 0 and reason in rejects[0].reason
    assert preamble_only(produced)


def test_an_api_answer_without_results_is_no_record(tmp_path: Path):
    path = tmp_path / "none.json"
    path.write_bytes(orjson.dumps({"query_status": "no_result", "data": "no results"}))
    produced, rejects, tally = run(THREATFOX_JSON, path)
    assert tally.read == 0 and not rejects


def test_a_json_file_over_the_size_cap_is_rejected_unread(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    sample = gen.write_feodo_json(tmp_path / "f.json", gen.feodo_entries(random.Random(2), 5))
    monkeypatch.setattr(jsondoc, "MAX_FILE", 100)
    rejects = run(FEODO_JSON, sample.path)[1]
    assert [(r.row, r.reason) for r in rejects] == [(0, "file larger than 100 bytes")]


def test_times_with_utc_and_plain_dates_are_read():
    assert abusech_common.time("2026-11-20 10:00:00 UTC") == "2026-11-20T10:00:00.000Z"
    assert abusech_common.time("2026-11-21") == "2026-11-21T00:00:00.000Z"
    assert abusech_common.time("None") is None
    with pytest.raises(v.BadValue):
        abusech_common.time("2026-11-31")
