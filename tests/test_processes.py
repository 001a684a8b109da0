"""Several server processes on one store, as real `python -m exchange serve` processes.

Nothing a client holds is tied to the process that gave it: a `next` token from one process
pages on through another without gaps or repeats, a status id from one is readable on the
other, and a push accepted by a process that is then killed is finished by another once the
dead one's lease on it runs out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exchange.store import Store
from exchange.store.factory import open_url
from tests import backends
from tests.conftest import ALICE, API_ROOT, OPEN, Env, free_port, with_backend

TAXII = "application/taxii+json;version=2.1"
ROOT = Path(__file__).resolve().parent.parent
T0 = "2026-11-01T00:00:00.000Z"

def indicator(n: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://procs.example/{n}')}",
            "created": T0, "modified": T0, "created_by_ref": ALICE, "name": f"process {n}",
            "pattern": f"[domain-name:value = 'host{n}.procs.example']",
            "pattern_type": "stix", "valid_from": T0}


class Processes:
    """`serve` processes over one env's store file, each started with its own port."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, *options: str, **settings: Any) -> str:
        """A process with these `serve` options (and config settings changed), once it
        answers; its URL."""
        config = self.env.settings.partners_file.parent / "config.yaml"
        if self.env.settings.store_url:
            settings["store"] = self.env.settings.store_url
        if settings:  # a variant of the env's config: same store, partners, collections
            document = yaml.safe_load(config.read_text())
            root = {**document["api_roots"][API_ROOT], **settings.pop("api_root", {})}
            document.update(settings, api_roots={API_ROOT: root})
            config = config.with_name(f"config-{len(self.started)}.yaml")
            config.write_text(yaml.safe_dump(document))
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "exchange", "--config", str(config), "serve", "--host",
             "127.0.0.1", "--port", str(port), "--no-access-log", *options],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # its own process group: it and its workers end together
        url = f"http://127.0.0.1:{port}/"
        self.started[url] = process
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}taxii2/", timeout=1)
                return url
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serve did not start (exit {process.poll()})") from None
                time.sleep(0.05)

    def kill(self, url: str) -> None:
        """kill -9, as a crash or the OOM killer would."""
        process = self.started[url]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(params=backends.BACKENDS)
def env(env: Env, request: pytest.FixtureRequest) -> Env:
    """The conftest's `env` over each store backend in turn: one SQLite file, one MongoDB."""
    return with_backend(env, request.param, request)


@pytest.fixture
def serve(env: Env) -> Iterator[Processes]:
    processes = Processes(env)
    yield processes
    processes.stop()


def client(env: Env, *, fresh_connections: bool = False) -> httpx.Client:
    """alice's client; `fresh_connections`: a new connection per request, so a server with
    several workers may hand each request to another one."""
    limits = httpx.Limits(max_keepalive_connections=0) if fresh_connections else None
    return httpx.Client(auth=env.basic("alice"), timeout=60,
                        headers={"Accept": TAXII, "Content-Type": TAXII},
                        **({"limits": limits} if limits else {}))


def objects_url(server: str) -> str:
    return f"{server}{API_ROOT}/collections/{OPEN}/objects/"


def status_url(server: str, status_id: str) -> str:
    return f"{server}{API_ROOT}/status/{status_id}/"


@pytest.mark.parametrize("layout", [
    pytest.param("two serve processes", id="two serve processes, requests alternating"),
    pytest.param("serve --workers 2", id="serve --workers 2, a connection per request"),
])
def test_next_tokens_and_statuses_work_whichever_process_answers(
        env: Env, serve: Processes, layout: str):
    if layout == "two serve processes":
        servers = [serve.start(), serve.start()]
    else:
        servers = [serve.start("--workers", "2")] * 2
    with client(env, fresh_connections=True) as http:
        pushed = []
        for n, server in enumerate(servers):  # a push through each, its status on the other
            answer = http.post(objects_url(server), json={
                "objects": [indicator(i) for i in range(n * 25, n * 25 + 25)]})
            assert answer.status_code == 202 and answer.json()["status"] == "complete"
            pushed.append(answer.json())
        for n, status in enumerate(pushed):
            other = servers[1 - n]
            seen = http.get(status_url(other, status["id"]))
            assert seen.status_code == 200 and seen.json() == status

        pages, params = [], {"limit": "6"}
        while True:  # page n from process n % 2, each with the token the other gave
            page = http.get(objects_url(servers[len(pages) % 2]), params=params)
            assert page.status_code == 200, page.text
            pages.append([obj["name"] for obj in page.json()["objects"]])
            if not page.json()["more"]:
                break
            params["next"] = page.json()["next"]
    assert len(pages) == 9
    assert [name for page in pages for name in page] == [f"process {i}" for i in range(50)]


def test_a_push_left_by_a_killed_process_is_finished_by_another(
        env: Env, serve: Processes, request: pytest.FixtureRequest):
    """A accepts a large push (202 pending: it answers at once) and is killed while it
    stores it; B takes the request over once A's lease on it runs out. On MongoDB, A's open
    transaction ends when the server's transactionLifetimeLimitSeconds (60 s by default)
    passes; B's writes wait for it (write conflicts are retried)."""
    if env.settings.store_url:
        for mark in backends.gap_marks("dead_writer"):
            request.applymarker(mark)
    count = 3000
    quick = {"post_wait_seconds": 0,
             "api_root": {"max_content_length": 8 * 1024 * 1024, "max_page_size": count}}
    a, b = serve.start(**quick), serve.start(**quick)
    store = open_url(env.settings.store_url or f"sqlite:///{env.settings.store_path}")
    store.open()
    with client(env) as http:
        accepted = http.post(objects_url(a), json={
            "objects": [indicator(i) for i in range(count)]})
        assert accepted.status_code == 202 and accepted.json()["status"] == "pending"
        status_id = accepted.json()["id"]
        leased_by_a(store, status_id)
        serve.kill(a)
        store.close()
        left = http.get(status_url(b, status_id)).json()
        assert left["status"] == "pending", "A finished before it was killed: push more"

        deadline = time.monotonic() + (150 if env.settings.store_url else 60)
        while (status := http.get(status_url(b, status_id)).json())["status"] == "pending":
            assert time.monotonic() < deadline, "B never took the request over"
            time.sleep(0.2)
        assert (status["success_count"], status["failure_count"]) == (count, 0)
        page = http.get(objects_url(b), params={"limit": str(count), "match[version]": "all"})
    assert page.status_code == 200 and not page.json()["more"]
    names = [obj["name"] for obj in page.json()["objects"]]
    assert sorted(names) == sorted(f"process {i}" for i in range(count))  # each once


def leased_by_a(store: Store, status_id: str) -> None:
    """Once the process that accepted the request has taken its lease (started on it)."""
    deadline = time.monotonic() + 10
    while True:
        [record] = [r for r in store.dump("statuses", None, 100) if r["id"] == status_id]
        if record["lease"] is not None:
            assert record["state"] == "pending"
            return
        assert time.monotonic() < deadline, "the request was never taken up"
        time.sleep(0.01)
