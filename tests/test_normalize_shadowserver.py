"""Shadowserver reports: each report type's modelling and its hostile rows."""

from __future__ import annotations

from pathlib import Path

from exchange.normalize import values as v
from tests.fixtures import shadowserver as gen
from tests.fixtures.common import Sample
from tests.normalizing import run

# -- Shadowserver event4_sinkhole ---------------------------------------------------------------

SINKHOLE = "shadowserver-event4-sinkhole"


def test_sinkhole_rows_become_observed_data_and_sightings(samples: dict[str, list[Sample]]):
    produced, rejects, _ = run(SINKHOLE, samples[SINKHOLE][0].path)
    objects = [p.obj for p in produced]
    by_id = {o["id"]: o for o in objects}
    source = objects[0]["id"]
    assert not [o for o in objects if o["type"] == "indicator"]  # never a victim indicator
    sightings = [o for o in objects if o["type"] == "sighting"]
    assert len(sightings) == samples[SINKHOLE][0].good
    for sighting in sightings:
        assert sighting["where_sighted_refs"] == [source]
        assert by_id[sighting["sighting_of_ref"]]["type"] == "malware"
        observed = by_id[sighting["observed_data_refs"][0]]
        assert observed["x_exchange_data_subject"] == "victim"
        assert observed["x_shadowserver_extra"]["x_custom_note"].startswith("extra-")
        assert observed["x_shadowserver_extra"]["src_hostname"].endswith(".victim.example")
        traffic = next(by_id[r] for r in observed["object_refs"]
                       if r.startswith("network-traffic--"))
        assert by_id[traffic["src_ref"]]["type"] in ("ipv4-addr", "ipv6-addr")
        assert observed["first_observed"] == sighting["created"]
        assert traffic["start"] == v.observable_timestamp(sighting["created"])
        assert traffic["protocols"][0] in ("ipv4", "ipv6")
    reasons = [r.reason for r in rejects]
    for (fragment, _), reason in zip(gen.HOSTILE_SINKHOLE, reasons, strict=True):
        assert fragment in reason


def test_sinkhole_header_without_required_columns_is_one_reject(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("time,ip\n2026-11-20 00:00:00,192.0.2.1\n")
    produced, rejects, _ = run(SINKHOLE, path)
    assert [r.reason for r in rejects] == ["header lacks required columns: timestamp, src_ip"]
    assert [p.obj["type"] for p in produced] == ["identity"]


def test_sinkhole_wrong_encoding_and_empty_files_do_not_crash(tmp_path: Path):
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(gen.SINKHOLE_HEADER.encode("utf-16"))
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "header" in run(SINKHOLE, utf16)[1][0].reason
    assert run(SINKHOLE, empty)[1][0].reason == "empty file: no header"
