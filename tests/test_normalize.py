"""Normalisation: value helpers, the parser contract every format must meet, each format,
and `taxii-exchange ingest` end to end into a live server read back with taxii2-client."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import stix2
from stix2validator import ValidationOptions, validate_instance
from taxii2client.v21 import Collection, as_pages

from exchange import model
from exchange import stix_extensions as ext
from exchange.cli import main
from exchange.ingest import Ingest, Writer
from exchange.markings import HANDLING_EXTENSION, SERVER_IDENTITY, marking_rank
from exchange.model import ALL, Query
from exchange.normalize import PARSERS, Context, build
from exchange.normalize import values as v
from exchange.normalize.base import TLP, Tally
from exchange.normalize.csvrows import Row, read_rows
from exchange.normalize.run import Run
from exchange.stix import check_object
from exchange.store.sqlite import SQLiteStore
from tests.conftest import OPEN, Env, start_server
from tests.fixtures import shadowserver as sinkholes
from tests.fixtures.common import Sample
from tests.normalizing import HOSTS, run

AMBER = TLP["amber"]
SINKHOLE = "shadowserver-event4-sinkhole"

LOCAL = Writer(default_rank=model.AMBER)  # an operator's load, as `ingest` makes one


# -- values -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    pytest.param("192.0.2.1", ("ipv4-addr", "192.0.2.1"), id="ipv4"),
    pytest.param(" 198.51.100.7 ", ("ipv4-addr", "198.51.100.7"), id="ipv4 with spaces"),
    pytest.param("2001:DB8:0:0:0:0:0:1", ("ipv6-addr", "2001:db8::1"), id="ipv6 compressed"),
    pytest.param("::ffff:203.0.113.5", ("ipv4-addr", "203.0.113.5"), id="ipv4-mapped ipv6"),
])
def test_ip_addresses_get_their_canonical_form(text: str, expected: tuple[str, str]):
    assert v.ip_address(text) == expected


@pytest.mark.parametrize("text", ["999.1.1.1", "192.0.2", "192.0.2.1/24", "", "2001:db8::g"])
def test_bad_ip_addresses_are_refused(text: str):
    with pytest.raises(v.BadValue):
        v.ip_address(text)


def test_domains_urls_and_hashes_are_normalised():
    assert v.domain("WWW.Bad.Example.") == "www.bad.example"
    assert v.domain("bücher.example") == "xn--bcher-kva.example"
    with pytest.raises(v.BadValue):
        v.domain("bad_label!.example")
    assert v.url("HTTP://C2.Bad.Example:80/Path?q=1") == "http://c2.bad.example/Path?q=1"
    assert v.url("https://[2001:DB8::1]:8443") == "https://[2001:db8::1]:8443/"
    with pytest.raises(v.BadValue):
        v.url("/relative/only")
    assert v.hash_value("MD5", "D41D8CD98F00B204E9800998ECF8427E") == \
        "d41d8cd98f00b204e9800998ecf8427e"
    with pytest.raises(v.BadValue):
        v.hash_value("SHA-256", "abc")
    assert v.timestamp("2026-11-20 01:02:03") == "2026-11-20T01:02:03.000Z"
    assert v.timestamp("2026-11-20T01:02:03.50+00:00") == "2026-11-20T01:02:03.500Z"
    assert v.observable_timestamp("2026-11-20T01:02:03.500Z") == "2026-11-20T01:02:03.5Z"
    assert v.observable_timestamp("2026-11-20T01:02:03.000Z") == "2026-11-20T01:02:03Z"
    with pytest.raises(v.BadValue):
        v.timestamp("2026-02-30 00:00:00")


def test_observable_ids_match_the_stix2_library():
    """STIX 2.1 section 2.9, checked against stix2's own deterministic ids."""
    src = stix2.IPv4Address(value="192.0.2.1")
    dst = stix2.IPv6Address(value="2001:db8::1")
    expected = [
        (v.sco("ipv4-addr", value="192.0.2.1"), src),
        (v.sco("ipv6-addr", value="2001:db8::1"), dst),
        (v.sco("domain-name", value="xn--bcher-kva.example"),
         stix2.DomainName(value="xn--bcher-kva.example")),
        (v.sco("url", value=v.url("http://c2.bad.example/ü")),
         stix2.URL(value="http://c2.bad.example/%C3%BC")),
        (v.sco("autonomous-system", number=64496), stix2.AutonomousSystem(number=64496)),
        (v.sco("file", hashes={"SHA-256": "a" * 64, "MD5": "b" * 32}, name="x.exe"),
         stix2.File(hashes={"SHA-256": "a" * 64, "MD5": "b" * 32}, name="x.exe")),
        (v.sco("network-traffic", start=v.observable_timestamp("2026-11-20T01:02:03.000Z"),
               src_ref=src.id, dst_ref=dst.id, src_port=4444, dst_port=80,
               protocols=["ipv4", "tcp", "http"]),
         stix2.NetworkTraffic(start="2026-11-20T01:02:03Z", src_ref=src.id, dst_ref=dst.id,
                              src_port=4444, dst_port=80, protocols=["ipv4", "tcp", "http"])),
    ]
    for ours, theirs in expected:
        assert ours["id"] == theirs.id, ours["type"]


def test_sdo_ids_are_uuid5_over_the_natural_key():
    assert v.sdo_id("malware", "emotet") == v.sdo_id("malware", "emotet")
    assert v.sdo_id("malware", "emotet") != v.sdo_id("malware", "qakbot")
    assert v.sdo_id("malware", "emotet")[len("malware--"):][14] == "5"


# -- the contract every parser meets ------------------------------------------------------------

_OPTIONS = ValidationOptions()
GOLDEN = Path(__file__).parent / "golden"


def test_every_parser_has_samples_and_describes_itself(samples: dict[str, list[Sample]]):
    assert set(samples) == set(PARSERS)
    for name, parser in PARSERS.items():
        assert len(samples[name]) >= 1
        assert parser.name and parser.description and parser.default_source
        assert parser.fields and all(f.name and f.description for f in parser.fields)
        assert any(f.required for f in parser.fields)


@pytest.mark.parametrize("name", list(PARSERS))
def test_parser_contract(name: str, samples: dict[str, list[Sample]]):
    for sample in samples[name]:
        _check_contract(name, sample)


def _check_contract(name: str, sample: Sample) -> None:
    produced, rejects, tally = run(name, sample.path, settings=sample.settings)
    # Every record is read and either converted or rejected with its provenance.
    assert tally.read == sample.good + sample.bad, sample
    assert len(rejects) == sample.bad, (sample, [r.reason for r in rejects])
    for reject in rejects:
        assert reject.source.startswith(str(sample.path)) and reject.reason
        assert isinstance(reject.raw, str) and (reject.raw or reject.row == 0)
        orjson.dumps(reject.as_json())
    # Every object is valid STIX 2.1, for our checks and for stix2-validator, and unique.
    ids = [p.obj["id"] + str(p.obj.get("modified")) for p in produced]
    assert len(ids) == len(set(ids))
    for item in produced:
        check_object(item.obj)
        result = validate_instance(item.obj, _OPTIONS)
        assert result.is_valid, (item.obj, [str(e) for e in result.errors])
        if item.record is not None:
            assert item.record.source.startswith(str(sample.path)) and item.record.raw
    # The input has a report referencing everything it produced, by the source identity.
    reports = [p.obj for p in produced if p.obj["type"] == "report" and p.record is None]
    identity = produced[0].obj
    assert identity["type"] == "identity"
    assert len(reports) == 1 and reports[0]["created_by_ref"] == identity["id"]
    assert reports[0]["object_marking_refs"] == [AMBER]
    assert set(reports[0]["object_refs"]) == {p.obj["id"] for p in produced
                                              if p.record is not None}
    # A victim's address is never an indicator.
    victims = {ref for p in produced if ext.data_subject(p.obj) == "victim"
               for ref in p.obj.get("object_refs", ())}
    for item in produced:
        if item.obj["type"] == "indicator":
            assert not any(item.obj["pattern"] == build.pattern(p.obj) for p in produced
                           if p.obj["id"] in victims and p.obj["type"] in HOSTS)
    # Deterministic: a second run gives the very same objects (no clock, no random ids).
    again, _, _ = run(name, sample.path, settings=sample.settings)
    assert [p.obj for p in again] == [p.obj for p in produced]


@pytest.mark.parametrize("name", list(PARSERS))
def test_golden_files(name: str, samples: dict[str, list[Sample]]):
    """The first sample of each format gives exactly the STIX in tests/golden/NAME.json.

    After a deliberate modelling change, rewrite them with `UPDATE_GOLDEN=1 pytest -k golden`
    and review the diff.
    """
    sample = samples[name][0]
    produced, rejects, _ = run(name, sample.path, settings=sample.settings)
    found = {
        "objects": [p.obj for p in produced],
        "rejects": [{"source": str(Path(r.source).relative_to(sample.path.parent)),
                     "row": r.row, "reason": r.reason} for r in rejects],
    }
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_bytes(orjson.dumps(found, option=orjson.OPT_INDENT_2) + b"\n")
    assert golden.is_file(), f"no golden file {golden}: run with UPDATE_GOLDEN=1 and review"
    assert found == orjson.loads(golden.read_bytes())


# -- the command line ---------------------------------------------------------------------------

def test_formats_lists_every_format_with_fields(capsys: pytest.CaptureFixture[str]):
    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    for name in PARSERS:
        assert name in out
    assert "src_ip (required)" in out


def _summary(out: str) -> dict[str, int]:
    line = out.strip().splitlines()[-1]
    return {part.split()[0]: int(part.split()[1]) for part in line.split(", ")}


def test_ingest_end_to_end_through_taxii2_client(env: Env, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]):
    sample = sinkholes.write_sinkhole(tmp_path / "event4_sinkhole.csv", count=40)
    config = str(tmp_path / "env" / "config.yaml")
    rejects = tmp_path / "rejects.jsonl"
    command = ["--config", config, "ingest", "--format", SINKHOLE, "--collection", "open",
               "--tlp", "amber", "--rejects", str(rejects), str(sample.path)]
    assert main(command) == 1  # the hostile rows were rejected
    first = _summary(capsys.readouterr().out)
    assert first["read"] == sample.good + sample.bad and first["rejected"] == sample.bad
    assert first["stored"] == first["produced"] > sample.good and first["unchanged"] == 0
    lines = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert len(lines) == sample.bad
    assert {"source", "row", "reason", "raw"} <= set(lines[0])
    assert lines[0]["source"] == str(sample.path) and "999.1.1.1" in lines[0]["raw"]

    # Re-ingesting the same file changes nothing.
    assert main(command) == 1
    second = _summary(capsys.readouterr().out)
    assert second["stored"] == 0 and second["unchanged"] == first["produced"]

    # A clean file exits 0; the collection is found by id as well as by alias.
    clean = sinkholes.write_sinkhole_minimal(tmp_path / "minimal.csv")
    assert main(["--config", config, "ingest", "--format", SINKHOLE, "--collection", OPEN,
                 str(clean.path)]) == 0
    third = _summary(capsys.readouterr().out)
    assert third["rejected"] == 0

    server = start_server(env)
    try:
        user, password = env.basic("alice")
        collection = Collection(server.collection(OPEN), user=user, password=password)
        pulled: list[dict[str, Any]] = []
        for envelope in as_pages(collection.get_objects, per_request=100):
            pulled += envelope.get("objects", [])
    finally:
        server.stop()
    assert len(pulled) == first["stored"] + third["stored"]
    types = {o["type"] for o in pulled}
    assert {"identity", "observed-data", "sighting", "report", "malware"} <= types
    assert "indicator" not in types


def test_ingest_refuses_an_unknown_collection(env: Env, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]):
    sample = sinkholes.write_sinkhole_minimal(tmp_path / "minimal.csv")
    assert main(["--config", str(tmp_path / "env" / "config.yaml"), "ingest", "--format",
                 SINKHOLE, "--collection", "nope", str(sample.path)]) == 2
    assert "no collection" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    pytest.param(["--handling", "H5"], "handling codes are H0, H1, H2, H3, not H5",
                 id="unknown code"),
    pytest.param(["--handling", "H3"], "H3 needs its conditions", id="H3 without conditions"),
])
def test_ingest_refuses_bad_handling_before_reading(env: Env, tmp_path: Path, flags: list[str],
                                                    message: str, capsys):
    sample = sinkholes.write_sinkhole_minimal(tmp_path / "minimal.csv")
    assert main(["--config", str(tmp_path / "env" / "config.yaml"), "ingest", "--format",
                 SINKHOLE, "--collection", "open", *flags, str(sample.path)]) == 2
    assert message in capsys.readouterr().err


def test_ingest_writes_the_handling_extension(env: Env, tmp_path: Path, capsys):
    """--handling and the evaluation go on every object as the handling extension, with its
    definition stored beside them; an observable whose id takes its extensions does not."""
    sample = sinkholes.write_sinkhole_minimal(tmp_path / "minimal.csv")
    assert main(["--config", str(tmp_path / "env" / "config.yaml"), "ingest", "--format",
                 SINKHOLE, "--collection", "open", "--handling", "h1,H2", "--handling", "H3",
                 "--handling-conditions", "case 0815 only", "--reliability", "B",
                 "--accuracy", "2", str(sample.path)]) == 0
    store = SQLiteStore(env.settings.store_path)
    store.open()
    try:
        page = store.query(Query(collection=OPEN, limit=5000, versions=(ALL,)), with_body=True)
    finally:
        store.close()
    objects = [orjson.loads(e.body) for e in page.entries]
    expected = {"extension_type": "property-extension", "handling_codes": ["H1", "H2", "H3"],
                "handling_conditions": "case 0815 only", "source_reliability": "B",
                "information_accuracy": "2"}
    marked = [o for o in objects if HANDLING_EXTENSION in o.get("extensions", {})]
    assert {o["type"] for o in marked} >= {"observed-data", "sighting", "report", "ipv4-addr"}
    assert all(o["extensions"][HANDLING_EXTENSION] == expected for o in marked)
    assert not [o for o in objects if o["type"] in ("network-traffic", "file") and o in marked]
    assert HANDLING_EXTENSION in {o["id"] for o in objects}  # its definition, to resolve it
    for obj in marked:  # the reference library's defaults take the extension
        stix2.parse(obj)


# -- the shared STIX shapes ---------------------------------------------------------------------

def _valid(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    for obj in objects:
        check_object(obj)
        result = validate_instance(obj, _OPTIONS)
        assert result.is_valid, (obj, [str(e) for e in result.errors])
    return {o["id"]: o for o in objects}


def test_suspect_infrastructure_is_indicator_infrastructure_family_and_relationships():
    context = Context("Test Feed", "green", confidence=80)
    url = v.sco("url", value=v.url("http://Bad.Example/o'neil\\x.exe"))
    objects = build.infrastructure_objects(
        context, url, first_seen="2026-11-20T10:00:00.000Z", last_seen="2026-11-21T10:00:00.000Z",
        valid_until="2026-11-21T10:00:00.000Z", family="Emotet", kind=build.DISTRIBUTION)
    by_id = _valid(objects)
    indicator = next(o for o in objects if o["type"] == "indicator")
    assert indicator["pattern"] == "[url:value = 'http://bad.example/o\\'neil%5Cx.exe']"
    assert stix2.Indicator(**indicator, allow_custom=True).pattern == indicator["pattern"]
    assert indicator["valid_from"] == indicator["created"] == "2026-11-20T10:00:00.000Z"
    assert indicator["valid_until"] == indicator["modified"] == "2026-11-21T10:00:00.000Z"
    assert indicator["confidence"] == 80 and indicator["object_marking_refs"] == [TLP["green"]]
    links = {(by_id[o["source_ref"]]["type"], o["relationship_type"],
              by_id[o["target_ref"]]["type"])
             for o in objects if o["type"] == "relationship"}
    assert links == {("indicator", "indicates", "malware"),
                     ("indicator", "indicates", "infrastructure"),
                     ("infrastructure", "consists-of", "url"),
                     ("infrastructure", "delivers", "malware")}
    # The same facts give the same objects; a host gone when first seen stays valid an instant.
    again = build.infrastructure_objects(
        context, v.sco("url", value=v.url("http://bad.example/o'neil\\x.exe")),
        first_seen="2026-11-20T10:00:00.000Z", last_seen="2026-11-21T10:00:00.000Z",
        valid_until="2026-11-21T10:00:00.000Z", family="emotet", kind=build.DISTRIBUTION)
    assert again == objects
    gone = build.infrastructure_objects(context, v.sco("ipv4-addr", value="203.0.113.9"),
                                        first_seen="2026-11-20T10:00:00.000Z",
                                        valid_until="2026-11-20T10:00:00.000Z")
    assert _valid(gone)
    assert gone[1]["valid_until"] == "2026-11-20T10:00:00.001Z"


def test_a_malware_file_has_no_infrastructure():
    context = Context("Test Feed", "amber")
    sample = v.sco("file", hashes={"SHA-256": "a" * 64, "MD5": "b" * 32})
    objects = build.infrastructure_objects(context, sample, first_seen="2026-11-20T10:00:00.000Z",
                                           family="qakbot", kind=build.PAYLOAD)
    _valid(objects)
    assert [o["type"] for o in objects] == ["file", "indicator", "malware", "relationship"]
    assert objects[1]["pattern"] == f"[file:hashes.MD5 = '{'b' * 32}' OR " \
                                    f"file:hashes.'SHA-256' = '{'a' * 64}']"


def test_victims_are_observed_and_sighted_never_indicated():
    context = Context("Test Feed", "red", handling=("H2",), reliability="B")
    victim = v.sco("ipv4-addr", value="192.0.2.5")
    objects = build.victim_objects(context, [victim], seen="2026-11-20T10:00:00.000Z",
                                   key=victim["id"], family="emotet")
    by_id = _valid([*context.preamble(), *objects])
    assert [o["type"] for o in objects] == ["ipv4-addr", "malware", "observed-data", "sighting"]
    observed, sighting = objects[2], objects[3]
    assert ext.data_subject(observed) == "victim"
    assert sighting["where_sighted_refs"] == [context.source_id]
    assert by_id[HANDLING_EXTENSION]["type"] == "extension-definition"
    assert observed["extensions"][HANDLING_EXTENSION] == {
        "extension_type": "property-extension", "handling_codes": ["H2"],
        "source_reliability": "B"}
    assert all(o["object_marking_refs"] == [TLP["red"]] for o in objects)
    with pytest.raises(v.BadValue):
        build.victim_objects(context, [victim], seen="2026-11-20T10:00:00.000Z", key="k")


def test_fast_uuid5_is_rfc_4122_uuid5():
    for name in (b"", b"emotet", "bücher".encode()):
        assert v.uuid5(v.PROJECT_NAMESPACE, name) == str(uuid.uuid5(v.PROJECT_NAMESPACE,
                                                                    name.decode()))


def test_every_format_round_trips_through_ingest_and_taxii2_client(
        env: Env, tmp_path: Path, samples: dict[str, list[Sample]],
        capsys: pytest.CaptureFixture[str]):
    """Each format's first sample goes in with `taxii-exchange ingest` and every stored
    object version comes back out of the collection through taxii2-client, unchanged."""
    config = str(tmp_path / "env" / "config.yaml")
    stored = 0
    for name in PARSERS:
        sample = samples[name][0]
        options = [f"--option={key}={value}" for key, value in (sample.settings or {}).items()]
        code = main(["--config", config, "ingest", "--format", name, "--collection", "open",
                     "--rejects", str(tmp_path / f"{name}.rejects"), *options,
                     str(sample.path)])
        counts = _summary(capsys.readouterr().out)
        assert code == (1 if sample.bad else 0), (name, counts)
        assert counts["read"] == sample.good + sample.bad and counts["stored"] > 0, name
        stored += counts["stored"]
    server = start_server(env)
    try:
        user, password = env.basic("alice")
        collection = Collection(server.collection(OPEN), user=user, password=password)
        pulled: list[dict[str, Any]] = []
        for envelope in as_pages(collection.get_objects, per_request=500, version="all"):
            pulled += envelope.get("objects", [])
    finally:
        server.stop()
    assert len(pulled) == stored
    assert len({(o["id"], o.get("modified", "")) for o in pulled if "modified" in o}) == \
        len([o for o in pulled if "modified" in o])
    for obj in pulled:
        check_object(obj)


def _load_ioc_csv(store: SQLiteStore, path: Path, tlp: str = "amber") -> Tally:
    settings = {"value": "value", "first_seen": "first_seen", "description": "description"}
    parser = PARSERS["ioc-csv"](settings)
    lines: list[bytes] = []
    run = Run(Ingest(store), collection=OPEN, writer=LOCAL, rejects=lines.append)
    tally = run.files(parser, [path], Context("Analyst list", tlp))
    assert not lines, lines
    return tally


def test_new_facts_under_an_old_timestamp_become_a_new_version(tmp_path: Path):
    store = SQLiteStore(tmp_path / "store.sqlite3")
    store.open()
    try:
        path = tmp_path / "list.csv"
        path.write_text("value,first_seen,description\n"
                        "c2.bad.example,2026-11-20 10:00:00,seen beaconing\n")
        first = _load_ioc_csv(store, path)
        path.write_text("value,first_seen,description\n"
                        "c2.bad.example,2026-11-20 10:00:00,seen beaconing; now offline\n")
        second = _load_ioc_csv(store, path)
        third = _load_ioc_csv(store, path)  # the same facts again
        page = store.query(Query(collection=OPEN, limit=100, types=("indicator",),
                                 versions=(ALL,)), with_body=True)
    finally:
        store.close()
    assert first.stored > 0 and first.unchanged == 0
    versions = [orjson.loads(e.body) for e in page.entries]
    assert [o["modified"] for o in versions] == ["2026-11-20T10:00:00.000Z",
                                                 "2026-11-20T10:00:00.001Z"]
    assert versions[1]["description"].endswith("now offline")
    assert versions[0]["created"] == versions[1]["created"]
    assert second.stored >= 1 and second.rejected == 0
    assert third.stored == 0 and third.rejected == 0


def test_an_observable_already_stored_under_another_marking_is_kept(tmp_path: Path):
    store = SQLiteStore(tmp_path / "store.sqlite3")
    store.open()
    try:
        path = tmp_path / "list.csv"
        path.write_text("value,first_seen,description\n203.0.113.7,2026-11-20 10:00:00,x\n")
        _load_ioc_csv(store, path, "amber")
        again = _load_ioc_csv(store, path, "green")
        page = store.query(Query(collection=OPEN, limit=10, types=("ipv4-addr",)),
                           with_body=True)
    finally:
        store.close()
    assert again.kept == 1 and again.rejected == 0
    assert [orjson.loads(e.body)["object_marking_refs"] for e in page.entries] == \
        [[TLP["amber"]]]


def test_a_server_on_a_port_is_apart_from_the_same_address_on_another():
    context = Context("Test Feed", "clear")
    address = v.sco("ipv4-addr", value="203.0.113.5")
    on_443 = build.infrastructure_objects(context, dict(address), first_seen=
                                          "2026-11-20T10:00:00.000Z", port=443, family="qakbot")
    on_80 = build.infrastructure_objects(context, dict(address), first_seen=
                                         "2026-11-21T10:00:00.000Z", port=80, family="qakbot")
    _valid(on_443)
    assert on_443[1]["pattern"] == ("[network-traffic:dst_ref.type = 'ipv4-addr' AND "
                                    "network-traffic:dst_ref.value = '203.0.113.5' AND "
                                    "network-traffic:dst_port = 443]")
    assert stix2.Indicator(**on_443[1], allow_custom=True)
    assert on_443[1]["id"] != on_80[1]["id"] and "203.0.113.5:443" in on_443[1]["name"]
    assert on_443[0]["id"] == on_80[0]["id"]  # one address observable


# -- the two-process load and the progress line -------------------------------------------------

def _load(tmp_path: Path, name: str, path: Path, *, parallel: bool,
          progress: io.StringIO | None = None) -> tuple[Tally, list[bytes], list[bytes]]:
    store = SQLiteStore(tmp_path / f"{name}-{parallel}.sqlite3")
    store.open()
    lines: list[bytes] = []
    try:
        run = Run(Ingest(store), collection=OPEN, writer=LOCAL, rejects=lines.append, batch=50,
                  progress=progress)
        parser = PARSERS[name]()
        tally = run.files(parser, [path], Context(parser.default_source, "amber"),
                          parallel=parallel)
        page = store.query(Query(collection=OPEN, limit=5000, versions=(ALL,)), with_body=True)
    finally:
        store.close()
    return tally, lines, [e.body for e in page.entries]


def test_a_producer_process_loads_exactly_what_one_process_loads(tmp_path: Path):
    sample = sinkholes.write_sinkhole(tmp_path / "event4_sinkhole.csv", count=300)
    alone, alone_rejects, alone_bodies = _load(tmp_path, SINKHOLE, sample.path, parallel=False)
    child, child_rejects, child_bodies = _load(tmp_path, SINKHOLE, sample.path, parallel=True)
    assert child == alone and alone.rejected == sample.bad and alone.stored > 300
    assert child_rejects == alone_rejects
    assert child_bodies == alone_bodies


class _Broken(PARSERS[SINKHOLE]):  # type: ignore[misc,valid-type]
    """A parser whose reader fails outright after some rows (a bug, not a bad row)."""

    def records(self, path: Path) -> Iterator[Any]:
        for number, item in enumerate(super().records(path)):
            if number == 100:
                raise OSError("disk went away")
            yield item


def test_a_failing_producer_process_stops_the_load_with_its_reason(tmp_path: Path):
    sample = sinkholes.write_sinkhole(tmp_path / "event4_sinkhole.csv", count=300)
    store = SQLiteStore(tmp_path / "store.sqlite3")
    store.open()
    try:
        run = Run(Ingest(store), collection=OPEN, writer=LOCAL, rejects=lambda line: None, batch=50)
        with pytest.raises(RuntimeError, match="disk went away"):
            run.files(_Broken(), [sample.path], Context("Test"), parallel=True)
    finally:
        store.close()


def test_the_progress_line_ends_at_100_percent_with_the_records_read(tmp_path: Path):
    sample = sinkholes.write_sinkhole(tmp_path / "event4_sinkhole.csv", count=120)
    shown = io.StringIO()
    tally, _, _ = _load(tmp_path, SINKHOLE, sample.path, parallel=False, progress=shown)
    last = shown.getvalue().rstrip("\n").split("\r")[-1]
    assert "100%" in last and f"{tally.read:,} records" in last
    assert shown.getvalue().endswith("\n")


def test_csv_headers_come_with_their_line_number_even_inside_a_comment(tmp_path: Path):
    path = tmp_path / "export.csv"
    path.write_text('#####\n# a feed export\n# "first_seen_utc", "ioc_id", "tags"\n#\n'
                    '"2026-11-20 10:00:00", "1", "a,b"\n# END\n')
    items = list(read_rows(path, comment=b"#", header_comment=("first_seen_utc", "ioc_id"),
                           skip_initial_space=True))
    assert items[0] == (["first_seen_utc", "ioc_id", "tags"], 3)
    assert isinstance(items[1], Row) and items[1].number == 5
    assert items[1].values == {"first_seen_utc": "2026-11-20 10:00:00", "ioc_id": "1",
                               "tags": "a,b"}
    assert len(items) == 2


# -- strict STIX, attribution and markings of what is produced ----------------------------------

@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_every_golden_object_is_strict_stix(golden: Path):
    """The reference library with its strict defaults (no custom properties) and
    stix2-validator take every object a format produces."""
    for obj in orjson.loads(golden.read_bytes())["objects"]:
        stix2.parse(obj)
        result = validate_instance(obj, _OPTIONS)
        assert result.is_valid, (obj["id"], [str(e) for e in result.errors])


_OBSERVABLES = frozenset({"ipv4-addr", "ipv6-addr", "domain-name", "url", "file",
                          "network-traffic", "autonomous-system", "email-addr", "mac-addr"})


@pytest.mark.parametrize("name", [n for n, p in PARSERS.items() if p.authors_objects])
def test_every_sdo_and_sro_is_attributed_and_marked(name: str, samples: dict[str, list[Sample]]):
    """Context objects (malware families, attack patterns, vulnerabilities) too: by the
    source, under the run's TLP (MISP: an event's or attribute's stricter TLP). Identities
    are the project's statements, public."""
    sample = samples[name][0]
    produced, _, _ = run(name, sample.path, tlp="green", settings=sample.settings)
    source = produced[0].obj["id"]
    creators = {p.obj["id"] for p in produced if p.obj["type"] == "identity"}
    for obj in (p.obj for p in produced if p.obj["type"] not in _OBSERVABLES):
        if obj["type"] in ("identity", "extension-definition"):
            assert obj["object_marking_refs"] == [TLP["clear"]]
            assert obj.get("created_by_ref", SERVER_IDENTITY) == SERVER_IDENTITY
            continue
        assert obj["created_by_ref"] == source or (
            obj["type"] == "report" and obj["created_by_ref"] in creators), obj
        assert (marking_rank(obj) or 0) >= model.GREEN, obj
        if not name.startswith("misp"):
            assert obj["object_marking_refs"] == [TLP["green"]], obj


def test_context_objects_are_per_source_and_marking():
    """One 'malware: emotet' per source and run markings: a name given only under AMBER is
    never a CLEAR object, and another source's naming is its own object."""
    amber, clear = Context("Feed A", "amber"), Context("Feed A", "clear")
    other = Context("Feed B", "amber")
    found = [build.malware(c, "Emotet") for c in (amber, clear, other)]
    assert len({o["id"] for o in found}) == 3
    assert [o["object_marking_refs"] for o in found] == [[TLP["amber"]], [TLP["clear"]],
                                                         [TLP["amber"]]]
    assert [o["created_by_ref"] for o in found] == [amber.source_id, clear.source_id,
                                                    other.source_id]
    assert build.malware(amber, " emotet ") == found[0]  # the same name: the same object
    _valid(found)
