"""Retention: versions older than their collection keeps them go, nothing younger ever does,
readers' `next` stays valid, a dry run deletes nothing, each deletion leaves an audit record,
and a running server purges by itself.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exchange import retention
from exchange.cli import main
from exchange.collections import load_collections
from exchange.config import load_settings
from exchange.ingest import Ingest, Writer, check_objects
from exchange.markings import TLP
from exchange.model import ALL, AMBER, Query
from exchange.stix import format_micros
from exchange.store.sqlite import SQLiteStore
from tests.conftest import ALICE, API_ROOT, Env, start_server

TAXII = "application/taxii+json;version=2.1"
KEPT = "44444444-4444-4444-8444-444444444444"
DAY = retention.DAY
T0 = "2026-11-01T00:00:00.000Z"


def indicator(n: int, tlp: str = "amber", modified: str = T0) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://kept.example/{n}')}",
            "created": T0, "modified": modified, "created_by_ref": ALICE,
            "name": f"kept {n}", "pattern": f"[domain-name:value = 'h{n}.kept.example']",
            "pattern_type": "stix", "valid_from": T0, "object_marking_refs": [TLP[tlp]]}


@pytest.fixture
def kept(env: Env) -> Env:
    """A collection keeping versions 30 days, TLP:RED ones 7 days, in the test's folder."""
    (env.settings.collections_dir / "kept.yaml").write_text(yaml.safe_dump({
        "id": KEPT, "api_root": API_ROOT, "alias": "kept", "title": "Kept 30 days",
        "read": ["group:rw"], "write": ["group:rw"], "default_marking": "amber",
        "red_recipients": ["group:rw"], "retention_days": 30,
        "retention_days_by_tlp": {"red": 7}}))
    return env


@pytest.fixture
def store(kept: Env) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(kept.settings.store_path)
    opened.open()
    yield opened
    opened.close()


def load(store: SQLiteStore, objects: list[dict[str, Any]]) -> None:
    checked = check_objects(objects, Writer(default_rank=AMBER))
    assert not checked.failures
    Ingest(store).load(collection=KEPT, checked=checked)


def held(store: SQLiteStore) -> list[tuple[str, str, int]]:
    page = store.query(Query(collection=KEPT, limit=10_000, versions=(ALL,)), with_body=False)
    return [(e.id, e.version, e.date_added) for e in page.entries]


def the_collection(env: Env) -> Any:
    return load_collections(env.settings).get(KEPT)


@pytest.mark.parametrize("k", [0, 1, 5, 9])
def test_only_versions_added_before_the_cutoff_go(kept: Env, store: SQLiteStore, k: int):
    """`now` is set so that the cutoff falls exactly on the k-th version's date_added: the
    versions before it go, it and everything after stay (never a version within retention)."""
    load(store, [indicator(n) for n in range(10)])
    before = held(store)
    now = before[k][2] + 30 * DAY
    [done] = retention.purge(store, [the_collection(kept)], now=now)
    assert done.count == k
    assert held(store) == before[k:]


def test_each_marking_keeps_its_own_period(kept: Env, store: SQLiteStore):
    load(store, [indicator(n, tlp="red" if n % 2 else "green") for n in range(6)])
    before = held(store)
    now = before[-1][2] + 8 * DAY  # past 7 days for everything, within 30 days
    retention.purge(store, [the_collection(kept)], now=now)
    assert held(store) == [row for n, row in enumerate(before) if n % 2 == 0]
    retention.purge(store, [the_collection(kept)], now=before[-1][2] + 31 * DAY)
    assert held(store) == []


def test_an_old_version_goes_and_the_newer_one_is_first_and_last(kept: Env,
                                                                    store: SQLiteStore):
    load(store, [indicator(1)])
    load(store, [indicator(1, modified="2026-11-02T00:00:00.000Z")])
    [old, new] = held(store)
    retention.purge(store, [the_collection(kept)], now=new[2] + 30 * DAY)
    assert held(store) == [new]
    for selector in ("first", "last"):
        page = store.query(Query(collection=KEPT, limit=10, versions=(selector,)),
                           with_body=False)
        assert [(e.id, e.version) for e in page.entries] == [new[:2]], selector


def test_a_reader_paging_through_keeps_its_place_while_a_purge_runs(kept: Env,
                                                                     store: SQLiteStore):
    load(store, [indicator(n) for n in range(10)])
    everything = held(store)
    live = start_server(kept)
    try:
        with httpx.Client(base_url=f"{live.root}collections/{KEPT}/objects/",
                          headers={"Accept": TAXII, **kept.bearer("alice")}) as http:
            first = http.get("", params={"limit": 3}).json()
            # The three read, and one not read yet, pass their retention.
            retention.purge(store, [the_collection(kept)], now=everything[4][2] + 30 * DAY)
            rest, cursor = [], first["next"]
            while cursor:
                page = http.get("", params={"limit": 3, "next": cursor})
                assert page.status_code == 200, page.text
                body = page.json()
                rest += [o["id"] for o in body.get("objects", [])]
                cursor = body.get("next")
    finally:
        live.stop()
    assert [o["id"] for o in first["objects"]] == [e[0] for e in everything[:3]]
    assert rest == [e[0] for e in everything[4:]]  # the one that went is not there, no other


def command(env: Env, *args: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["--config", str(env.settings.store_path.parent / "config.yaml"), *args])
    return code, out.getvalue().splitlines()


def test_the_command_dry_run_deletes_nothing_and_a_purge_leaves_audit_records(
        kept: Env, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch):
    # Stored 40 days ago: the store's clock is the one thing moved back.
    past = time.time() - 40 * 86_400
    monkeypatch.setattr("exchange.store.rules.now_micros", lambda: int(past * 1e6))
    load(store, [indicator(n) for n in range(3)])
    monkeypatch.undo()
    load(store, [indicator(n) for n in range(3, 5)])  # today: kept
    before = held(store)

    assert command(kept, "purge", "--dry-run", "--collection", "kept") == (
        0, [f"{API_ROOT}/kept: would delete 3 versions, added from "
            f"{format_micros(before[0][2])}"])
    assert held(store) == before
    code, lines = command(kept, "purge")
    assert code == 0 and lines[0].startswith(f"{API_ROOT}/kept: deleted 3 versions")
    assert held(store) == before[3:]
    assert command(kept, "purge")[1] == [f"{API_ROOT}/kept: deleted 0 versions"]

    out = store.path.replace("store.sqlite3", "audit.jsonl")
    assert command(kept, "audit", "export", "--out", out)[0] == 0
    [record] = [json.loads(line) for line in Path(out).read_text().splitlines()
                if json.loads(line)["kind"] == "purge"]
    assert record["collection"] == KEPT and record["by"] == "purge command"
    assert record["deleted"] == 3 and record["versions"] == [[i, v] for i, v, _ in before[:3]]
    assert command(kept, "audit", "verify")[0] == 0


def test_a_running_server_purges_at_its_interval(kept: Env, store: SQLiteStore,
                                                 monkeypatch: pytest.MonkeyPatch):
    past = time.time() - 40 * 86_400
    monkeypatch.setattr("exchange.store.rules.now_micros", lambda: int(past * 1e6))
    load(store, [indicator(n) for n in range(3)])
    monkeypatch.undo()
    load(store, [indicator(3)])
    config = kept.settings.store_path.parent / "config.yaml"
    document = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**document, "purge_interval_seconds": 0.2}))
    live = start_server(Env(load_settings(config, environ={}), kept.credentials))
    try:
        deadline = time.monotonic() + 10
        while len(held(store)) > 1:
            assert time.monotonic() < deadline, held(store)
            time.sleep(0.05)
    finally:
        live.stop()
    assert [i for i, _, _ in held(store)] == [indicator(3)["id"]]


def test_a_collection_without_retention_keeps_everything(kept: Env, store: SQLiteStore):
    collections = load_collections(kept.settings)
    others = [c for c in collections if c.id != KEPT]
    assert others and all(c.retention_days == (None,) * 5 for c in others)
    assert retention.purge(store, others, now=10**18) == []
