"""Federation between two nodes of this project: an EU node and a US node, each a real server on
loopback with its own partners, collection and clearances, syncing both ways with the real
`taxii-exchange sync` command over several rounds.

They converge to the same object versions (each stored once, content unchanged), nothing
loops back, an incremental round moves nothing new, and the policy holds across the border:
the US node, cleared GREEN at the EU node, never receives an AMBER or RED object, nor (by
push) an H2 one unless the EU node's providers consented.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from exchange.cli import main
from exchange.config import load_settings
from exchange.markings import TLP, handling
from exchange.model import ALL, Query
from exchange.policy import partners
from exchange.store.sqlite import SQLiteStore
from tests.conftest import Env, LiveServer, start_server

TAXII = "application/taxii+json;version=2.1"
COLLECTION = "5ec1b0a1-0d4e-4c8f-9a1b-2c3d4e5f6a7b"
ROOT = "exchange"
T0 = "2026-11-01T00:00:00.000Z"


def identity(name: str) -> str:
    return f"identity--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://nodes.example/{name}')}"


def sid(kind: str, name: str) -> str:
    return f"{kind}--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://objects.example/{name}')}"


def indicator(name: str, author: str, tlp: str, modified: str = T0,
              **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": sid("indicator", name),
            "created": T0, "modified": modified, "created_by_ref": identity(author),
            "name": name, "pattern": "[domain-name:value = 'c2.example']",
            "pattern_type": "stix", "valid_from": T0, "object_marking_refs": [TLP[tlp]],
            **extra}


@dataclass
class Node:
    name: str
    directory: Path
    live: LiveServer
    passwords: dict[str, str]

    @property
    def config(self) -> str:
        return str(self.directory / "config.yaml")

    @property
    def collection_url(self) -> str:
        return f"{self.live.url}{ROOT}/collections/{COLLECTION}/"

    def push(self, partner: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
        answer = httpx.post(self.collection_url + "objects/", content=orjson.dumps(
            {"objects": objects}), auth=(partner, self.passwords[partner]),
            headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=30)
        assert answer.status_code == 202, answer.text
        status: dict[str, Any] = answer.json()
        assert status["status"] == "complete" and status["failure_count"] == 0, status
        return status

    def stored(self) -> dict[tuple[str, str], bytes]:
        """Every stored version (the server's own view), by (id, version)."""
        store = SQLiteStore(self.directory / "store.sqlite3")
        store.open()
        try:
            page = store.query(Query(collection=COLLECTION, limit=100_000, versions=(ALL,)),
                               with_body=True)
        finally:
            store.close()
        keys = [(e.id, e.version) for e in page.entries]
        assert len(keys) == len(set(keys)), "a version stored twice"
        return {(e.id, e.version): e.body for e in page.entries}

    def sync(self, *flags: str) -> int:
        return main(["--config", self.config, "sync", *flags])


def make_node(directory: Path, name: str, other: str, clearance_of_other: str,
              send_h2: bool = False) -> tuple[Path, dict[str, str]]:
    """A node's files: one collection, its analyst, and the other node as a partner (a peer)
    that may read and write the collection and relays the other analyst's identity."""
    (directory / "collections").mkdir(parents=True)
    (directory / "collections" / "exchange.yaml").write_text(yaml.safe_dump({
        "id": COLLECTION, "api_root": ROOT, "alias": "shared", "title": "Shared",
        "read": ["group:analysts", "group:peers"], "write": ["group:analysts", "group:peers"],
        "default_marking": "amber", "red_recipients": ["group:analysts"]}))
    (directory / "config.yaml").write_text(yaml.safe_dump({
        "store_path": "store.sqlite3", "partners_file": "partners.yaml",
        "peers_file": "peers.yaml", "collections_dir": "collections",
        "default_api_root": ROOT, "api_roots": {ROOT: {"title": f"{name} node"}}}))
    path = directory / "partners.yaml"
    secrets = {
        f"{name}-analyst": partners.add(path, f"{name}-analyst", "Analyst", ("analysts",),
                                        identity=identity(f"{name}-analyst"),
                                        clearance="red").password,
        f"{other}-node": partners.add(path, f"{other}-node", "The other node", ("peers",),
                                      identity=identity(f"{other}-node"),
                                      clearance=clearance_of_other,
                                      relay_for=(identity(f"{other}-analyst"),)).password,
    }
    return directory, secrets


@pytest.fixture
def nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Node, Node]]:
    """EU clears the US node for GREEN; the US clears the EU node for AMBER."""
    eu_dir, eu_secrets = make_node(tmp_path / "eu", "eu", "us", "green")
    us_dir, us_secrets = make_node(tmp_path / "us", "us", "eu", "amber")
    started = []
    try:
        for directory, secrets, name in ((eu_dir, eu_secrets, "eu"), (us_dir, us_secrets, "us")):
            settings = load_settings(directory / "config.yaml", environ={})
            started.append(Node(name, directory, start_server(Env(settings, {})), secrets))
        eu, us = started
        # Each node signs in at the other as the partner the other made for it.
        monkeypatch.setenv("EU_AT_US", us.passwords["eu-node"])
        monkeypatch.setenv("US_AT_EU", eu.passwords["us-node"])
        # The EU node names the US collection by its URL; the US node finds the EU one
        # through the EU node's discovery resource (relative API root URLs).
        where = {"eu": {"url": us.collection_url},
                 "us": {"url": f"{eu.live.url}taxii2/", "collection": COLLECTION}}
        for node, other, variable in ((eu, us, "EU_AT_US"), (us, eu, "US_AT_EU")):
            (node.directory / "peers.yaml").write_text(yaml.safe_dump({"peers": [{
                "name": f"{other.name}-node", **where[node.name],
                "local_collection": "shared", "direction": "both", "page_size": 3,
                "auth": {"user": f"{node.name}-node", "password_env": variable}}]}))
        yield eu, us
    finally:
        for node in started:
            node.live.stop()


def test_two_nodes_converge_without_loops_duplicates_or_leaks(nodes: tuple[Node, Node],
                                                              capsys):
    eu, us = nodes
    green_eu = [indicator(f"eu-green-{n}", "eu-analyst", "green") for n in range(5)]
    amber_eu = indicator("eu-amber", "eu-analyst", "amber")
    red_eu = indicator("eu-red", "eu-analyst", "red")
    versioned = indicator("eu-versioned", "eu-analyst", "green")
    eu.push("eu-analyst", [*green_eu, amber_eu, red_eu, versioned])
    green_us = [indicator(f"us-green-{n}", "us-analyst", "green") for n in range(4)]
    amber_us = indicator("us-amber", "us-analyst", "amber")
    us.push("us-analyst", [*green_us, amber_us])

    for _ in range(3):  # several rounds, both nodes, both directions
        assert eu.sync() == 0
        assert us.sync() == 0
    # A new version on the EU side travels too.
    newer = indicator("eu-versioned", "eu-analyst", "green", modified="2026-11-02T00:00:00.000Z")
    eu.push("eu-analyst", [newer])
    assert eu.sync("--direction", "push") == 0
    assert us.sync() == 0 and eu.sync() == 0

    at_eu, at_us = eu.stored(), us.stored()
    # Both hold every version both may see, once each, with the same content; the US node,
    # cleared GREEN at the EU node, holds no AMBER or RED object of the EU's, while the EU
    # node, cleared AMBER at the US node, holds the US AMBER one.
    shared = {_key(o) for o in [*green_eu, versioned, newer, *green_us, amber_us]}
    assert set(at_us) == shared
    assert set(at_eu) == shared | {_key(amber_eu), _key(red_eu)}
    for version in shared:
        assert orjson.loads(at_eu[version]) == orjson.loads(at_us[version])

    # An incremental round asks only for what is new: nothing moves, nothing comes again.
    capsys.readouterr()
    assert eu.sync() == 0 and us.sync() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["us-node pull: pulled 0, unchanged 0, failed 0",
                     "us-node push: pushed 0, unchanged 0, failed 0",
                     "eu-node pull: pulled 0, unchanged 0, failed 0",
                     "eu-node push: pushed 0, unchanged 0, failed 0"]
    assert eu.stored() == at_eu and us.stored() == at_us


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["id"], obj["modified"]


def test_push_never_sends_h2_without_consent(nodes: tuple[Node, Node], capsys):
    eu, us = nodes
    h2 = indicator("eu-h2", "eu-analyst", "green", extensions=handling(("H2",)))
    plain = indicator("eu-plain", "eu-analyst", "green")
    eu.push("eu-analyst", [h2, plain])
    assert eu.sync("--direction", "push") == 0
    assert _key(plain) in us.stored() and _key(h2) not in us.stored()
    capsys.readouterr()
    # The providers consent: the next objects under H2 may go.
    peers = yaml.safe_load((eu.directory / "peers.yaml").read_text())
    peers["peers"][0]["send_h2"] = True
    (eu.directory / "peers.yaml").write_text(yaml.safe_dump(peers))
    later = indicator("eu-h2-later", "eu-analyst", "green", extensions=handling(("H2",)))
    eu.push("eu-analyst", [later])
    assert eu.sync("--direction", "push") == 0
    assert _key(later) in us.stored()


def test_status_shows_each_peer_and_direction(nodes: tuple[Node, Node], capsys):
    eu, _ = nodes
    eu.push("eu-analyst", [indicator("eu-green", "eu-analyst", "green")])
    assert eu.sync() == 0
    capsys.readouterr()
    assert eu.sync("status") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["us-node pull", "us-node push"]
    assert all("last success 20" in line for line in lines)
    assert "last run moved 1" in lines[1]


def test_serve_syncs_each_peer_at_its_interval(nodes: tuple[Node, Node]):
    """A running server syncs its peers by itself (in the background of `serve`)."""
    eu, us = nodes
    peers = yaml.safe_load((eu.directory / "peers.yaml").read_text())
    peers["peers"][0]["interval_seconds"] = 1
    (eu.directory / "peers.yaml").write_text(yaml.safe_dump(peers))
    eu.live.stop()  # the peers file is read when the server starts
    eu.live = start_server(Env(load_settings(eu.directory / "config.yaml", environ={}), {}))
    news = indicator("us-news", "us-analyst", "green")
    us.push("us-analyst", [news])
    deadline = time.monotonic() + 15
    while _key(news) not in eu.stored():
        assert time.monotonic() < deadline, "the EU node did not pull by itself"
        time.sleep(0.2)
    mine = indicator("eu-news", "eu-analyst", "green")
    eu.push("eu-analyst", [mine])
    while _key(mine) not in us.stored():
        assert time.monotonic() < deadline, "the EU node did not push by itself"
        time.sleep(0.2)


def test_restart_sends_what_a_raised_clearance_now_allows(nodes: tuple[Node, Node]):
    eu, us = nodes
    amber = indicator("eu-amber-later", "eu-analyst", "amber")
    green = indicator("eu-green-after", "eu-analyst", "green")
    eu.push("eu-analyst", [amber, green])
    assert eu.sync("--direction", "push") == 0
    assert _key(green) in us.stored()
    assert _key(amber) not in us.stored()  # the US node is cleared GREEN at the EU node
    assert main(["partners", "--file", str(eu.directory / "partners.yaml"), "set", "us-node",
                 "--clearance", "amber"]) == 0
    assert eu.sync("--direction", "push") == 0
    assert _key(amber) not in us.stored()  # past the bookmark: not sent by a plain run
    assert eu.sync("--direction", "push", "--restart") == 0
    assert _key(amber) in us.stored()
