"""`store copy` moves everything to another store and proves it by comparing both; an
interrupted copy goes on when run again. `store backup` copies a SQLite store that is being
written to, into a file that opens, checks and serves."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from exchange.cli import main
from exchange.config import load_settings
from exchange.stix import format_micros, now_micros
from exchange.store.sqlite import SQLiteStore
from tests.conftest import ALICE, OPEN, Env, LiveServer, start_server

TAXII = "application/taxii+json;version=2.1"
ROOT = Path(__file__).resolve().parent.parent
T0 = "2026-11-01T00:00:00.000Z"


def indicator(n: int, modified: str = T0) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://copy.example/{n}')}",
            "created": T0, "modified": modified, "created_by_ref": ALICE, "name": f"copy {n}",
            "pattern": f"[domain-name:value = 'host{n}.copy.example']",
            "pattern_type": "stix", "valid_from": T0}


def client(live: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=live.collection(), auth=live.env.basic("alice"),
                        headers={"Accept": TAXII, "Content-Type": TAXII})


def push(live: LiveServer, objects: list[dict[str, Any]]) -> None:
    with client(live) as http:
        answer = http.post("objects/", json={"objects": objects})
    assert answer.status_code == 202 and answer.json()["status"] == "complete", answer.text


def pull(live: LiveServer) -> list[dict[str, Any]]:
    """Every version, page by page with `next`."""
    found: list[dict[str, Any]] = []
    params: dict[str, str] = {"limit": "7", "match[version]": "all"}
    with client(live) as http:
        while True:
            page = http.get("objects/", params=params)
            assert page.status_code == 200, page.text
            found += page.json().get("objects", [])
            if not page.json()["more"]:
                return found
            params["next"] = page.json()["next"]


def url(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path: sqlite:////...


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def env_over(env: Env, store: Path) -> Env:
    """The same partners and collections over another store file (a config of its own,
    `config_of`)."""
    directory = env.settings.store_path.parent
    document = yaml.safe_load((directory / "config.yaml").read_text())
    config = directory / f"{store.stem}.yaml"
    config.write_text(yaml.safe_dump({**document, "store_path": str(store)}))
    return Env(load_settings(config, environ={}), env.credentials)


def config_of(env: Env) -> str:
    return str(env.settings.partners_file.parent / f"{env.settings.store_path.stem}.yaml")


@pytest.fixture
def source(env: Env) -> Iterator[Env]:
    """A store written the way a server writes it: pushes (with a second version of some
    objects), their statuses, a pending request, an audit trail pruned once (so the chain
    starts from a kept hash), and a peer's bookmark."""
    server = start_server(env)
    try:
        push(server, [indicator(n) for n in range(30)])
        cut = format_micros(now_micros())
        push(server, [indicator(n, "2026-11-02T00:00:00.000Z") for n in range(0, 30, 3)])
        push(server, [indicator(n) for n in range(30, 45)])
    finally:
        server.stop()
    assert run("--config", str(env.settings.store_path.parent / "config.yaml"), "audit",
               "prune", "--before", cut)[0] == 0
    store = SQLiteStore(env.settings.store_path)
    store.open()
    store.put_state("sync:peer:pull", {"bookmark": T0})
    store.close()
    yield env


def test_a_copy_has_everything_and_serves_and_verifies_as_the_source(source: Env,
                                                                     tmp_path: Path):
    target = tmp_path / "copy" / "copy.sqlite3"
    code, out, err = run("store", "copy", "--from", url(source.settings.store_path),
                         "--to", url(target), "--page-size", "8")
    assert code == 0, out + err
    assert "objects: 55 copied" in out and out.rstrip().endswith("state documents, are the "
                                                                 "same in both stores")
    copied = env_over(source, target)
    assert run("--config", config_of(copied), "audit", "verify")[0] == 0
    servers = [start_server(source), start_server(copied)]
    try:
        original, copy = (pull(server) for server in servers)
    finally:
        for server in servers:
            server.stop()
    assert len(original) == 55 and copy == original


@pytest.mark.emulator_gap("server")
@pytest.mark.parametrize("backend", [pytest.param("mongo", id="mongo")])
def test_a_copy_goes_to_mongodb_and_back(source: Env, tmp_path: Path, backend: str,
                                         request: pytest.FixtureRequest):
    """SQLite -> MongoDB -> SQLite: each copy verifies, the audit chain holds in MongoDB, and
    the store that came back serves what the original served."""
    database = request.getfixturevalue("mongo_server").database()
    back = tmp_path / "back" / "back.sqlite3"
    for origin, target in ((url(source.settings.store_path), database), (database, url(back))):
        code, out, err = run("store", "copy", "--from", origin, "--to", target,
                             "--page-size", "8")
        assert code == 0, out + err
        assert "objects: 55 copied" in out, out
    in_mongo = Env(dataclasses.replace(source.settings, store_url=database), source.credentials)
    returned = env_over(source, back)
    assert run("--config", config_of(returned), "audit", "verify")[0] == 0
    servers = [start_server(source), start_server(in_mongo), start_server(returned)]
    try:
        original, *copies = (pull(server) for server in servers)
    finally:
        for server in servers:
            server.stop()
    assert len(original) == 55 and copies == [original, original]


def test_an_interrupted_copy_goes_on_from_its_bookmark_when_run_again(env: Env,
                                                                      tmp_path: Path):
    server = start_server(env)
    try:
        push(server, [indicator(n) for n in range(600)])
    finally:
        server.stop()
    target = tmp_path / "copy.sqlite3"
    command = [sys.executable, "-m", "exchange", "store", "copy", "--from",
               url(env.settings.store_path), "--to", url(target), "--page-size", "1"]
    copying = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        mark = bookmark_once_started(target, copying)
        copying.send_signal(signal.SIGKILL)
    finally:
        copying.communicate(timeout=30)
    assert 0 < mark["copied"] < 600 and not mark["done"]
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "objects: 600 copied" in again.stdout
    went_on = int(again.stdout.split("this run copied ")[1].split()[0])
    assert 0 < went_on < 600 and "verified" in again.stdout


def bookmark_once_started(target: Path, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The copy's objects bookmark in the target, once it has copied a page of them."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if target.exists():
            try:
                with sqlite3.connect(f"file:{target}?mode=ro", uri=True) as conn:
                    row = conn.execute("SELECT doc FROM state WHERE name = 'copy:objects'"
                                       ).fetchone()
            except sqlite3.OperationalError:  # the copy has not made its tables yet
                row = None
            if row is not None:
                [mark] = orjson.loads(row[0]).values()
                if mark["copied"] >= 20:
                    return dict(mark)
        time.sleep(0.02)
    raise AssertionError("the copy did not start")


@pytest.mark.parametrize("target_holds, refused", [
    pytest.param("objects", "already holds data that is not a copy", id="another store's data"),
    pytest.param("same", "name the same store", id="the source itself"),
])
def test_a_copy_never_mixes_into_a_store_that_holds_other_data(
        source: Env, tmp_path: Path, target_holds: str, refused: str):
    if target_holds == "same":
        target = source.settings.store_path
    else:
        target = tmp_path / "other.sqlite3"
        other = env_over(source, target)
        server = start_server(other)
        try:
            push(server, [indicator(1000)])
        finally:
            server.stop()
    before = contents(target)
    code, out, err = run("store", "copy", "--from", url(source.settings.store_path),
                         "--to", url(target))
    assert code == 2 and refused in err, out + err
    assert contents(target) == before


def contents(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


def test_a_copy_that_differs_from_its_source_fails(source: Env, tmp_path: Path):
    """The verification is a real comparison: a version changed in the copy after it was
    made is found when the copy is run (and verified) again."""
    target = tmp_path / "copy.sqlite3"
    arguments = ("store", "copy", "--from", url(source.settings.store_path),
                 "--to", url(target))
    assert run(*arguments)[0] == 0
    with sqlite3.connect(target) as conn:
        changed = conn.execute(
            "UPDATE objects SET body = CAST(replace(CAST(body AS TEXT), 'copy 7', 'copy 8') "
            "AS BLOB) WHERE CAST(body AS TEXT) LIKE '%\"copy 7\"%'").rowcount
    assert changed == 1
    code, out, _ = run(*arguments)
    assert code == 1 and f"DIFFERENT: collection {OPEN}: 55 versions" in out


def test_a_backup_taken_while_a_server_takes_pushes_opens_checks_and_serves(env: Env,
                                                                           tmp_path: Path):
    server = start_server(env)
    pushed, stop = [0], threading.Event()

    def keep_pushing() -> None:
        while not stop.is_set():
            push(server, [indicator(pushed[0] * 10 + i) for i in range(10)])
            pushed[0] += 1

    pusher = threading.Thread(target=keep_pushing)
    pusher.start()
    backup = tmp_path / "backups" / "exchange.sqlite3"
    backup.parent.mkdir()
    try:
        while pushed[0] < 3:  # pushes land before, during and after the backup
            time.sleep(0.01)
        code, out, err = run("--config", str(env.settings.store_path.parent / "config.yaml"),
                             "store", "backup", str(backup))
        during = pushed[0]
        while pushed[0] < during + 3:
            time.sleep(0.01)
    finally:
        stop.set()
        pusher.join()
        server.stop()
    assert code == 0 and "integrity ok" in out, out + err
    assert os.stat(backup).st_mode & 0o777 == 0o600
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        held = conn.execute("SELECT count(*) FROM objects").fetchone()[0]
    assert 30 <= held < pushed[0] * 10 and held % 10 == 0  # whole pushes, never half of one
    served = start_server(env_over(env, backup))
    try:
        assert len(pull(served)) == held
    finally:
        served.stop()


@pytest.mark.parametrize("arguments", [
    pytest.param(["--from", "mongodb://db.example/exchange"], id="a MongoDB URL"),
    pytest.param(["--from", "mongodb+srv://user:secret@db.example/x"], id="a MongoDB SRV URL"),
])
def test_a_mongodb_store_is_backed_up_with_mongodump(tmp_path: Path, arguments: list[str]):
    code, out, err = run("store", "backup", str(tmp_path / "b.sqlite3"), *arguments)
    assert code == 2 and "mongodump" in err and "Traceback" not in err
    assert "secret" not in out + err


@pytest.mark.parametrize("command", [
    pytest.param(["store", "copy", "--from", "sqlite:///{missing}", "--to", "sqlite:///{new}"],
                 id="copy"),
    pytest.param(["store", "backup", "{new}", "--from", "sqlite:///{missing}"], id="backup"),
])
def test_a_mistyped_source_file_is_refused_not_created(tmp_path: Path, command: list[str]):
    names = {"missing": tmp_path / "missing.sqlite3", "new": tmp_path / "new.sqlite3"}
    code, out, err = run(*(part.format(**names) for part in command))
    assert code == 2 and f"no store file at {names['missing']}" in err, out + err
    assert not names["missing"].exists() and not names["new"].exists()


def test_a_backup_to_a_folder_that_is_not_there_says_so(env: Env, tmp_path: Path):
    server = start_server(env)  # a store file to back up
    server.stop()
    path = tmp_path / "no such folder" / "backup.sqlite3"
    code, out, err = run("--config", str(env.settings.partners_file.parent / "config.yaml"),
                         "store", "backup", str(path))
    assert code == 2 and f"cannot write the backup to {path}" in err, out + err
