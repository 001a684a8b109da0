"""One bad record costs only itself, in every JSON format: a string that is not valid Unicode
(a lone UTF-16 surrogate escape, bytes that are not UTF-8) or one over the field limit is
rejected with the record that holds it, named by its place; the records around it in the
same MISP event, MISP feed, abuse.ch document or STIX bundle are converted and stored."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from exchange.cli import main
from exchange.model import ALL, Query
from exchange.normalize import jsondoc
from exchange.store.sqlite import SQLiteStore
from tests.conftest import API_ROOT, OPEN, Env, LiveServer
from tests.fixtures import abusech
from tests.fixtures import misp as gen
from tests.normalizing import preamble_only, run

MARK = b'"@BAD@"'  # where a builder puts the bad string in its document

# The bad string as it is written in the file, and how the reject reason ends.
BAD: dict[str, tuple[bytes, str]] = {
    "lone surrogate": (b'"note \\ud800 here"', "holds a lone UTF-16 surrogate (\\ud800)"),
    "low surrogate": (b'"\\udc00"', "holds a lone UTF-16 surrogate (\\udc00)"),
    "invalid UTF-8": (b'"caf\xe9 cr\xe8me"', "holds a byte that is not UTF-8 (0xE9)"),
    "oversized": (b'"' + b"x" * (jsondoc.MAX_FIELD + 1) + b'"',
                  f"is longer than {jsondoc.MAX_FIELD} characters"),
}

# A builder writes its document under `directory` with MARK in one record and answers
# (path to ingest, good values its indicators must match, (file name, row, reason start)).
Built = tuple[Path, set[str], tuple[str, int, str]]


def _ip_attributes(rng: random.Random, first: int, count: int) -> list[dict[str, Any]]:
    return [gen.attribute(rng, "ip-dst", f"203.0.113.{n}") for n in range(first, first + count)]


def _misp_event(directory: Path) -> Built:
    """Forty good attributes and one whose comment is bad, in one event."""
    rng = random.Random(14)
    attributes = _ip_attributes(rng, 1, 20)
    attributes.append(gen.attribute(rng, "domain", "bad-comment.example", comment="@BAD@"))
    attributes += _ip_attributes(rng, 21, 20)
    path = directory / "event.json"
    path.write_bytes(orjson.dumps(gen.event(rng, "Forty good", attributes)))
    return path, {f"203.0.113.{n}" for n in range(1, 41)}, ("event.json", 21, "field 'comment'")


def _misp_object(directory: Path) -> Built:
    """A MISP object with a bad field: its attribute is rejected, the event's are kept."""
    rng = random.Random(15)
    held = gen.attribute(rng, "domain", "held.example")
    obj = {"name": "domain-ip", "uuid": gen.new_uuid(rng), "comment": "@BAD@",
           "Attribute": [held]}
    document = gen.event(rng, "Object", _ip_attributes(rng, 1, 3), objects=[obj])
    path = directory / "event.json"
    path.write_bytes(orjson.dumps(document))
    return (path, {"203.0.113.1", "203.0.113.2", "203.0.113.3"},
            ("event.json", 4, "its MISP object's field 'comment'"))


def _misp_feed(directory: Path, *, bad_event: bool = False) -> Built:
    """Two events; the first holds a bad attribute (or, with `bad_event`, a bad title)."""
    rng = random.Random(16)
    first = _ip_attributes(rng, 1, 3)
    if not bad_event:
        first.insert(1, gen.attribute(rng, "ip-dst", "198.51.100.1", value_note="@BAD@"))
    events = [gen.event(rng, "@BAD@" if bad_event else "First", first),
              gen.event(rng, "Second", _ip_attributes(rng, 10, 2))]
    feed = directory / "feed"
    feed.mkdir()
    manifest = {}
    for document in events:
        key = document["Event"]["uuid"]
        manifest[key] = {"info": "summary", "timestamp": document["Event"]["timestamp"]}
        (feed / f"{key}.json").write_bytes(orjson.dumps(document))
    (feed / "manifest.json").write_bytes(orjson.dumps(manifest))
    name = f"{events[0]['Event']['uuid']}.json"
    good = {"203.0.113.10", "203.0.113.11"}
    if bad_event:
        return feed, good, (name, 0, "event field 'info'")
    return feed, good | {f"203.0.113.{n}" for n in range(1, 4)}, (name, 2, "field 'value_note'")


def _threatfox_json(directory: Path) -> Built:
    """A keyed export ({ioc_id: [entry]}) with a bad reporter in one entry."""
    entries = abusech.threatfox_entries(random.Random(17), 6)
    document: dict[str, Any] = {}
    for n, entry in enumerate(entries):
        item = abusech.threatfox_export_entry(entry)
        if n == 2:
            item["reporter"] = "@BAD@"
        document[entry["ioc_id"]] = [item]
    path = directory / "threatfox.json"
    path.write_bytes(orjson.dumps(document))
    good = {_ioc_value(e) for n, e in enumerate(entries) if n != 2}
    return path, good, ("threatfox.json", 3, f"field '{entries[2]['ioc_id']}[0].reporter'")


def _ioc_value(entry: dict[str, Any]) -> str:
    value = entry["ioc_value"]
    return value.rpartition(":")[0].strip("[]") if entry["ioc_type"] == "ip:port" else value


def _feodo_json(directory: Path) -> Built:
    """A list of C2 entries with a bad AS name in one."""
    entries = abusech.feodo_entries(random.Random(18), 5)
    document = [abusech.feodo_json_entry(e, n) for n, e in enumerate(entries)]
    document[4]["as_name"] = "@BAD@"
    path = directory / "feodo.json"
    path.write_bytes(orjson.dumps(document))
    return (path, {e["dst_ip"] for e in entries[:4]}, ("feodo.json", 5, "field 'as_name'"))


def _stix_bundle(directory: Path) -> Built:
    """A bundle whose second indicator has a bad description."""
    objects = [{
        "type": "indicator", "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
        "created": "2026-11-20T00:00:00.000Z", "modified": "2026-11-20T00:00:00.000Z",
        "pattern": f"[domain-name:value = 'c2-{n}.bad.example']", "pattern_type": "stix",
        "valid_from": "2026-11-20T00:00:00Z", "description": "@BAD@" if n == 1 else "fine",
    } for n in range(4)]
    path = directory / "bundle.json"
    path.write_bytes(orjson.dumps({"type": "bundle", "id": "bundle--6f0b5c44-4b5e-4c0e-9a46-"
                                   "1c2f3e4d5a6b", "objects": objects}))
    return (path, {f"c2-{n}.bad.example" for n in (0, 2, 3)},
            ("bundle.json", 2, "field 'description'"))


FORMATS: list[Any] = [
    pytest.param("misp-event", _misp_event, id="misp event: one attribute"),
    pytest.param("misp-event", _misp_object, id="misp event: one MISP object"),
    pytest.param("misp-feed", _misp_feed, id="misp feed: one attribute"),
    pytest.param("misp-feed", lambda d: _misp_feed(d, bad_event=True),
                 id="misp feed: one event's own field"),
    pytest.param("abusech-threatfox-json", _threatfox_json, id="threatfox keyed export"),
    pytest.param("abusech-feodo-json", _feodo_json, id="feodo list"),
    pytest.param("stix-bundle", _stix_bundle, id="stix bundle"),
]


def _plant(path: Path, bad: bytes) -> None:
    """Put the bad string where the builder marked it (in the one file that holds the mark)."""
    files = [p for p in ([path] if path.is_file() else path.iterdir())
             if MARK in p.read_bytes()]
    assert len(files) == 1
    files[0].write_bytes(files[0].read_bytes().replace(MARK, bad))


def _matched(objects: list[dict[str, Any]]) -> set[str]:
    """The values the indicators' patterns match (an address, a name, a URL or a hash)."""
    found = (re.search(r"(?:value|hashes\.\S+) = '([^']*)'", o["pattern"]) for o in objects
             if o["type"] == "indicator")
    return {m.group(1) for m in found if m}


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("name, build", FORMATS)
def test_one_bad_record_is_rejected_alone(tmp_path: Path, name: str,
                                          build: Callable[[Path], Built], kind: str):
    path, good, (file_name, row, place) = build(tmp_path)
    bad, ending = BAD[kind]
    _plant(path, bad)
    produced, rejects, tally = run(name, path)
    assert [(Path(r.source).name, r.row, r.reason) for r in rejects] == \
        [(file_name, row, f"{place} {ending}")]
    assert _matched([p.obj for p in produced]) == good
    # The rejects file stays valid UTF-8 JSON whatever the record held.
    line = orjson.dumps(rejects[0].as_json())
    assert orjson.loads(line)["row"] == row


def test_the_same_document_without_the_bad_string_loses_nothing(tmp_path: Path):
    path, good, _ = _misp_event(tmp_path)
    _plant(path, b'"an ordinary comment"')
    produced, rejects, _ = run("misp-event", path)
    assert not rejects
    assert _matched([p.obj for p in produced]) == good | {"bad-comment.example"}


@pytest.mark.parametrize("body, reason", [
    pytest.param(b'{"objects": [1, 2', "not valid JSON", id="truncated"),
    pytest.param(b'{"objects": [NaN]}', "not valid JSON", id="NaN is not JSON"),
    pytest.param(b'{"objects": "\\ud800"}', "no 'objects' list", id="the envelope itself"),
])
def test_a_document_that_is_not_json_is_still_one_reject(tmp_path: Path, body: bytes,
                                                         reason: str):
    path = tmp_path / "bundle.json"
    path.write_bytes(body)
    produced, rejects, _ = run("stix-bundle", path)
    assert [(r.row, reason in r.reason) for r in rejects] == [(0, True)]
    assert preamble_only(produced)  # what every file starts with, and nothing else


def test_an_ingest_run_stores_the_good_records_and_writes_the_reject(
        env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path, good, _ = _misp_event(tmp_path)
    _plant(path, BAD["lone surrogate"][0])
    rejects = tmp_path / "rejects.jsonl"
    assert main(["--config", str(tmp_path / "env" / "config.yaml"), "ingest", "--format",
                 "misp-event", "--collection", "open", "--rejects", str(rejects),
                 str(path)]) == 1  # something was rejected
    assert "rejected 1" in capsys.readouterr().out
    (line,) = rejects.read_bytes().splitlines()
    reject = orjson.loads(line)
    assert (reject["row"], reject["reason"]) == \
        (21, "field 'comment' holds a lone UTF-16 surrogate (\\ud800)")
    assert "\\ud800" in reject["raw"]
    assert _matched(stored(env)) == good


def stored(env: Env) -> list[dict[str, Any]]:
    """Every stored version in the open collection."""
    store = SQLiteStore(env.settings.store_path)
    store.open()
    try:
        page = store.query(Query(collection=OPEN, limit=5000, versions=(ALL,)), with_body=True)
    finally:
        store.close()
    return [orjson.loads(e.body) for e in page.entries]


# -- the TAXII push path --------------------------------------------------------------------------

TAXII = "application/taxii+json;version=2.1"


def test_a_pushed_lone_surrogate_is_a_taxii_400_for_the_body(live: LiveServer):
    """orjson refuses a lone surrogate escape while parsing, so the push is refused whole with
    a TAXII error (never a 500); the partner can find the object from the message."""
    good = {"type": "indicator", "spec_version": "2.1",
            "id": "indicator--00000000-0000-4000-8000-000000000001",
            "created": "2026-11-20T00:00:00.000Z", "modified": "2026-11-20T00:00:00.000Z",
            "pattern": "[domain-name:value = 'c2.bad.example']", "pattern_type": "stix",
            "valid_from": "2026-11-20T00:00:00Z", "description": "@BAD@"}
    body = json.dumps({"objects": [good]}).encode().replace(MARK, b'"\\ud800"')
    with httpx.Client(base_url=live.url, timeout=30) as client:
        response = client.post(f"{API_ROOT}/collections/{OPEN}/objects/", content=body,
                               headers={"Accept": TAXII, "Content-Type": TAXII,
                                        **live.env.bearer("alice")})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == TAXII
    error = response.json()
    assert error["http_status"] == "400"
    assert "not valid JSON" in error["description"] and "surrogate" in error["description"]


# -- indicator identity -------------------------------------------------------------------------

MD5 = "c3aa2403bf463678e52bc61c0efd93c3"
# One event's attributes, and another's saying the same things otherwise written, repeated and
# reordered; its URL attribute is edited later (a changed fact).
FIRST = [("md5", MD5, 0), ("filename|md5", f"invoice.exe|{MD5}", 0),
         ("domain", "straße.example", 0), ("url", "http://Bad.Example/gate.php", 0),
         ("ip-dst|port", "203.0.113.9|443", 0)]
AGAIN = [("ip-dst|port", "203.0.113.9|443", 0), ("domain", "STRAßE.Example.", 0),
         ("filename|md5", f"rechnung.exe|{MD5.upper()}", 0), ("domain", "straße.example", 0),
         ("url", "http://bad.example/gate.php", 600), ("md5", MD5, 0)]
PATTERNS = {
    f"[file:hashes.MD5 = '{MD5}']",
    "[domain-name:value = 'xn--strae-oqa.example']",
    "[url:value = 'http://bad.example/gate.php']",
    "[ipv4-addr:value = '203.0.113.9']",  # MISP keeps the port of ip|port beside it
}


def _facts(path: Path, seed: int, facts: list[tuple[str, str, int]]) -> Path:
    rng = random.Random(seed)
    attributes = [gen.attribute(rng, kind, value, at=at) for kind, value, at in facts]
    path.write_bytes(orjson.dumps(gen.event(rng, f"Facts {seed}", attributes)))
    return path


@pytest.mark.parametrize("order", [
    pytest.param(("first", "again"), id="first then again"),
    pytest.param(("again", "first"), id="again then first"),
    pytest.param(("first", "first"), id="the same file twice"),
])
def test_one_indicator_per_source_and_pattern_across_runs(env: Env, tmp_path: Path,
                                                          order: tuple[str, str]):
    files = {"first": _facts(tmp_path / "first.json", 1, FIRST),
             "again": _facts(tmp_path / "again.json", 2, AGAIN)}
    config = str(tmp_path / "env" / "config.yaml")
    for name in order:
        assert main(["--config", config, "ingest", "--format", "misp-event", "--collection",
                     "open", str(files[name])]) == 0
    indicators = [o for o in stored(env) if o["type"] == "indicator"]
    ids_by_pattern: dict[str, set[str]] = {}
    for indicator in indicators:
        ids_by_pattern.setdefault(indicator["pattern"], set()).add(indicator["id"])
    assert set(ids_by_pattern) == PATTERNS
    assert all(len(ids) == 1 for ids in ids_by_pattern.values()), ids_by_pattern
    # The ids do not depend on which file came first: they are those of the first file alone.
    alone = {p.obj["id"] for p in run("misp-event", files["first"])[0]
             if p.obj["type"] == "indicator"}
    assert {o["id"] for o in indicators} == alone
    # The later edit of the URL is a new version of its one indicator.
    url = next(iter(ids_by_pattern["[url:value = 'http://bad.example/gate.php']"]))
    versions = sorted(o["modified"] for o in indicators if o["id"] == url)
    assert len(versions) == (2 if "again" in order else 1)
    # Every version keeps the `created` of the first stored (STIX 2.1 forbids changing it),
    # whichever file came first, and is modified no earlier than it.
    everything = stored(env)
    for ident in {o["id"] for o in everything if "created" in o}:
        versions_of = [o for o in everything if o["id"] == ident]
        assert len({o["created"] for o in versions_of}) == 1, versions_of
        assert all(o["modified"] >= o["created"] for o in versions_of)
