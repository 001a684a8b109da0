"""`serve --workers N`: processes forked from one parent over one socket (exchange/prefork.py),
as an operator runs them: a worker that dies is replaced, a stop ends them all, and a store
that cannot be reached stops the server instead of restarting its workers forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Env
from tests.test_processes import ROOT, Processes, client, objects_url


def workers_of(pid: int) -> set[int]:
    """The live child processes of `pid` (zombies not yet reaped are not workers)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # ended meanwhile
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry))
    return found


def eventually(condition: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not callable(condition) or not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


@pytest.fixture
def serve(env: Env) -> Iterator[Processes]:
    processes = Processes(env)
    yield processes
    processes.stop()


def test_a_worker_that_dies_is_replaced_and_the_server_keeps_answering(
        env: Env, serve: Processes):
    server = serve.start("--workers", "2")
    parent = serve.started[server].pid
    first = workers_of(parent)
    assert len(first) == 2
    killed = min(first)
    os.kill(killed, signal.SIGKILL)  # as the OOM killer would
    eventually(lambda: len(workers_of(parent)) == 2 and killed not in workers_of(parent))
    with client(env, fresh_connections=True) as http:
        answers = [http.get(objects_url(server)).status_code for _ in range(20)]
    assert answers == [200] * 20


def test_a_stop_ends_every_worker_and_the_server_exits_0(env: Env, serve: Processes):
    server = serve.start("--workers", "2")
    process = serve.started[server]
    workers = workers_of(process.pid)
    process.send_signal(signal.SIGTERM)  # the parent only, as systemd or Kubernetes would
    assert process.wait(timeout=30) == 0
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)


def test_a_store_that_cannot_be_reached_stops_the_server_with_status_3(env: Env):
    config = env.settings.partners_file.parent / "config-unreachable.yaml"
    document = yaml.safe_load((env.settings.partners_file.parent / "config.yaml").read_text())
    document["store"] = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"
    config.write_text(yaml.safe_dump(document))
    done = subprocess.run(
        [sys.executable, "-m", "exchange", "--config", str(config), "serve", "--host",
         "127.0.0.1", "--port", "0", "--workers", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert "could not start; stopping the others" in done.stderr
    assert done.stderr.count("the MongoDB store is not reachable") >= 1

