"""STIX bundles and envelopes: validated pass-through."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.fixtures import stix as gen
from tests.fixtures.common import Sample
from tests.normalizing import run

# -- STIX bundles -------------------------------------------------------------------------------

def test_bundle_objects_pass_through_unchanged(samples: dict[str, list[Sample]]):
    path = samples["stix-bundle"][0].path
    document = orjson.loads(path.read_bytes())
    produced, rejects, _ = run("stix-bundle", path)
    passed = [p.obj for p in produced if p.record is not None]
    assert passed == document["objects"][:samples["stix-bundle"][0].good]
    for (fragment, _), reject in zip(gen.HOSTILE_STIX, rejects, strict=True):
        assert fragment in reject.reason


@pytest.mark.parametrize("body, reason", [
    pytest.param(b"{not json", "not valid JSON", id="not JSON"),
    pytest.param(b'{"type": "report", "objects": []}', "must be a bundle", id="not a bundle"),
    pytest.param(b'[1, 2]', "no 'objects' list", id="a list"),
])
def test_bad_bundle_files_are_one_reject(tmp_path: Path, body: bytes, reason: str):
    path = tmp_path / "bad.json"
    path.write_bytes(body)
    _, rejects, _ = run("stix-bundle", path)
    assert len(rejects) == 1 and reason in rejects[0].reason


def test_a_conflicting_bundle_object_is_rejected_with_its_row(tmp_path: Path):
    """Pass-through objects are not this exchange's to re-version: a different object under
    a stored id and version is refused, and the reject names its file, row and raw JSON."""
    from exchange.ingest import Ingest, Writer
    from exchange.model import AMBER
    from exchange.normalize import PARSERS, Context
    from exchange.normalize.run import Run
    from exchange.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "store.sqlite3")
    store.open()
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    gen.write_bundle(first, hostile=False, count=3)
    document = orjson.loads(first.read_bytes())
    document["objects"][1]["name"] = "changed without a new version"
    second.write_bytes(orjson.dumps(document))
    lines: list[bytes] = []
    try:
        run = Run(Ingest(store), collection="c", writer=Writer(AMBER), rejects=lines.append)
        parser = PARSERS["stix-bundle"]()
        run.files(parser, [first], Context("Partner"))
        tally = run.files(parser, [second], Context("Partner"))
    finally:
        store.close()
    rejects = [orjson.loads(line) for line in lines]
    assert tally.rejected == 1 and len(rejects) == 1
    assert rejects[0]["source"] == str(second) and rejects[0]["row"] == 2
    assert "changed without a new version" in rejects[0]["raw"]
    assert "refused by ingest" in rejects[0]["reason"]
