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
