"""Shared fixtures: settings in a temporary folder, partners with real credentials, and a real
server (uvicorn) on a free loopback port."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
import yaml

from exchange.app import create_app
from exchange.config import Settings, load_settings
from exchange.policy import partners
from exchange.store import Store
from tests import backends, fixtures
from tests.fixtures.common import Sample

API_ROOT = "api1"
OPEN = "11111111-1111-4111-8111-111111111111"      # alice reads and writes
READONLY = "22222222-2222-4222-8222-222222222222"  # alice and bob read, nobody writes
HIDDEN = "33333333-3333-4333-8333-333333333333"    # only carol
# The protocol suites run where every partner may see every object (cleared for TLP:RED and
# named as a RED recipient); tests/test_policy.py covers what markings withhold.
EVERYONE = ["group:rw", "group:ro", "partner:carol"]
COLLECTIONS = [
    {"id": OPEN, "api_root": API_ROOT, "alias": "open", "title": "Open",
     "read": ["group:rw"], "write": ["group:rw"], "default_marking": "amber",
     "red_recipients": EVERYONE},
    {"id": READONLY, "api_root": API_ROOT, "alias": "readonly", "title": "Read only",
     "read": ["group:rw", "group:ro"], "write": [], "default_marking": "amber",
     "red_recipients": EVERYONE},
    {"id": HIDDEN, "api_root": API_ROOT, "alias": "hidden", "title": "Hidden",
     "read": ["partner:carol"], "write": ["partner:carol"], "default_marking": "amber",
     "red_recipients": EVERYONE},
]
PARTNERS = [("alice", ("rw",)), ("bob", ("ro",)), ("carol", ())]


def identity_of(partner: str) -> str:
    """Test partners' STIX identities are fixed, so test objects can name their author."""
    return f"identity--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://partners.example/{partner}')}"


ALICE = identity_of("alice")  # the created_by_ref of what alice pushes
BOB = identity_of("bob")


@dataclass
class Env:
    settings: Settings
    credentials: dict[str, partners.Credentials]

    def basic(self, partner: str) -> tuple[str, str]:
        return partner, self.credentials[partner].password

    def bearer(self, partner: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials[partner].token}"}


def write_env(directory: Path, *, max_content_length: int = 1024 * 1024,
              max_page_size: int = 5000, default_page_size: int = 1000) -> Env:
    collections = directory / "collections"
    collections.mkdir(parents=True, exist_ok=True)
    for item in COLLECTIONS:
        (collections / f"{item['alias']}.yaml").write_text(yaml.safe_dump(item))
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({
        "store_path": "store.sqlite3", "partners_file": "partners.yaml",
        "collections_dir": "collections", "default_api_root": API_ROOT,
        # A push answers as soon as it is done: the wait only bounds a slow one (jongodb, loaded).
        "post_wait_seconds": 30,
        # Only the test root: the built-in ones (merged in otherwise) removed.
        "api_roots": {API_ROOT: {"title": "Test root", "max_content_length": max_content_length,
                                 "max_page_size": max_page_size,
                                 "default_page_size": default_page_size},
                      "cybercrime": None, "trusted": None},
    }))
    settings = load_settings(config, environ={})
    credentials = {pid: partners.add(settings.partners_file, pid, pid.title(), groups,
                                     identity=identity_of(pid), clearance="red")
                   for pid, groups in PARTNERS}
    return Env(settings, credentials)


@pytest.fixture(scope="session")
def env_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Env]:
    """Partners are hashed with argon2 once per session; each test copies the files."""
    directory = tmp_path_factory.mktemp("template")
    return directory, write_env(directory)


@pytest.fixture
def env(tmp_path: Path, env_template: tuple[Path, Env]) -> Env:
    """Settings, collections and partners in a fresh folder of the test's own."""
    template, template_env = env_template
    shutil.copytree(template, tmp_path / "env")
    settings = load_settings(tmp_path / "env" / "config.yaml", environ={})
    return Env(settings, template_env.credentials)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str  # ends with '/', e.g. http://127.0.0.1:PORT/
    env: Env
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def root(self) -> str:
        return f"{self.url}{API_ROOT}/"

    def collection(self, key: str = OPEN) -> str:
        return f"{self.root}collections/{key}/"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(env: Env, store: Store | None = None) -> LiveServer:
    app = create_app(env.settings, store or backends.open_store(env.settings))
    port = free_port()
    # As `serve` runs it (server.uvicorn_options): uvicorn's own proxy handling off, so a
    # test's X-Forwarded-For is believed only as the app's trusted_proxies say.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, proxy_headers=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    return LiveServer(f"http://127.0.0.1:{port}/", env, server, thread)


@pytest.fixture
def live(env: Env) -> Iterator[LiveServer]:
    """A real server on loopback over a fresh store, with partners alice, bob and carol."""
    server = start_server(env)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Sample]]:
    """Synthetic sample files for every input format (see tests/fixtures)."""
    return fixtures.write_all(tmp_path_factory.mktemp("samples"))


# -- store backends ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mongo_server() -> Iterator[backends.Mongo]:
    """The session's MongoDB (tests/backends.py), started by the first test that needs it."""
    yield from backends.start_mongo(free_port())


def _mongo(request: pytest.FixtureRequest) -> Callable[[], backends.Mongo]:
    return lambda: request.getfixturevalue("mongo_server")


@pytest.fixture(params=backends.BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[backends.Opener]:
    """Opens (and at teardown closes) stores over one backend's fresh storage; each store
    opened is what another server process over the same storage would see."""
    factory = backends.opener_for(request.param, tmp_path, _mongo(request))
    opened: list[Store] = []

    def open_store() -> Store:
        store = factory()
        store.open()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: backends.Opener) -> Store:
    return opener()


@pytest.fixture
def other(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store of the same backend as `opener` over other storage (a copy's target)."""
    backend = request.node.callspec.params["opener"]
    store = backends.opener_for(backend, tmp_path / "other", _mongo(request))()
    store.open()
    yield store
    store.close()


def with_backend(env: Env, backend: str, request: pytest.FixtureRequest) -> Env:
    """`env` over a fresh store of `backend` (sqlite: the file it names already)."""
    if backend == "sqlite":
        return env
    uri = request.getfixturevalue("mongo_server").database()
    return Env(dataclasses.replace(env.settings, store_url=uri), env.credentials)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test on MongoDB that needs what the emulator in use lacks is an expected failure
    (strict: it must fail); on a real server it runs like every other."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "mongo" not in params.values():
            continue
        needs: tuple[str, ...] = ("transactions",)  # nearly every test writes objects
        for mark in item.iter_markers("emulator_gap"):
            needs += mark.args
            if mark.kwargs.get("transactions") is False:
                needs = tuple(n for n in needs if n != "transactions")
        for reason in backends.gaps_for(needs)[:1]:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
