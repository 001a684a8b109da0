"""Federation with peers that are not this project, and with runs that go wrong.

A node of this project syncs, through the real `taxii-exchange sync` command or a
`Federation` built as that command builds it, with real servers on loopback:

- medallion 3.0.0 (a subprocess: Flask, memory backend, HTTP Basic). A pull takes every
  object version seeded by several POSTs exactly once, content unchanged, whatever the page
  size: medallion gives every object of one POST the same date_added, so a small page ends
  inside such a group. It also survives medallion forgetting a `next` (after its session
  timeout), and resumes from the bookmark then. A second run pulls nothing; a later POST is
  pulled by the next run; every `next` carries a `limit` (medallion answers 500 without
  one). An object whose created_by_ref the peer may not relay is a failure of the run
  (exit 1); the others are stored. A push sends only what the peer's partner (cleared
  GREEN) may see, in envelopes under medallion's max_content_length; pushing the same
  objects again is counted unchanged, not failed (medallion refuses duplicates), for every
  kind of object.
- a scripted fake TAXII server. 5xx, 429 with Retry-After, a dropped connection and a page
  wholly inside one date_added (without `next`) are survived with nothing lost. Garbage, a
  wrong content type, a non-object answer, a page without its date header and a 4xx end
  the run with a clear error (exit 1), the bookmark where it was, and nothing is lost once
  the peer answers properly again. A peer that is down leaves an error and nothing else.
- a second node of this project. A `sync` killed with SIGKILL in the middle of a pull of
  thousands of objects loses nothing: the next run stores every object exactly once and
  leaves the bookmark at the peer's last date_added. The peer's server killed with SIGKILL
  in the middle of a pull ends the run with a clear error and a bookmark no further than
  what was stored; restarted, it gives the rest to the next run, each object once.

`sync status` names the last success and the last error per peer and direction.
All data is synthetic (documentation address ranges, `.example` domains).
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
import requests
import yaml

from exchange.cli import main
from exchange.collections import load_collections
from exchange.config import load_settings
from exchange.federation.peers import Peer, load_peers
from exchange.federation.remote import Pushed, Remote
from exchange.federation.sync import Federation, Run
from exchange.ingest import Ingest, check_objects
from exchange.markings import TLP, handling
from exchange.model import ALL, Query
from exchange.policy import partners
from exchange.policy.gate import Gate
from exchange.stix import format_micros, timestamp_micros
from exchange.store.sqlite import SQLiteStore
from tests.conftest import Env, free_port, start_server

TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
ROOT = "exchange"
LOCAL = "7d1c2a8e-4b1f-4e55-9a3c-0f6e1d2c3b4a"  # the node's collection
REMOTE = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"  # the peer's collection
MEDALLION_ROOT = "fed"
MAX_CONTENT = 8192  # medallion's max_content_length: a push needs several envelopes
T0 = "2026-11-01T00:00:00.000Z"


def identity(name: str) -> str:
    return f"identity--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://federation.example/{name}')}"


ANALYST = identity("analyst")  # the node's own analyst
ACME = identity("acme-cert")  # a source every peer here relays
STRANGER = identity("stranger")  # relayed by nobody


def sid(kind: str, name: str) -> str:
    return f"{kind}--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://objects.example/{name}')}"


def indicator(name: str, author: str | None = ACME, tlp: str | None = "green",
              modified: str = T0, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator", "spec_version": "2.1", "id": sid("indicator", name),
        "created": T0, "modified": modified, "name": name,
        "pattern": f"[domain-name:value = '{name}.example']", "pattern_type": "stix",
        "valid_from": T0}
    if author:
        obj["created_by_ref"] = author
    if tlp:
        obj["object_marking_refs"] = [TLP[tlp]]
    return {**obj, **extra}


def relationship(name: str, source: str, target: str, author: str = ACME,
                 tlp: str = "green") -> dict[str, Any]:
    return {"type": "relationship", "spec_version": "2.1", "id": sid("relationship", name),
            "created": T0, "modified": T0, "created_by_ref": author,
            "relationship_type": "indicates", "source_ref": source, "target_ref": target,
            "object_marking_refs": [TLP[tlp]]}


def address(n: int, tlp: str = "green") -> dict[str, Any]:
    value = f"198.51.100.{n}"
    return {"type": "ipv4-addr", "spec_version": "2.1", "id": sid("ipv4-addr", value),
            "value": value, "object_marking_refs": [TLP[tlp]]}


def statement(n: int) -> dict[str, Any]:
    """A marking definition: versioned by `created` alone."""
    return {"type": "marking-definition", "spec_version": "2.1",
            "id": sid("marking-definition", f"statement-{n}"), "created": T0,
            "created_by_ref": ANALYST, "definition_type": "statement",
            "definition": {"statement": f"Copyright 2026 Example {n}"},
            "object_marking_refs": [TLP["green"]]}


def key(obj: dict[str, Any]) -> tuple[str, str]:
    """(id, version) as a store and a TAXII server key a version; '' for an SCO."""
    return obj["id"], obj.get("modified", obj.get("created", ""))


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {key(o): o for o in objects}


# -- a node of this project ------------------------------------------------------------------
@dataclass
class Node:
    directory: Path

    @property
    def config(self) -> str:
        return str(self.directory / "config.yaml")

    def sync(self, *flags: str) -> tuple[int, list[str]]:
        """The real command in this process: its exit code and its lines."""
        out = io.StringIO()
        with redirect_stdout(out):
            code = main(["--config", self.config, "sync", *flags])
        return code, out.getvalue().splitlines()

    @contextmanager
    def federation(self, remote: Callable[[Peer], Remote] = Remote) -> Iterator[Federation]:
        """A Federation built as `taxii-exchange sync` builds it, with its own remotes."""
        settings = load_settings(self.config, environ={})
        store = SQLiteStore(settings.store_path)
        store.open()
        try:
            collections = load_collections(settings)
            yield Federation(store, Gate(settings, collections, store), Ingest(store),
                             collections, partners.load(settings.partners_file).get,
                             load_peers(settings.peers_file), remote=remote)
        finally:
            store.close()

    def run(self, peer: str, direction: str, **remote: Any) -> Run:
        """One sync with quick retries (`remote`: Remote's keywords)."""
        options = {"retries": 2, "backoff_seconds": 0.05, **remote}
        with self.federation(lambda p: Remote(p, **options)) as federation:
            return federation.sync(federation.peers[peer], direction)

    @contextmanager
    def store(self) -> Iterator[SQLiteStore]:
        store = SQLiteStore(self.directory / "store.sqlite3")
        store.open()
        try:
            yield store
        finally:
            store.close()

    def stored(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every stored version, parsed; no version may be there twice."""
        with self.store() as store:
            page = store.query(Query(collection=LOCAL, limit=100_000, versions=(ALL,)),
                               with_body=True)
        objects = [orjson.loads(e.body) for e in page.entries]
        assert len(objects) == len(by_key(objects)), "a version is stored twice"
        return by_key(objects)

    def state(self, peer: str, direction: str) -> dict[str, Any]:
        with self.store() as store:
            return store.get_state(f"sync:{peer}:{direction}") or {}

    def load(self, objects: list[dict[str, Any]], partner: str = "analyst") -> None:
        """Store objects as this partner's pushes would be (the one write path)."""
        settings = load_settings(self.config, environ={})
        with self.store() as store:
            collections = load_collections(settings)
            gate = Gate(settings, collections, store)
            writer = gate.writer(partners.load(settings.partners_file)[partner],
                                 collections.named("shared"))
            checked = check_objects(objects, writer)
            assert not checked.failures, checked.failures
            Ingest(store).load(collection=LOCAL, checked=checked)

    def peers(self, *entries: dict[str, Any]) -> None:
        (self.directory / "peers.yaml").write_text(yaml.safe_dump({"peers": list(entries)}))


def make_node(directory: Path, *peers: str, clearance: str = "green",
              relays: tuple[str, ...] = (ACME,)) -> Node:
    """A node with one collection, its analyst, and each peer as a partner (group `peers`)
    with this clearance, relaying these identities. No secrets: nobody signs in here."""
    (directory / "collections").mkdir(parents=True)
    (directory / "collections" / "shared.yaml").write_text(yaml.safe_dump({
        "id": LOCAL, "api_root": ROOT, "alias": "shared", "title": "Shared",
        "read": ["group:analysts", "group:peers"], "write": ["group:analysts", "group:peers"],
        "default_marking": "amber", "red_recipients": ["group:analysts"]}))
    (directory / "config.yaml").write_text(yaml.safe_dump({
        "store_path": "store.sqlite3", "partners_file": "partners.yaml",
        "peers_file": "peers.yaml", "collections_dir": "collections",
        "default_api_root": ROOT, "api_roots": {ROOT: {"title": "Node"}}}))
    known = {"analyst": partners.Partner(id="analyst", name="Analyst", identity=ANALYST,
                                         groups=("analysts",),
                                         clearance=partners.TLP_RANKS["red"])}
    for name in peers:
        known[name] = partners.Partner(
            id=name, name=name, identity=identity(name), groups=("peers",),
            clearance=partners.TLP_RANKS[clearance], relay_for=frozenset(relays))
    partners.save(directory / "partners.yaml", known)
    return Node(directory)


# -- medallion 3.0.0 --------------------------------------------------------------------------
@dataclass
class Medallion:
    base: str
    password: str
    log: Path
    proc: subprocess.Popen[bytes]
    user: str = "exchange-node"

    @property
    def collection_url(self) -> str:
        return f"{self.base}/{MEDALLION_ROOT}/collections/{REMOTE}/"

    def post(self, objects: list[dict[str, Any]]) -> dict[str, Any]:
        answer = httpx.post(self.collection_url + "objects/",
                            content=orjson.dumps({"objects": objects}),
                            auth=(self.user, self.password), timeout=30,
                            headers={"Accept": TAXII, "Content-Type": TAXII})
        assert answer.status_code == 202, answer.text
        status: dict[str, Any] = answer.json()
        assert status["success_count"] == len(objects), status
        return status

    def held(self) -> dict[tuple[str, str], dict[str, Any]]:
        answer = httpx.get(self.collection_url + "objects/", auth=(self.user, self.password),
                           params={"limit": 1000, "match[version]": "all"},
                           headers={"Accept": TAXII}, timeout=30)
        envelope = answer.json()
        assert answer.status_code == 200 and not envelope.get("more"), answer.text
        objects = envelope.get("objects", [])
        assert len(objects) == len(by_key(objects)), "medallion holds a version twice"
        return by_key(objects)

    def requests(self) -> list[str]:
        """Its access log: 'GET /path?query HTTP/1.1" 200' per request."""
        return re.findall(r'"((?:GET|POST) \S+ HTTP/1\.1" \d+)',
                          self.log.read_text(errors="replace"))

    def peer(self, direction: str, **entry: Any) -> dict[str, Any]:
        """A peers.yaml entry for it: its collection URL, HTTP Basic from the environment."""
        return {"name": "medallion", "url": self.collection_url, "local_collection": "shared",
                "direction": direction,
                "auth": {"user": self.user, "password_env": "MEDALLION_PASSWORD"}, **entry}


@pytest.fixture
def start_medallion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                    ) -> Iterator[Callable[..., Medallion]]:
    """Start medallion (its own runner, as tests/bench/bench_taxii.py does) on a free port;
    `session_timeout` is how long its `next` tokens live (its default: 30 s)."""
    started: list[Medallion] = []

    def start(session_timeout: float = 30) -> Medallion:
        directory = tmp_path / f"medallion-{len(started)}"
        directory.mkdir()
        port, password = free_port(), uuid.uuid4().hex
        base = f"http://127.0.0.1:{port}"
        (directory / "data.json").write_text(json.dumps({
            "/discovery": {"title": "medallion", "description": "peer", "default":
                           f"{base}/{MEDALLION_ROOT}/",
                           "api_roots": [f"{base}/{MEDALLION_ROOT}/"]},
            MEDALLION_ROOT: {
                "information": {"title": "Peer root", "description": "peer",
                                "versions": [TAXII], "max_content_length": MAX_CONTENT},
                "status": [],
                "collections": [{"id": REMOTE, "title": "Shared", "description": "peer",
                                 "can_read": True, "can_write": True, "media_types": [STIX],
                                 "objects": [], "manifest": []}]}}))
        (directory / "config.json").write_text(json.dumps({
            "backend": {"module": "medallion.backends.memory_backend",
                        "module_class": "MemoryBackend",
                        "filename": str(directory / "data.json"),
                        "session_timeout": session_timeout,
                        "check_interval": min(10.0, session_timeout / 5)},
            "users": {"exchange-node": password}, "taxii": {"max_page_size": 1000}}))
        log = directory / "medallion.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "medallion.scripts.run", "--host", "127.0.0.1",
                 "--port", str(port), "--log-level", "WARN", str(directory / "config.json")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        medallion = Medallion(base, password, log, proc)
        started.append(medallion)
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/taxii2/", auth=("exchange-node", password),
                             headers={"Accept": TAXII}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "medallion did not start"
            time.sleep(0.05)
        monkeypatch.setenv("MEDALLION_PASSWORD", password)
        return medallion

    try:
        yield start
    finally:
        for medallion in started:
            medallion.proc.terminate()
            medallion.proc.wait(timeout=10)


@pytest.fixture
def medallion(start_medallion: Callable[..., Medallion]) -> Medallion:
    return start_medallion()


def medallion_posts() -> list[list[dict[str, Any]]]:
    """Three POSTs (12, 12 and 5 objects; each POST's objects share one date_added in
    medallion): several types, markings, an author's identity, the peer's own identity,
    three versions of one indicator with the middle one arriving last."""
    malware: dict[str, Any] = {
        "type": "malware", "spec_version": "2.1", "id": sid("malware", "pull-bot"),
        "created": T0, "modified": T0, "created_by_ref": ACME, "name": "pull-bot",
        "is_family": True, "object_marking_refs": [TLP["amber"]]}
    acme: dict[str, Any] = {
        "type": "identity", "spec_version": "2.1", "id": ACME, "created": T0, "modified": T0,
        "created_by_ref": ACME, "name": "ACME CERT", "identity_class": "organization",
        "object_marking_refs": [TLP["clear"]]}
    own: dict[str, Any] = {
        "type": "identity", "spec_version": "2.1", "id": identity("medallion"), "created": T0,
        "modified": T0, "name": "The peer", "identity_class": "organization"}
    marked = indicator("pull-granular", granular_markings=[
        {"marking_ref": TLP["amber"], "selectors": ["description"]}],
        description="seen at 203.0.113.9")
    first = [acme, malware, relationship("pull-indicates", sid("indicator", "pull-0"),
                                         malware["id"]),
             indicator("pull-versioned"), marked, indicator("pull-red", tlp="red"),
             indicator("pull-strict", tlp="amber+strict"), indicator("pull-unmarked", tlp=None),
             *(indicator(f"pull-{n}", tlp=("green", "amber", "clear")[n % 3])
               for n in range(4))]
    second = [indicator("pull-versioned", modified="2026-11-03T00:00:00.000Z"),
              *(indicator(f"pull-{n}") for n in range(4, 15))]
    third = [indicator("pull-versioned", modified="2026-11-02T00:00:00.000Z"), own,
             *(indicator(f"pull-{n}") for n in range(15, 18))]
    return [first, second, third]


# -- pull from medallion ----------------------------------------------------------------------
@pytest.mark.parametrize("page_size", [
    pytest.param(5, id="pages-end-inside-a-post"),
    pytest.param(12, id="pages-end-with-a-post"),
    pytest.param(1000, id="one-page"),
])
def test_pull_from_medallion_takes_every_version_once(tmp_path: Path, medallion: Medallion,
                                                      page_size: int) -> None:
    node = make_node(tmp_path / "node", "medallion")
    node.peers(medallion.peer("pull", page_size=page_size))
    posts = medallion_posts()
    statuses = [medallion.post(objects) for objects in posts]
    seeded = by_key([o for objects in posts for o in objects])
    assert len(seeded) == 29

    assert node.sync() == (0, ["medallion pull: pulled 29, unchanged 0, failed 0"])
    assert node.stored() == seeded  # every version, once, exactly as medallion holds it
    assert node.state("medallion", "pull")["bookmark"] == statuses[-1]["request_timestamp"]
    # Nothing new: nothing moves.
    assert node.sync() == (0, ["medallion pull: pulled 0, unchanged 0, failed 0"])
    later = [indicator(f"pull-later-{n}") for n in range(3)]
    medallion.post(later)
    assert node.sync() == (0, ["medallion pull: pulled 3, unchanged 0, failed 0"])
    assert node.stored() == seeded | by_key(later)

    # medallion answers 500 to a `next` without `limit`: each one carried its limit.
    followed = [r for r in medallion.requests() if "next=" in r]
    assert bool(followed) == (page_size < 29)
    assert all("limit=" in r and r.endswith("200") for r in followed), followed


def test_pull_from_medallion_resumes_from_the_bookmark_when_next_expires(
        tmp_path: Path, start_medallion: Callable[..., Medallion]) -> None:
    """medallion drops a `next` session a set time after the query began (30 s by default,
    1 s here) and answers 400 to it; the pull here takes longer than that before its
    fourth page."""
    medallion = start_medallion(session_timeout=1)
    node = make_node(tmp_path / "node", "medallion")
    node.peers(medallion.peer("pull", page_size=5))
    posts = medallion_posts()
    for objects in posts:
        medallion.post(objects)
    asked: list[dict[str, Any]] = []
    bookmarks: list[Any] = []

    with node.federation() as federation:
        class SlowAfterThreePages(Remote):
            def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
                params = dict(kwargs.get("params") or {})
                if "next" in params and sum("next" in a for a in asked) == 2:
                    bookmarks.append(federation.store.get_state("sync:medallion:pull"))
                    time.sleep(1.7)  # the session is gone: medallion checks every 0.2 s
                asked.append(params)
                return super()._request(method, url, **kwargs)

        federation.remote = SlowAfterThreePages
        run = federation.sync(federation.peers["medallion"], "pull")

    assert (run.error, run.failed) == ("", 0)
    assert node.stored() == by_key([o for objects in posts for o in objects])
    refused = [r for r in medallion.requests() if "next=" in r and r.endswith("400")]
    assert len(refused) == 1, medallion.requests()
    # The README: "an expired `next` falls back to the bookmark".
    where = bookmarks[0]["bookmark"]
    expired_at = [i for i, a in enumerate(asked) if "next" in a][2]
    after = asked[expired_at + 1]
    assert "next" not in after and after.get("added_after") == where, (
        f"the `next` expired once {where=} was stored; the pull then asked {after}; "
        f"{run.unchanged} versions came again; medallion's log: {medallion.requests()}")


def test_pull_from_medallion_refuses_authors_the_peer_may_not_relay(
        tmp_path: Path, medallion: Medallion) -> None:
    table = [  # (what, object, stored?)
        ("relayed author", indicator("prov-relayed"), True),
        ("the peer's own identity as author", indicator("prov-own", identity("medallion")),
         True),
        ("an SCO (no author)", address(7), True),
        ("a stranger's indicator", indicator("prov-stranger", STRANGER), False),
        ("a stranger's relationship", relationship("prov-rel", sid("indicator", "a"),
                                                   sid("indicator", "b"), STRANGER), False),
        ("no author at all", indicator("prov-anonymous", None), False),
    ]
    node = make_node(tmp_path / "node", "medallion")
    node.peers(medallion.peer("pull", page_size=2))
    medallion.post([o for _, o, _ in table])

    assert node.sync() == (1, ["medallion pull: pulled 3, unchanged 0, failed 3"])
    assert node.stored() == by_key([o for _, o, stored in table if stored])
    failures = {f["id"]: f["message"] for f in node.state("medallion", "pull")["last"]["failures"]}
    refused = {o["id"]: what for what, o, stored in table if not stored}
    assert failures.keys() == refused.keys(), [refused.get(i, i) for i in failures]
    assert all("created_by_ref" in message for message in failures.values()), failures


# -- push to medallion ------------------------------------------------------------------------
def push_table() -> list[tuple[str, dict[str, Any], str, bool]]:
    """(what, object, the partner who stored it here, sent to the peer cleared GREEN?)"""
    amber = indicator("push-amber", ANALYST, "amber")
    return [
        *((f"green #{n}", indicator(f"push-green-{n}", ANALYST), "analyst", True)
          for n in range(24)),
        ("clear", indicator("push-clear", ANALYST, "clear"), "analyst", True),
        ("green address", address(10), "analyst", True),
        ("amber", amber, "analyst", False),
        ("amber+strict", indicator("push-strict", ANALYST, "amber+strict"), "analyst", False),
        ("red", indicator("push-red", ANALYST, "red"), "analyst", False),
        ("unmarked (collection default amber)", indicator("push-unmarked", ANALYST, None),
         "analyst", False),
        ("green, referencing the amber one",
         relationship("push-ref", amber["id"], sid("malware", "x"), ANALYST), "analyst",
         False),
        ("green under H2", indicator("push-h2", ANALYST, extensions=handling(("H2",))),
         "analyst", False),
        ("green, stored here by the peer", indicator("push-from-peer"), "medallion", False),
    ]


def test_push_to_medallion_sends_only_what_the_peer_may_see(
        tmp_path: Path, medallion: Medallion) -> None:
    node = make_node(tmp_path / "node", "medallion", clearance="green")
    # Through its discovery resource; one page of everything (the default 1000), so only
    # max_content_length splits what is sent.
    node.peers(medallion.peer("push", url=f"{medallion.base}/taxii2/", collection=REMOTE))
    table = push_table()
    for partner in ("analyst", "medallion"):
        node.load([o for _, o, who, _ in table if who == partner], partner)
    envelopes: list[bytes] = []

    class Recording(Remote):
        def push(self, body: bytes) -> Pushed:
            envelopes.append(body)
            return super().push(body)

    with node.federation(Recording) as federation:
        run = federation.sync(federation.peers["medallion"], "push")

    sent = by_key([o for _, o, _, send in table if send])
    assert (run.error, run.failed, run.objects) == ("", 0, len(sent))
    held = medallion.held()
    leaked = [what for what, o, _, send in table if not send and key(o) in held]
    assert not leaked
    assert held == sent  # content unchanged
    sizes = [len(e) for e in envelopes]
    assert sum(sizes) > MAX_CONTENT and max(sizes) <= MAX_CONTENT, sizes
    pushed = [o["id"] for e in envelopes for o in orjson.loads(e)["objects"]]
    assert sorted(pushed) == sorted(i for i, _ in sent)  # each sent once


@pytest.mark.parametrize("make", [
    pytest.param(lambda n: indicator(f"again-{n}", ANALYST), id="indicator"),
    pytest.param(lambda n: relationship(f"again-{n}", sid("indicator", f"a{n}"),
                                        sid("malware", f"m{n}"), ANALYST), id="relationship"),
    pytest.param(statement, id="marking-definition"),
    pytest.param(address, id="ipv4-addr"),
])
def test_push_again_to_medallion_is_unchanged_not_failed(
        tmp_path: Path, medallion: Medallion,
        make: Callable[[int], dict[str, Any]]) -> None:
    node = make_node(tmp_path / "node", "medallion")
    node.peers(medallion.peer("push"))
    objects = [make(n) for n in range(3)]
    node.load(objects)
    assert node.sync() == (0, ["medallion push: pushed 3, unchanged 0, failed 0"])
    assert node.sync() == (0, ["medallion push: pushed 0, unchanged 0, failed 0"])

    code, lines = node.sync("--restart")  # the push bookmark forgotten: all of it again
    assert (code, lines) == (0, ["medallion push: pushed 0, unchanged 3, failed 0"]), (
        lines, node.state("medallion", "push")["last"]["failures"], medallion.requests()[-7:])
    assert medallion.held() == by_key(objects)


# -- odd peers: a scripted fake ---------------------------------------------------------------
@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = TAXII
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without an answer


class FakePeer:
    """A TAXII 2.1 collection on loopback: pages of its objects by `added_after` and `limit`
    (never a `next`), after answering each scripted fault once, in order; `always` answers
    every request instead. It records what it was asked: (monotonic time, path, status)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []  # (date_added, object)
        self.faults: list[Answer] = []
        self.always: Answer | None = None
        self.asked: list[tuple[float, str, int]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.running = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/collections/{REMOTE}/"

    def add(self, objects: list[dict[str, Any]], date_added: str | None = None
            ) -> list[dict[str, Any]]:
        """Objects added one microsecond apart, or all at one date_added."""
        for obj in objects:
            moment = date_added or format_micros(timestamp_micros(T0) + len(self.entries))
            self.entries.append((moment, obj))
        return objects

    @property
    def last_added(self) -> str:
        return max(d for d, _ in self.entries)

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        with self.lock:
            answer = self.faults.pop(0) if self.faults else self.always
        answer = answer or self.page(handler.path)
        self.asked.append((time.monotonic(), handler.path, 0 if answer.drop else answer.status))
        if answer.drop:
            handler.close_connection = True
            return
        handler.send_response(answer.status)
        handler.send_header("Content-Type", answer.content_type)
        handler.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(answer.body)

    def page(self, path: str) -> Answer:
        query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        after = query.get("added_after", "")
        found = sorted((e for e in self.entries if e[0] > after), key=lambda e: e[0])
        limit = int(query["limit"])
        page = found[:limit]
        if not page:
            return Answer(body=b"{}")
        return Answer(body=orjson.dumps({"objects": [o for _, o in page],
                                         "more": len(found) > limit}),
                      headers={"X-TAXII-Date-Added-First": page[0][0],
                               "X-TAXII-Date-Added-Last": page[-1][0]})

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=10)


@pytest.fixture
def fake() -> Iterator[FakePeer]:
    peer = FakePeer()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def fake_node(tmp_path: Path, fake: FakePeer) -> Node:
    node = make_node(tmp_path / "node", "fake")
    node.peers({"name": "fake", "url": fake.url, "local_collection": "shared",
                "direction": "pull", "page_size": 4})
    return node


def batch(name: str, count: int) -> list[dict[str, Any]]:
    return [indicator(f"{name}-{n}") for n in range(count)]


@pytest.mark.parametrize("faults, waits", [
    pytest.param([Answer(503)], 0.0, id="503-then-ok"),
    pytest.param([Answer(502), Answer(500)], 0.0, id="5xx-twice-then-ok"),
    pytest.param([Answer(429, headers={"Retry-After": "1"})], 1.0, id="429-retry-after-1"),
    pytest.param([Answer(drop=True)], 0.0, id="connection-dropped"),
])
def test_transient_faults_are_retried_and_nothing_is_lost(
        fake_node: Node, fake: FakePeer, faults: list[Answer], waits: float) -> None:
    first = fake.add(batch("first", 6))
    assert fake_node.run("fake", "pull").objects == 6
    later = fake.add(batch("later", 6))
    fake.faults = list(faults)

    before = len(fake.asked)
    run = fake_node.run("fake", "pull")
    assert (run.error, run.failed, run.objects) == ("", 0, 6), run
    assert fake_node.stored() == by_key(first + later)
    assert fake_node.state("fake", "pull")["bookmark"] == fake.last_added
    asked = fake.asked[before:]
    assert [status for _, _, status in asked][:len(faults) + 1] == \
        [f.status if not f.drop else 0 for f in faults] + [200]
    # Retry-After honoured: the retry came no sooner than the peer asked.
    assert asked[len(faults)][0] - asked[len(faults) - 1][0] >= waits * 0.95


def test_a_page_inside_one_date_added_is_asked_for_again_larger(
        fake_node: Node, fake: FakePeer) -> None:
    """Without `next`, a page that cannot move past one date_added (10 objects, page 4)."""
    same = fake.add(batch("same", 10), date_added="2026-11-05T00:00:00.000000Z")
    after = fake.add(batch("after", 2), date_added="2026-11-06T00:00:00.000000Z")
    run = fake_node.run("fake", "pull")
    assert (run.error, run.failed, run.objects) == ("", 0, 12), run
    assert fake_node.stored() == by_key(same + after)
    assert fake_node.state("fake", "pull")["bookmark"] == fake.last_added
    limits = [parse_qs(urlsplit(path).query)["limit"][0] for _, path, _ in fake.asked]
    assert limits[0] == "4" and "16" in limits, fake.asked


@pytest.mark.parametrize("answer, error", [
    pytest.param(Answer(body=b'{"objects": [{"type": "indic'), "is not JSON",
                 id="garbage-json"),
    pytest.param(Answer(body=b"<html>maintenance</html>", content_type="text/html"),
                 "'text/html', not TAXII JSON", id="html"),
    pytest.param(Answer(body=b'[{"type": "indicator"}]'), "is not a JSON object",
                 id="json-array"),
    pytest.param(Answer(body=b'{"objects": {"id": "x"}, "more": false}'),
                 "no list of objects", id="objects-not-a-list"),
    pytest.param(Answer(body=orjson.dumps({"objects": batch("later", 2), "more": False})),
                 "no X-TAXII-Date-Added-Last header", id="no-date-added-header"),
    pytest.param(Answer(401, body=b'{"title": "Unauthorized"}'), "answered 401",
                 id="401"),
])
def test_unusable_answers_end_the_run_and_keep_the_bookmark(
        fake_node: Node, fake: FakePeer, answer: Answer, error: str) -> None:
    # Six objects, four a page, no `next`: the second page starts just before the first
    # page's last date_added, so that object comes again (unchanged 1).
    first = fake.add(batch("first", 6))
    assert fake_node.sync() == (0, ["fake pull: pulled 6, unchanged 1, failed 0"])
    bookmark = fake_node.state("fake", "pull")["bookmark"]
    later = fake.add(batch("later", 6))
    fake.faults = [answer]

    code, lines = fake_node.sync()
    assert code == 1 and len(lines) == 1 and error in lines[0], lines
    record = fake_node.state("fake", "pull")
    assert record["bookmark"] == bookmark
    assert error in record["last"]["error"] and record["last_error"]["error"] == \
        record["last"]["error"]
    assert fake_node.stored() == by_key(first)
    # The peer answers properly again: what was missed comes now.
    assert fake_node.sync() == (0, ["fake pull: pulled 6, unchanged 1, failed 0"])
    assert fake_node.stored() == by_key(first + later)


@pytest.mark.parametrize("down, error", [
    pytest.param("refused", "cannot reach the peer: ConnectionError (3 attempts)",
                 id="connection-refused"),
    pytest.param("503", "the peer answered 503 (3 attempts)", id="503-every-time"),
])
def test_a_peer_that_is_down_leaves_an_error_and_nothing_else(
        fake_node: Node, fake: FakePeer, down: str, error: str) -> None:
    first = fake.add(batch("first", 6))
    assert fake_node.run("fake", "pull").objects == 6
    bookmark = fake_node.state("fake", "pull")["bookmark"]
    fake.add(batch("later", 6))
    if down == "refused":
        fake.stop()
    else:
        fake.always = Answer(503)

    run = fake_node.run("fake", "pull")
    assert (run.error, run.objects) == (error, 0)
    record = fake_node.state("fake", "pull")
    assert record["bookmark"] == bookmark
    assert record["last_error"]["error"] == error
    assert fake_node.stored() == by_key(first)


# -- a sync killed mid-way --------------------------------------------------------------------
def test_a_killed_sync_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sync --direction pull` of 3000 objects from a second node, 25 a page, killed with
    SIGKILL once its first pages are stored; the next run completes it."""
    source = make_node(tmp_path / "source", "puller", relays=())
    source_analyst = identity("analyst")
    objects = [indicator(f"bulk-{n}", source_analyst) for n in range(3000)]
    source.load(objects)
    token = partners.rotate(source.directory / "partners.yaml", "puller").token
    live = start_server(Env(load_settings(source.config, environ={}), {}))
    try:
        node = make_node(tmp_path / "node", "source", relays=(source_analyst,))
        node.peers({"name": "source", "local_collection": "shared", "direction": "pull",
                    "url": f"{live.url}{ROOT}/collections/{LOCAL}/", "page_size": 25,
                    "auth": {"token_env": "SOURCE_TOKEN"}})
        monkeypatch.setenv("SOURCE_TOKEN", token)
        proc = subprocess.Popen(
            [sys.executable, "-m", "exchange", "--config", node.config, "sync",
             "--direction", "pull"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while count(node) < 50:  # two pages stored
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.002)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
        at_kill = count(node)
        assert 50 <= at_kill < 3000

        code, lines = node.sync()  # the same command, run again
        assert code == 0 and len(lines) == 1 and re.fullmatch(
            rf"source pull: pulled {3000 - at_kill}, unchanged \d+, failed 0", lines[0]), (
            lines, "leases held (seconds left):", leases(node))
        assert node.stored() == by_key(objects)
        with source.store() as store:
            newest = store.query(Query(collection=LOCAL, limit=5000, versions=(ALL,)),
                                 with_body=False).entries[-1].date_added
        assert timestamp_micros(node.state("source", "pull")["bookmark"]) == newest
    finally:
        live.stop()


def serve(node: Node, port: int) -> subprocess.Popen[bytes]:
    """`taxii-exchange serve` for a node, in its own process, answering on `port`."""
    log = node.directory / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exchange", "--config", node.config, "serve", "--port",
             str(port), "--no-access-log"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            httpx.get(f"http://127.0.0.1:{port}/taxii2/", timeout=1)
            return proc
        except httpx.TransportError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)


def test_a_peer_killed_mid_sync_and_restarted_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer's server (a second node, its own process) is killed with SIGKILL while a
    pull of 3000 objects, 25 a page, is under way: the run ends with a clear error and a
    bookmark no further than what was stored; once the peer is back on the same address,
    the next run takes the rest, each object once."""
    source = make_node(tmp_path / "source", "puller", relays=())
    source_analyst = identity("analyst")
    objects = [indicator(f"peer-{n}", source_analyst) for n in range(3000)]
    source.load(objects)
    monkeypatch.setenv("SOURCE_TOKEN",
                       partners.rotate(source.directory / "partners.yaml", "puller").token)
    port = free_port()
    node = make_node(tmp_path / "node", "source", relays=(source_analyst,))
    node.peers({"name": "source", "local_collection": "shared", "direction": "pull",
                "url": f"http://127.0.0.1:{port}/{ROOT}/collections/{LOCAL}/",
                "page_size": 25, "auth": {"token_env": "SOURCE_TOKEN"}})
    peer = serve(source, port)
    try:
        runs: list[Run] = []
        syncing = threading.Thread(target=lambda: runs.append(node.run("source", "pull")))
        syncing.start()
        deadline = time.monotonic() + 30
        while count(node) < 50:  # two pages stored
            assert syncing.is_alive() and time.monotonic() < deadline
            time.sleep(0.002)
        peer.send_signal(signal.SIGKILL)
        peer.wait(timeout=10)
        syncing.join(timeout=30)
        at_kill = count(node)
        assert runs and runs[0].error.startswith("cannot reach the peer"), runs
        assert 50 <= at_kill < 3000 and runs[0].objects == at_kill
        # The bookmark is the peer's date_added of a stored object, never a later one.
        with source.store() as store:
            added = [e.date_added for e in store.query(
                Query(collection=LOCAL, limit=5000, versions=(ALL,)), with_body=False).entries]
        assert timestamp_micros(node.state("source", "pull")["bookmark"]) <= added[at_kill - 1]

        peer = serve(source, port)  # back on the same address
        assert node.run("source", "pull").objects == 3000 - at_kill
        assert node.stored() == by_key(objects)
    finally:
        peer.kill()
        peer.wait(timeout=10)


def count(node: Node) -> int:
    """Object versions in the node's store, read beside a running sync."""
    path = node.directory / "store.sqlite3"
    if not path.exists():
        return 0
    conn = sqlite3.connect(path, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM objects").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def leases(node: Node) -> dict[str, float]:
    conn = sqlite3.connect(node.directory / "store.sqlite3", timeout=5)
    try:
        rows = conn.execute("SELECT name, lease FROM state WHERE lease IS NOT NULL").fetchall()
    finally:
        conn.close()
    return {name: round(lease - time.time()) for name, lease in rows}


# -- sync status ------------------------------------------------------------------------------
def test_status_names_the_last_success_and_the_last_error(
        tmp_path: Path, medallion: Medallion, fake: FakePeer) -> None:
    node = make_node(tmp_path / "node", "medallion", "fake")
    node.peers(medallion.peer("both"), {"name": "fake", "url": fake.url,
                                        "local_collection": "shared", "direction": "pull"})
    medallion.post([indicator("status-remote")])
    node.load([indicator("status-local", ANALYST)])
    fake.add(batch("status-fake", 2))
    assert node.sync()[0] == 0
    fake.add(batch("status-fake-later", 2))
    fake.faults = [Answer(body=b"<<<")]
    assert node.sync("--peer", "fake")[0] == 1

    code, lines = node.sync("status")
    assert code == 0
    status = {line.split(":")[0]: line for line in lines}
    assert list(status) == ["medallion pull", "medallion push", "fake pull"]
    when = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    for name in ("medallion pull", "medallion push"):
        assert re.search(rf"last success {when},", status[name]), status[name]
        assert "last error" not in status[name]
    assert re.search(rf"last success {when},", status["fake pull"]), status["fake pull"]
    assert re.search(rf"; last error {when}: the peer's answer is not JSON",
                     status["fake pull"]), status["fake pull"]
