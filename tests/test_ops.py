"""Operations: probes, metrics, JSON request logs, collections picked up while serving, and
the `collections` commands, on real servers on loopback."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exchange.config import load_settings
from tests.conftest import (
    ALICE,
    API_ROOT,
    OPEN,
    Env,
    LiveServer,
    free_port,
    start_server,
)
from tests.serving import eventually

TAXII = "application/taxii+json;version=2.1"
REPO = Path(__file__).resolve().parent.parent
TOKEN = "metrics-" + "k" * 24


def _env_with(env: Env, **changes: Any) -> Env:
    return Env(dataclasses.replace(env.settings, **changes), env.credentials)


# -- health and readiness -------------------------------------------------------------------

@pytest.mark.parametrize(("path", "status", "body"), [
    pytest.param("healthz", 200, {"status": "ok"}, id="healthz: up, no credentials"),
    pytest.param("healthz/", 200, {"status": "ok"}, id="healthz/ with a slash too"),
    pytest.param("readyz", 200, {"status": "ready"}, id="readyz: store answers"),
])
def test_probes_answer_without_credentials(live: LiveServer, path: str, status: int,
                                           body: dict[str, str]):
    response = httpx.get(f"{live.url}{path}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == body


def _remove_folder(store: Path) -> None:
    shutil.rmtree(store.parent)


def _remove_file(store: Path) -> None:
    store.unlink()


@pytest.mark.parametrize("break_store", [
    pytest.param(_remove_folder, id="store folder removed -> 503"),
    pytest.param(_remove_file, id="store file removed -> 503"),
])
def test_ready_is_503_when_the_store_is_unreachable(env: Env,
                                                    break_store: Callable[[Path], None]):
    store = env.settings.store_path.parent / "data" / "store.sqlite3"
    live = start_server(_env_with(env, store_path=store))
    try:
        assert httpx.get(f"{live.url}readyz").status_code == 200
        break_store(store)
        response = httpx.get(f"{live.url}readyz")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json() == {"status": "unavailable"}  # nothing about the store
        assert httpx.get(f"{live.url}healthz").status_code == 200  # the process is still up
    finally:
        live.stop()


# -- metrics --------------------------------------------------------------------------------

def scrape(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(f"{url}metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def _indicator(n: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
            "created_by_ref": ALICE, "pattern_type": "stix",
            "pattern": f"[ipv4-addr:value = '198.51.100.{n}']",
            "valid_from": "2026-01-01T00:00:00Z"}


def push(live: LiveServer, count: int) -> None:
    response = httpx.post(f"{live.collection()}objects/",
                          content=orjson.dumps({"objects": [_indicator(n) for n in range(count)]}),
                          headers={**live.env.bearer("alice"), "Accept": TAXII,
                                   "Content-Type": TAXII})
    assert response.status_code == 202 and response.json()["status"] == "complete"


def get(live: LiveServer, path: str, partner: str | None = "alice", **kwargs: Any) -> None:
    headers = {"Accept": TAXII, **(live.env.bearer(partner) if partner else {})}
    httpx.get(f"{live.url}{path}", headers=headers, **kwargs)


OBJECT = "/{root}/collections/{collection}/objects/{object_id}/"


def _requests(endpoint: str, status: int, method: str = "GET") -> tuple[str, frozenset]:
    return ("taxii_exchange_requests_total",
            frozenset({"method": method, "endpoint": endpoint, "status": str(status)}.items()))


@pytest.mark.parametrize(("act", "sample", "moved"), [
    pytest.param(lambda live: get(live, "taxii2/"), _requests("/taxii2/", 200), 1,
                 id="a discovery request is counted under its route"),
    pytest.param(lambda live: [get(live, f"{API_ROOT}/collections/{OPEN}/objects/"
                                   f"indicator--{uuid.uuid4()}/") for _ in range(3)],
                 _requests(OBJECT, 404), 3,
                 id="three unknown objects: one series, the template, never the path"),
    pytest.param(lambda live: get(live, "taxii2/"),
                 ("taxii_exchange_request_duration_seconds_count",
                  frozenset({"method": "GET", "endpoint": "/taxii2/"}.items())), 1,
                 id="its latency is observed"),
    pytest.param(lambda live: get(live, "no/such/path/at/all/"), _requests("(unmatched)", 404),
                 1, id="a path no route takes: one label for all"),
    pytest.param(lambda live: get(live, "ui/static/no-such-file.css", None),
                 _requests("/ui/static/{path}", 404), 1,
                 id="the pages' static files: under their mount's template"),
    pytest.param(lambda live: push(live, 3),
                 ("taxii_exchange_objects_ingested_total",
                  frozenset({"collection": OPEN}.items())), 3,
                 id="three objects pushed: three ingested"),
    pytest.param(lambda live: (push(live, 2), get(live, f"{API_ROOT}/collections/open/objects/")),
                 ("taxii_exchange_objects_served_total",
                  frozenset({"collection": OPEN}.items())), 2,
                 id="an objects page of two: two served, by collection id"),
    pytest.param(lambda live: get(live, "taxii2/", None, auth=("alice", "wrong")),
                 ("taxii_exchange_failed_logins_total", frozenset()), 1,
                 id="a wrong password: one failed login"),
])
def test_metrics_move_after_real_requests(live: LiveServer, act: Callable[[LiveServer], object],
                                          sample: tuple[str, frozenset], moved: float):
    before = scrape(live.url).get(sample, 0.0)
    act(live)
    after = scrape(live.url)
    assert after.get(sample, 0.0) - before == moved
    assert after[("taxii_exchange_store_up", frozenset())] == 1
    assert after[("taxii_exchange_pending_pushes", frozenset())] == 0
    endpoints = {dict(labels).get("endpoint") for name, labels in after
                 if name == "taxii_exchange_requests_total"}
    assert not any("indicator--" in e or "no-such" in e or "/no/such" in e for e in endpoints)


@pytest.mark.parametrize(("token", "headers", "status"), [
    pytest.param("", {}, 200, id="no metrics_token: open"),
    pytest.param(TOKEN, {}, 401, id="token set, none sent -> 401"),
    pytest.param(TOKEN, {"Authorization": "Bearer metrics-wrong"}, 401, id="wrong token -> 401"),
    pytest.param(TOKEN, {"Authorization": f"Basic {TOKEN}"}, 401, id="not Bearer -> 401"),
    pytest.param(TOKEN, {"Authorization": f"Bearer {TOKEN}"}, 200, id="the token -> 200"),
])
def test_metrics_token_is_enforced(env: Env, token: str, headers: dict[str, str], status: int):
    live = start_server(_env_with(env, metrics_token=token))
    try:
        response = httpx.get(f"{live.url}metrics", headers=headers)
        assert response.status_code == status
        if status == 401:
            assert response.headers["content-type"] == TAXII
            assert response.headers["www-authenticate"] == 'Bearer realm="metrics"'
        else:
            assert "taxii_exchange_requests_total" in response.text
        # The probes never need it.
        assert httpx.get(f"{live.url}healthz").status_code == 200
    finally:
        live.stop()


def test_metrics_token_comes_from_the_environment(env: Env):
    config = env.settings.store_path.parent / "config.yaml"
    settings = load_settings(config, environ={"EXCHANGE_METRICS_TOKEN": TOKEN})
    assert settings.metrics_token == TOKEN
    assert TOKEN not in repr(settings)


# -- serve --workers 2 --log-format json (a subprocess, as operators run it) ------------------

@dataclasses.dataclass
class Served:
    url: str
    env: Env
    log: Path
    errors: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           env_template: tuple[Path, Env]) -> Iterator[Served]:
    template, template_env = env_template
    directory = tmp_path_factory.mktemp("served") / "env"
    shutil.copytree(template, directory)
    port = free_port()
    log, errors = directory / "stdout.log", directory / "stderr.log"
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("EXCHANGE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    environ["PYTHONPATH"] = str(REPO)
    with log.open("wb") as out, errors.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "exchange", "--config", str(directory / "config.yaml"),
             "serve", "--port", str(port), "--workers", "2", "--log-format", "json"],
            cwd=REPO, env=environ, stdout=out, stderr=err)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, errors.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"{url}readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        settings = load_settings(directory / "config.yaml", environ={})
        yield Served(url, Env(settings, template_env.credentials), log, errors)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_with_workers_every_scrape_counts_every_process(served: Served):
    def sample() -> float:
        found = scrape(served.url)
        return found.get(_requests("/{root}/collections/", 200), 0.0)

    before = sample()
    for _ in range(40):  # a new connection each: the kernel hands them to both workers
        with httpx.Client() as http:
            response = http.get(f"{served.url}{API_ROOT}/collections/",
                                headers={"Accept": TAXII, **served.env.bearer("alice")})
            assert response.status_code == 200
    # Whichever process answers the scrape, it adds up both: always the 40.
    assert [sample() - before for _ in range(6)] == [40] * 6


def _lines(log: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in log.read_bytes().splitlines() if line.strip()]


@pytest.mark.parametrize(("path", "partner", "status"), [
    pytest.param(f"{API_ROOT}/collections/", "alice", 200, id="authenticated: partner id"),
    pytest.param(f"{API_ROOT}/collections/", None, 401, id="no credentials: no partner"),
    pytest.param("healthz", None, 200, id="a probe: logged too"),
])
def test_json_request_lines(served: Served, path: str, partner: str | None, status: int):
    headers = {"Accept": TAXII, **(served.env.bearer(partner) if partner else {})}
    response = httpx.get(f"{served.url}{path}", headers=headers)
    assert response.status_code == status
    request_id = response.headers["x-request-id"]

    def logged() -> bool:
        return any(line.get("request_id") == request_id for line in _lines(served.log))

    eventually(logged)  # each line is flushed as written; the worker may be the other one
    [line] = [line for line in _lines(served.log) if line.get("request_id") == request_id]
    assert (line["method"], line["path"], line["status"], line["remote"]) == \
        ("GET", f"/{path}", status, "127.0.0.1")
    assert line.get("partner") == partner
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert datetime.fromisoformat(line["time"].replace("Z", "+00:00")).tzinfo is not None
    assert set(line) <= {"time", "method", "path", "route", "status", "duration_ms", "remote",
                         "request_id", "partner"}


def test_the_other_log_lines_are_json_too(served: Served):
    lines = _lines(served.errors)
    assert any(line["message"].startswith("Application startup complete") for line in lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)


# -- collections picked up without a restart ------------------------------------------------

def listed(live: LiveServer) -> dict[str, str]:
    """alias -> title of the collections alice is shown."""
    response = httpx.get(f"{live.root}collections/",
                         headers={"Accept": TAXII, **live.env.bearer("alice")})
    assert response.status_code == 200
    return {c["alias"]: c["title"] for c in response.json().get("collections", [])}


def _new_file(directory: Path) -> str:
    (directory / "late.yaml").write_text(yaml.safe_dump({
        "id": str(uuid.uuid4()), "api_root": API_ROOT, "alias": "late", "title": "Late",
        "read": ["group:rw"], "write": [], "default_marking": "amber"}))
    return "late"


def _retitled(directory: Path) -> str:
    document = yaml.safe_load((directory / "open.yaml").read_text())
    (directory / "open.yaml").write_text(yaml.safe_dump({**document, "title": "Renamed"}))
    return "open"


@pytest.mark.parametrize(("change", "expect"), [
    pytest.param(_new_file, ("late", "Late"), id="a new file: listed by the next request"),
    pytest.param(_retitled, ("open", "Renamed"), id="a changed file: its new title"),
])
def test_collection_changes_are_served_without_a_restart(live: LiveServer, change, expect):
    assert expect not in listed(live).items()
    change(live.env.settings.collections_dir)
    eventually(lambda: expect in listed(live).items())
    assert httpx.get(f"{live.root}collections/{expect[0]}/objects/",
                     headers={"Accept": TAXII, **live.env.bearer("alice")}).status_code == 200


BROKEN = [
    pytest.param("broken.yaml", "id: [unclosed\n", "not valid YAML", id="not YAML"),
    pytest.param("broken.yaml", yaml.safe_dump({
        "id": str(uuid.uuid4()), "api_root": API_ROOT, "title": "T", "read": [], "write": [],
        "default_marking": "amber", "colour": "red"}), "colour", id="an unknown key"),
    pytest.param("broken.yaml", yaml.safe_dump({
        "id": str(uuid.uuid4()), "api_root": API_ROOT, "alias": "open", "title": "T",
        "read": [], "write": [], "default_marking": "amber"}), "used twice",
        id="an alias taken"),
    pytest.param("broken.yaml", yaml.safe_dump({
        "id": str(uuid.uuid4()), "api_root": "elsewhere", "title": "T", "read": [],
        "write": [], "default_marking": "amber"}), "not configured", id="an unknown API root"),
]


@pytest.mark.parametrize(("name", "text", "says"), BROKEN)
def test_a_broken_file_keeps_the_last_good_set(live: LiveServer, caplog: pytest.LogCaptureFixture,
                                               name: str, text: str, says: str):
    before = listed(live)
    (live.env.settings.collections_dir / name).write_text(text)

    def reported() -> bool:
        listed(live)  # a request makes the server look at the folder
        return any("collections not reloaded" in r.getMessage() and says in r.getMessage()
                   for r in caplog.records)

    eventually(reported)
    assert listed(live) == before  # served as before: never a 500
    (live.env.settings.collections_dir / name).unlink()  # mended: served again as it is


# -- taxii-exchange collections list|add|check ------------------------------------------------

def command(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    config = env.settings.store_path.parent / "config.yaml"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    environ["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "exchange", "--config", str(config),
                           "collections", *args], cwd=REPO, env=environ, capture_output=True,
                          text=True, timeout=60)


def test_collections_list(env: Env):
    done = command(env, "list")
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert rows[0] == ["id", "alias", "api root", "title", "read", "write"]
    assert [OPEN, "open", API_ROOT, "Open", "group:rw", "group:rw"] in rows
    assert len(rows) == 4


def test_collections_add_writes_a_file_with_a_new_id(env: Env):
    done = command(env, "add", "--alias", "feeds", "--title", "Feeds", "--read", "group:rw",
                   "--read", "group:ro", "--write", "group:rw", "--default-marking", "green")
    assert done.returncode == 0, done.stderr
    document = yaml.safe_load((env.settings.collections_dir / "feeds.yaml").read_text())
    assert uuid.UUID(document["id"]).version == 4
    assert f"id:       {document['id']}" in done.stdout
    assert (document["api_root"], document["alias"], document["title"], document["read"],
            document["write"], document["default_marking"]) == \
        (API_ROOT, "feeds", "Feeds", ["group:rw", "group:ro"], ["group:rw"], "green")
    listing = command(env, "list")
    assert f"{document['id']}\tfeeds\t{API_ROOT}\tFeeds" in listing.stdout
    assert command(env, "check").returncode == 0


@pytest.mark.parametrize(("args", "says"), [
    pytest.param(["--alias", "open", "--title", "Again"], "alias 'open' is taken",
                 id="a taken alias"),
    pytest.param(["--alias", "Bad Alias", "--title", "T"], "alias", id="an invalid alias"),
    pytest.param(["--alias", "x", "--title", "T", "--read", "everyone"], "read[0]",
                 id="a principal that is neither group: nor partner:"),
    pytest.param(["--alias", "x", "--title", "T", "--api-root", "nowhere"],
                 "api root 'nowhere' is not configured", id="an API root not configured"),
])
def test_collections_add_refuses(env: Env, args: list[str], says: str):
    files = sorted(env.settings.collections_dir.iterdir())
    done = command(env, "add", *args)
    assert done.returncode == 2
    assert says in done.stderr
    assert sorted(env.settings.collections_dir.iterdir()) == files  # nothing written


@pytest.mark.parametrize(("text", "says"), [
    pytest.param("", None, id="all files good -> 0"),
    pytest.param(yaml.safe_dump({"id": str(uuid.uuid4()), "api_root": API_ROOT, "title": "T",
                                 "read": [], "write": [], "default_marking": "amber",
                                 "colour": "red"}), "colour: unknown key",
                 id="an unknown key -> 1, naming it"),
    pytest.param(yaml.safe_dump({"id": "not-a-uuid", "api_root": API_ROOT, "title": "T",
                                 "read": [], "write": [], "default_marking": "amber"}),
                 "id: 'not-a-uuid'", id="a bad id -> 1"),
    pytest.param(yaml.safe_dump({"id": OPEN, "api_root": API_ROOT, "title": "T",
                                 "read": [], "write": [], "default_marking": "amber"}),
                 f"id: {OPEN} is also the id in", id="an id used twice -> 1"),
    pytest.param("{unclosed", "not valid YAML", id="not YAML -> 1"),
])
def test_collections_check(env: Env, text: str, says: str | None):
    bad = env.settings.collections_dir / "zz-bad.yaml"
    if text:
        bad.write_text(text)
    done = command(env, "check")
    if says is None:
        assert done.returncode == 0 and "3 collection file(s)" in done.stdout
    else:
        assert done.returncode == 1
        assert f"{bad}: " in done.stderr and says in done.stderr
