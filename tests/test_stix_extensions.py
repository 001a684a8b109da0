"""The project's property extensions: published over HTTP with their schemas, stored beside
the objects an ingest run makes, and what makes every produced object pass `stix2.parse` with
its strict defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import stix2
from stix2validator import validate_instance
from taxii2client.v21 import Collection, as_pages

from exchange import stix_extensions as ext
from exchange.cli import main
from exchange.markings import HANDLING_EXTENSION, SERVER_IDENTITY
from exchange.schemas import problem
from exchange.stix import check_object
from tests.conftest import OPEN, Env, LiveServer, start_server
from tests.fixtures import shadowserver as reports

PROJECT_EXTENSIONS = [ext.DATA_SUBJECT, *ext.SOURCE_FIELDS.values()]


def test_every_definition_is_strict_stix_authored_by_the_project():
    for obj in ext.published():
        check_object(obj)
        stix2.parse(obj)
        result = validate_instance(obj)
        assert result.is_valid, [str(e) for e in result.errors]
        if obj["type"] == "extension-definition":
            assert obj["created_by_ref"] == SERVER_IDENTITY
            assert obj["extension_types"] == ["property-extension"]
            assert obj["schema"].endswith(f"/{ext.schema_name(obj['id']) or 'handling-extension'}"
                                          ".schema.json")


@pytest.mark.parametrize("entry, fits", [
    pytest.param(ext.subject("victim"), True, id="victim subject"),
    pytest.param(ext.subject("suspect-infrastructure"), True, id="suspect subject"),
    pytest.param({ext.DATA_SUBJECT: {"extension_type": "property-extension",
                                     "data_subject": "attacker"}}, False,
                 id="a subject outside the vocabulary"),
    pytest.param(ext.source_fields("shadowserver", {"src_geo": "XX", "ip": "192.0.2.1"}), True,
                 id="short and long field names"),
    pytest.param({ext.SOURCE_FIELDS["misp"]: {"extension_type": "property-extension",
                                              "fields": {"bad-key": 1}}}, False,
                 id="a field name STIX refuses"),
])
def test_extension_values_are_checked_by_their_schema(entry: dict[str, Any], fits: bool):
    [(extension_id, value)] = entry.items()
    name = ext.schema_name(extension_id)
    assert name is not None
    assert (problem(name, value) is None) is fits


@pytest.mark.parametrize("extension_id", [
    pytest.param(e, id=ext.schema_name(e)) for e in PROJECT_EXTENSIONS])
def test_the_server_publishes_each_definition_and_its_schema(live: LiveServer,
                                                            extension_id: str):
    listed = httpx.get(f"{live.url}extensions/").json()["objects"]
    assert {o["id"] for o in listed} >= {SERVER_IDENTITY, HANDLING_EXTENSION, extension_id}
    one = httpx.get(f"{live.url}extensions/{extension_id}/")
    assert one.status_code == 200
    assert one.headers["content-type"].startswith("application/stix+json")
    assert stix2.parse(one.json()).id == extension_id
    schema = httpx.get(f"{live.url}extensions/{extension_id}/schema/")
    assert schema.status_code == 200 and schema.json()["$id"] == one.json()["schema"]
    author = httpx.get(f"{live.url}extensions/{SERVER_IDENTITY}/")
    assert author.json()["identity_class"] == "system"


def test_an_ingest_run_stores_the_definitions_its_objects_use(
        env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A reader of the collection alone can resolve every extension on every object: the
    definitions and their author are stored with them, and every object passes the
    reference library's strict parse."""
    sample = reports.write_website(tmp_path / "compromised_website.csv")
    assert main(["--config", str(tmp_path / "env" / "config.yaml"), "ingest", "--format",
                 "shadowserver-compromised-website", "--collection", "open", "--tlp", "amber",
                 "--handling", "H1", str(sample.path)]) == 1  # the hostile rows
    capsys.readouterr()
    server = start_server(env)
    try:
        user, password = env.basic("alice")
        collection = Collection(server.collection(OPEN), user=user, password=password)
        pulled: list[dict[str, Any]] = []
        for envelope in as_pages(collection.get_objects, per_request=100):
            pulled += envelope.get("objects", [])
    finally:
        server.stop()
    stored = {o["id"]: o for o in pulled}
    used = {e for o in pulled for e in o.get("extensions", {}) if e.startswith("extension-")}
    assert used == {ext.DATA_SUBJECT, ext.SOURCE_FIELDS["shadowserver"], HANDLING_EXTENSION}
    for extension_id in used:
        assert stored[extension_id]["type"] == "extension-definition"
        assert stored[extension_id]["created_by_ref"] in stored
    for obj in pulled:
        assert not [name for name in obj if name.startswith("x_")], obj
        stix2.parse(orjson.loads(orjson.dumps(obj)))
