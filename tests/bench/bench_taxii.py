#!/usr/bin/env python
"""Throughput and latency of taxii-exchange over real HTTP, with two peers beside it in the
same run (medallion 3.0.0 and OpenTAXII 0.10.0b1) and, optionally, an older taxii-exchange
checkout as a baseline.

    .venv/bin/python tests/bench/bench_taxii.py [--sizes 10000,100000] [--workers 2]
                                                [--medallion-n 2000] [--opentaxii-n 100000]
                                                [--baseline-tree PATH] [--out FILE]

For each size N the real server runs as a subprocess (`python -m exchange --config CFG serve`,
with the checkout's code first on PYTHONPATH: this one, or --tree PATH) over a fresh store in
a temporary folder, so its memory can be watched with psutil. N synthetic STIX 2.1 objects
(indicators, ipv4-addr observables and relationships, all TLP:GREEN; documentation address
ranges and `.example` domains only) are pushed through the API and read back by one partner
who may see everything: clearance red and a RED recipient of the collection
(`default_marking: amber`). Every SDO and SRO carries `created_by_ref` = that partner's fixed
STIX identity, as the server requires of a push. The partner is created with the checkout's
own `partners add` command.

- ingest: POST in batches (TAXII envelope), each status polled every 10 ms until complete;
  objects/s = N / time from the first POST to the last status complete;
- full pull: one client, limit=1000, following `next`, each page parsed with orjson;
  first, last and median page times;
- incremental pull: `added_after` the date_added of the object at the 90% position;
- match[id]: latency of single-id lookups (bearer token, then HTTP Basic);
- concurrent readers: several clients doing full pulls at once (threads);
- server memory: PSS (/proc/PID/smaps_rollup) summed over the server process and all its
  descendants (uvicorn's or gunicorn's workers), sampled every 50 ms over the whole column:
  peak, after each phase, at the end; peak RSS beside it (it counts shared pages once per
  process, so it overstates several workers).

--baseline-tree PATH runs the same measurements, at every size of --sizes and on the same
objects, against a server started from another checkout (e.g. a git worktree of the last
commit before the sharing policy): its code goes first on PYTHONPATH, with the same
virtualenv. Whether a checkout knows the policy's configuration (`default_marking`,
`clearance`, `red_recipients`) is read from its schemas/collection.schema.json; an older one
gets the configuration it accepts. The baseline's columns sit beside the current ones. The
current/baseline ratios of full pull and match[id] come from one more phase per size: both
servers side by side over the same objects, every round measuring both in alternating order
(--paired-rounds, --paired-lookups), so that drift and busy neighbours weigh on both alike;
a 10% comparison of sub-millisecond lookups made minutes apart on a shared machine is noise.

The peers run the same measurements on the same objects, each at its own N with a
per-operation timeout, and taxii-exchange runs at that N too (when it is not among --sizes)
for a direct comparison:
- medallion 3.0.0 (memory backend, its own Flask server, HTTP Basic only) at --medallion-n
  (2,000: its reads are quadratic);
- OpenTAXII 0.10.0b1 at --opentaxii-n (100,000), in a virtualenv of its own, served as its
  documentation says: gunicorn with two workers, SQLite files (tests/bench/peers_opentaxii.py).
  Its pushes and pulls carry its JWT (from its auth API); match[id] is measured with the JWT
  and with HTTP Basic, which it checks with scrypt on every request.
A second table gives taxii-exchange's figure over each peer's, for each taxii-exchange column.
The report's head says what the machine is (CPU, cores, memory, kernel, Python, SQLite, load
average before the run) and how much CPU other processes used during it.
Every server listens on 127.0.0.1 only and is stopped on exit. The result is a Markdown table
on stdout (and in --out).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import gc
import http.client
import importlib.metadata
import json
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import psutil
import yaml

try:
    from . import peers_opentaxii as opentaxii
except ImportError:  # run as a script: tests/bench is on sys.path
    import peers_opentaxii as opentaxii  # type: ignore[no-redef]

TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
ROOT = "bench"
COLLECTION = "5f0c9a3e-8d2b-4c71-9e46-1a7b3c5d2e80"
PARTNER = "bench"
# The bench partner's STIX identity: the created_by_ref of every pushed SDO and SRO.
PARTNER_IDENTITY = "identity--6b1d4a52-3c8e-4f0a-9d27-5e1f0c8b7a43"
REPO = Path(__file__).resolve().parents[2]
TLP_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
MIB = 1024 * 1024
PAGE = 1000
SEED = 20240131


class BenchError(RuntimeError):
    """A measurement could not be made (bad answer, server died)."""


class OpTimeout(BenchError):
    """An operation ran past its time limit."""


# -- servers we started: stopped on every way out ----------------------------------------
_STARTED: list[subprocess.Popen[bytes]] = []


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        # the server runs in a session of its own: signal it and its children
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    if proc in _STARTED:
        _STARTED.remove(proc)


def _stop_all() -> None:
    for proc in list(_STARTED):
        _stop(proc)


def _on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


# -- HTTP ---------------------------------------------------------------------------------
class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise OpTimeout(f"over {self.seconds:.0f} s")
        return left


class Client:
    """One keep-alive HTTP/1.1 connection to a loopback server (http.client: little overhead)."""

    def __init__(self, port: int, authorization: str) -> None:
        self.port = port
        self.headers = {"Accept": TAXII, "Authorization": authorization}
        self.conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, deadline: Deadline, body: bytes | None = None,
                ) -> tuple[int, http.client.HTTPMessage, bytes]:
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = TAXII
        for attempt in (1, 2):
            timeout = deadline.remaining()
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            else:
                self.conn.timeout = timeout
                if self.conn.sock is not None:
                    self.conn.sock.settimeout(timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except TimeoutError:
                self.close()
                raise OpTimeout(f"over {deadline.seconds:.0f} s") from None
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()  # a keep-alive connection the server closed: open a new one
                if attempt == 2 or method != "GET":
                    raise
                continue
            if response.getheader("connection", "").lower() == "close":
                self.close()
            return response.status, response.headers, data
        raise AssertionError("unreachable")

    def get_json(self, path: str, deadline: Deadline) -> tuple[Any, http.client.HTTPMessage]:
        status, headers, data = self.request("GET", path, deadline)
        if status != 200:
            raise BenchError(f"GET {path} answered {status}: {data[:300]!r}")
        return orjson.loads(data), headers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pss_bytes(pid: int) -> int | None:
    """Proportional set size of one process: its private pages plus its share of each page
    it shares (a page shared by a gunicorn master and two workers counts a third in each), so
    the sum over a server's processes is the memory they take together; RSS counts a shared
    page in full in every process. None where the kernel does not say (no smaps_rollup)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class MemorySampler(threading.Thread):
    """Memory of a server process and all its descendants (a gunicorn master and its
    workers, uvicorn's supervisor and its workers), summed over them, sampled every 50 ms
    from start to stop: PSS (the memory they take together) and RSS; peak and last."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True, name=f"memory-{pid}")
        self.process = psutil.Process(pid)
        self.peak = 0  # RSS, bytes
        self.last = 0
        self.peak_pss = 0
        self.last_pss = 0
        self.pss_known = True
        self.samples = 0
        self.processes = 0  # at the last sample
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def sample(self) -> None:
        try:
            procs = [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return
        rss = pss = 0
        counted = 0
        for proc in procs:
            try:
                rss += proc.memory_info().rss
            except psutil.Error:
                continue
            counted += 1
            share = pss_bytes(proc.pid)
            if share is None:
                self.pss_known = False
            else:
                pss += share
        with self._lock:
            self.last, self.last_pss, self.processes = rss, pss, counted
            self.peak = max(self.peak, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.samples += 1

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self.sample()


RssSampler = MemorySampler  # the name the other bench scripts import


# -- synthetic STIX 2.1 -------------------------------------------------------------------
WORDS = ("botnet command control server beacon loader dropper phishing campaign credential "
         "harvesting infrastructure observed sinkhole partner agency report cluster hosting "
         "malware family stage payload download exfiltration proxy relay domain address "
         "registration bulletproof actor fraud ransomware affiliate panel kit").split()
NETS = ("192.0.2", "198.51.100", "203.0.113")
PHASES = ("command-and-control", "initial-access", "exfiltration", "execution")


@dataclass
class Workload:
    n: int
    batch: int
    batches: list[bytes]
    ids: list[str]
    avg_size: float


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def synthetic_objects(n: int, seed: int, author: str = PARTNER_IDENTITY,
             marking: Callable[[int], str] = lambda i: TLP_GREEN) -> Iterator[dict[str, Any]]:
    """Indicators, ipv4-addr observables and relationships in a 4:3:3 mix, about 1 KB on
    average; object i is marked `marking(i)`, SDOs and SROs are created by `author`.
    Observables carry random (v4) ids so that N of them can exist although the documentation
    ranges hold only 768 addresses. Object i is an indicator when i % 10 is 0, 3, 6 or 9, an
    observable when it is 1, 4 or 7, and a relationship between the two before it otherwise."""
    rng = random.Random(seed)

    def new_id(kind: str) -> str:
        return f"{kind}--{uuid.UUID(int=rng.getrandbits(128), version=4)}"

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."

    base = datetime(2024, 1, 1, tzinfo=UTC)
    indicator = address = ""
    for i in range(n):
        created = base + timedelta(seconds=i, milliseconds=rng.randrange(1000))
        modified = created + timedelta(hours=rng.randrange(48))
        ip = f"{rng.choice(NETS)}.{rng.randrange(1, 255)}"
        slot = i % 10
        if slot in (0, 3, 6, 9):
            indicator = new_id("indicator")
            domain = f"c2-{i:06d}.{rng.choice(('bench', 'feed', 'panel'))}.example"
            pattern = (f"[domain-name:value = '{domain}']" if slot == 9 else
                       f"[ipv4-addr:value = '{ip}'] OR [domain-name:value = '{domain}']")
            yield {
                "type": "indicator", "spec_version": "2.1", "id": indicator,
                "created": _stamp(created), "modified": _stamp(modified),
                "created_by_ref": author, "name": f"C2 endpoint {domain}",
                "description": text(80), "indicator_types": ["malicious-activity"],
                "pattern": pattern, "pattern_type": "stix", "pattern_version": "2.1",
                "valid_from": _stamp(created), "valid_until": _stamp(created + timedelta(90)),
                "kill_chain_phases": [{"kill_chain_name": "mitre-attack",
                                       "phase_name": rng.choice(PHASES)}],
                "labels": ["bench", rng.choice(WORDS)], "confidence": rng.randrange(50, 100),
                "lang": "en",
                "external_references": [{"source_name": "bench-feed",
                                         "external_id": f"BENCH-{i:06d}",
                                         "description": text(8)}],
                "object_marking_refs": [marking(i)],
            }
        elif slot in (1, 4, 7):
            address = new_id("ipv4-addr")
            yield {"type": "ipv4-addr", "spec_version": "2.1", "id": address, "value": ip,
                   "object_marking_refs": [marking(i)]}
        else:
            yield {
                "type": "relationship", "spec_version": "2.1", "id": new_id("relationship"),
                "created": _stamp(created), "modified": _stamp(created),
                "created_by_ref": author, "relationship_type": "related-to",
                "source_ref": indicator, "target_ref": address, "description": text(25),
                "confidence": rng.randrange(50, 100), "object_marking_refs": [marking(i)],
            }


def make_workload(n: int, batch: int, seed: int = SEED,
                  objects: Iterator[dict[str, Any]] | None = None) -> Workload:
    """N objects (by default `synthetic_objects(n, seed)`) in TAXII envelopes of `batch`."""
    batches, ids, chunk, size = [], [], [], 0
    for obj in objects if objects is not None else synthetic_objects(n, seed):
        ids.append(obj["id"])
        chunk.append(obj)
        if len(chunk) == batch:
            body = orjson.dumps({"objects": chunk})
            batches.append(body)
            size += len(body)
            chunk = []
    if chunk:
        body = orjson.dumps({"objects": chunk})
        batches.append(body)
        size += len(body)
    return Workload(n, batch, batches, ids, size / n)


def batch_size(n: int, requested: int, side_by_side: bool) -> int:
    """The requested batch; at the side-by-side size at least 20 batches (for both servers):
    medallion stamps date_added once per request, so the 90% cut of the incremental pull
    must fall on a batch boundary there."""
    return max(1, min(requested, n // 20)) if side_by_side else requested


# -- servers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tree:
    """A taxii-exchange checkout a server runs from: its code goes first on PYTHONPATH (the
    virtualenv's packages stay the same), and its own CLI writes its partners file."""

    path: Path
    policy: bool  # its collections take default_marking / red_recipients, partners clearance
    revision: str  # short commit, "+ uncommitted changes in ..." when the code is dirty

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("EXCHANGE_") and k != "PYTHONPATH"}
        env["PYTHONPATH"] = str(self.path)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "exchange", *args]

    def describe(self) -> str:
        kind = "with the sharing policy" if self.policy else "without the sharing policy"
        return f"{self.path} at {self.revision} ({kind})"


def server_tree(path: Path) -> Tree:
    """Check that `path` is a taxii-exchange checkout whose code the server will import, and
    read from its collection schema whether it knows the policy's configuration."""
    path = path.resolve()
    schema_file = path / "schemas" / "collection.schema.json"
    if not (path / "exchange" / "__init__.py").is_file() or not schema_file.is_file():
        raise BenchError(f"{path} is not a taxii-exchange checkout")
    properties = json.loads(schema_file.read_text(encoding="utf-8"))["properties"]
    tree = Tree(path, "default_marking" in properties, "")
    found = subprocess.run(
        [sys.executable, "-c", "import exchange; print(exchange.__file__)"], env=tree.env,
        cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True).stdout.strip()
    if not Path(found).resolve().is_relative_to(path):
        raise BenchError(f"with PYTHONPATH={path} the server would import {found}")
    revision = "unknown revision"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        revision = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--",
                                "exchange", "schemas"],
                               capture_output=True, text=True, check=True).stdout.split("\n")
        changed = sorted(line[3:] for line in dirty if line.strip())
        if changed:
            revision += f" + uncommitted changes in {', '.join(changed)}"
    return Tree(path, tree.policy, revision)


def code_changes(trees: dict[str, Tree]) -> list[str]:
    """A line per checkout whose code changed while the bench ran (servers started after the
    change ran the new code)."""
    lines = []
    for role, tree in trees.items():
        now = server_tree(tree.path).revision
        if now != tree.revision:
            lines.append(f"- {role} code CHANGED during the run: now {now}")
    return lines


@dataclass
class Target:
    label: str
    kind: str  # "exchange", "medallion" or "opentaxii"
    n: int
    op_timeout: float
    match_samples: int
    pull_repeats: int
    directory: Path
    tree: Tree | None = None  # the checkout a taxii-exchange server runs from
    baseline: bool = False  # a column of --baseline-tree
    port: int = 0
    read_auth: str = ""
    basic: str = ""
    bearer: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    sampler: MemorySampler | None = None
    log: Path | None = None
    root_path: str = f"/{ROOT}"  # OpenTAXII: /taxii2/<api root id>
    collection: str = COLLECTION  # OpenTAXII makes its own id
    results: dict[str, str] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)

    @property
    def objects_path(self) -> str:
        return f"{self.root_path}/collections/{self.collection}/objects/"

    @property
    def manifest_path(self) -> str:
        return f"{self.root_path}/collections/{self.collection}/manifest/"

    def status_path(self, status_id: str) -> str:
        return f"{self.root_path}/status/{status_id}/"

    def client(self, authorization: str | None = None) -> Client:
        return Client(self.port, authorization or self.read_auth)

    def alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log else ""
            raise BenchError(f"{self.label}: server is not running\n{tail}")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _spawn(target: Target, command: list[str], env: dict[str, str]) -> None:
    target.log = target.directory / "server.log"
    with target.log.open("wb") as log:
        proc = subprocess.Popen(command, cwd=target.directory, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _STARTED.append(proc)
    target.proc = proc
    target.sampler = MemorySampler(proc.pid)
    target.sampler.start()
    deadline = Deadline(60)
    client = target.client()
    try:
        while True:
            target.alive()
            try:
                status, _, _ = client.request("GET", "/taxii2/", deadline)
                if status == 200:
                    return
            except OpTimeout:
                raise BenchError(f"{target.label}: server did not start in 60 s") from None
            except OSError:
                pass
            time.sleep(0.05)
    finally:
        client.close()


def add_partner(tree: Tree, config: Path, partner_id: str, groups: tuple[str, ...],
                identity: str, clearance: str | None = None) -> tuple[str, str]:
    """A partner with a fixed STIX identity, added with the checkout's own CLI (so an old
    checkout writes the partners file it reads); its (token, password). `clearance` is
    passed to a checkout with the sharing policy only."""
    command = tree.command("--config", str(config), "partners", "add", partner_id,
                           "--name", f"Benchmark partner {partner_id}", "--identity", identity)
    for group in groups:
        command += ["--group", group]
    if clearance is not None and tree.policy:
        command += ["--clearance", clearance]
    done = subprocess.run(command, env=tree.env, cwd=config.parent, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise BenchError(f"partners add {partner_id}: {done.stderr.strip()[-500:]}")
    found = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    return found["token"].strip(), found["password"].strip()


STORE_URL = ""  # --store: a mongodb:// URL; each target gets a database of its own
WORKERS = 1  # --workers: `serve --workers N` (several processes on one store)
PUSHERS = 1  # --pushers: clients POSTing the workload at once, for every server


def _store_setting(target: Target) -> dict[str, str]:
    if not STORE_URL:
        return {"store_path": "store.sqlite3"}
    head, _, options = STORE_URL.partition("?")
    scheme, rest = head.split("://", 1)
    database = f"bench_{target.directory.name.replace('-', '_')}_{os.getpid()}"
    return {"store": f"{scheme}://{rest.split('/', 1)[0]}/{database}"
                     + (f"?{options}" if options else "")}


def write_exchange_config(target: Target, collection: dict[str, Any],
                          policy: dict[str, Any]) -> Path:
    """The server config and one collection file in the target's folder. `policy` (the
    sharing policy's keys) is added only for a checkout that knows them."""
    assert target.tree is not None
    directory = target.directory
    (directory / "collections").mkdir(parents=True)
    document = {"id": COLLECTION, "api_root": ROOT, "alias": "bench", "title": "Benchmark",
                **collection, **(policy if target.tree.policy else {})}
    (directory / "collections" / "bench.yaml").write_text(yaml.safe_dump(document))
    config = directory / "config.yaml"
    settings: dict[str, Any] = {
        "host": "127.0.0.1", **_store_setting(target), "partners_file": "partners.yaml",
        "collections_dir": "collections", "default_api_root": ROOT, "post_wait_seconds": 2.0,
        "api_roots": {ROOT: {"title": "Benchmark root", "max_content_length": 16 * MIB,
                             "default_page_size": PAGE, "max_page_size": 5000}},
    }
    known = json.loads((target.tree.path / "schemas" / "config.schema.json").read_text(
        encoding="utf-8"))["properties"]
    if "rate_limit_per_second" in known:  # measured is the server, not its per-partner limit
        settings["rate_limit_per_second"] = 0
    config.write_text(yaml.safe_dump(settings))
    return config


def serve_exchange(target: Target, config: Path) -> None:
    assert target.tree is not None
    target.port = free_port()
    command = target.tree.command("--config", str(config), "serve", "--host", "127.0.0.1",
                                  "--port", str(target.port), "--no-access-log",
                                  *(["--workers", str(WORKERS)] if WORKERS > 1 else []))
    _spawn(target, command, target.tree.env)


def start_exchange(target: Target) -> None:
    """One partner who pushes and reads everything: clearance red, named among the
    collection's RED recipients (a checkout without the policy: every reader sees all)."""
    assert target.tree is not None
    config = write_exchange_config(
        target, {"read": [f"group:{PARTNER}"], "write": [f"group:{PARTNER}"]},
        {"default_marking": "amber", "red_recipients": [f"partner:{PARTNER}"]})
    token, password = add_partner(target.tree, config, PARTNER, (PARTNER,), PARTNER_IDENTITY,
                                  clearance="red")
    target.bearer = f"Bearer {token}"
    target.basic = _basic(PARTNER, password)
    target.read_auth = target.bearer
    serve_exchange(target, config)


def start_medallion(target: Target) -> None:
    """medallion's own runner (Flask's threaded server) with the memory backend; HTTP Basic
    against plaintext passwords from its JSON config."""
    password = uuid.uuid4().hex
    target.port = free_port()
    base = f"http://127.0.0.1:{target.port}"
    data = {
        "/discovery": {"title": "medallion (bench)", "description": "benchmark",
                       "default": f"{base}/{ROOT}/", "api_roots": [f"{base}/{ROOT}/"]},
        ROOT: {
            "information": {"title": "Benchmark root", "description": "benchmark",
                            "versions": [TAXII], "max_content_length": 16 * MIB},
            "status": [],
            "collections": [{"id": COLLECTION, "title": "Benchmark", "description": "benchmark",
                             "can_read": True, "can_write": True, "media_types": [STIX],
                             "objects": [], "manifest": []}],
        },
    }
    data_file = target.directory / "data.json"
    data_file.write_text(json.dumps(data))
    config = target.directory / "config.json"
    config.write_text(json.dumps({
        "backend": {"module": "medallion.backends.memory_backend",
                    "module_class": "MemoryBackend", "filename": str(data_file),
                    # paging sessions must outlive a slow pull
                    "session_timeout": 3600, "check_interval": 10},
        "users": {PARTNER: password},
        "taxii": {"max_page_size": 5000},
    }))
    target.basic = _basic(PARTNER, password)
    target.read_auth = target.basic
    command = [sys.executable, "-m", "medallion.scripts.run", "--host", "127.0.0.1",
               "--port", str(target.port), "--log-level", "WARN", str(config)]
    _spawn(target, command, dict(os.environ))


OPENTAXII_VENV = opentaxii.DEFAULT_VENV  # --opentaxii-venv


def start_opentaxii(target: Target) -> None:
    """OpenTAXII 0.10.0b1 in its own virtualenv, SQLite files in the target's folder, served
    by gunicorn with two workers as its documentation runs it (tests/bench/peers_opentaxii.py);
    an account with read and write on its collection: its JWT for pushes and pulls (its
    primary method), HTTP Basic beside it for match[id]."""
    config = opentaxii.write_config(target.directory)
    setup = opentaxii.set_up(OPENTAXII_VENV, config, PARTNER)
    target.root_path = f"/taxii2/{setup.api_root}"
    target.collection = setup.collection
    target.bearer = f"Bearer {setup.token}"
    target.basic = _basic(setup.username, setup.password)
    target.read_auth = target.bearer
    target.port = free_port()
    _spawn(target, opentaxii.command(OPENTAXII_VENV, target.port), opentaxii.environment(config))


def wait_idle(target: Target, limit: float) -> bool:
    """After a timed-out request the server may still be working on it: wait (bounded) until
    its CPU use drops, so the next measurement is not charged for it."""
    if target.proc is None:
        return True
    process = psutil.Process(target.proc.pid)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            if process.cpu_percent(interval=0.5) < 10:
                return True
        except psutil.Error:
            return True
    return False


# -- measurements -------------------------------------------------------------------------
def measure_ingest(target: Target, workload: Workload) -> None:
    """Every batch POSTed by PUSHERS clients at once (several partners pushing), each on its
    own connection, then the statuses answered pending polled until complete."""
    deadline = Deadline(target.op_timeout)
    batches = iter(enumerate(workload.batches))
    taking = threading.Lock()
    posts: dict[int, float] = {}
    pending: list[str] = []
    answered_pending = successes = failures = 0
    errors: list[BaseException] = []

    def tally(doc: dict[str, Any]) -> None:
        nonlocal successes, failures
        successes += int(doc.get("success_count", 0))
        failures += int(doc.get("failure_count", 0))

    def push() -> None:
        nonlocal answered_pending
        client = target.client(target.bearer or target.basic)
        try:
            while not errors:
                with taking:
                    index, body = next(batches, (-1, b""))
                if index < 0:
                    return
                post_started = time.perf_counter()
                status, _, data = client.request("POST", target.objects_path, deadline, body)
                posts[index] = time.perf_counter() - post_started
                if status != 202:
                    raise BenchError(f"POST answered {status}: {data[:300]!r}")
                doc = orjson.loads(data)
                with taking:
                    if doc["status"] == "complete":
                        tally(doc)
                    else:
                        answered_pending += 1
                        pending.append(doc["id"])
        except BaseException as exc:  # reported by the caller, once every pusher stopped
            errors.append(exc)
        finally:
            client.close()

    started = time.perf_counter()
    pushers = [threading.Thread(target=push, name=f"pusher-{i}") for i in range(PUSHERS)]
    for thread in pushers:
        thread.start()
    for thread in pushers:
        thread.join()
    if errors:
        raise errors[0]
    client = target.client(target.bearer or target.basic)
    try:
        while pending:
            for status_id in list(pending):
                doc, _ = client.get_json(target.status_path(status_id), deadline)
                if doc["status"] == "complete":
                    tally(doc)
                    pending.remove(status_id)
            if pending:
                time.sleep(0.01)
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    if successes != workload.n or failures:
        raise BenchError(f"ingest stored {successes} of {workload.n}, {failures} failures")
    target.raw["ingest"] = workload.n / elapsed
    target.results["ingest"] = f"{workload.n / elapsed:,.0f}"
    ordered = [posts[i] for i in sorted(posts)]
    tenth = max(1, len(ordered) // 10)
    target.results["ingest_detail"] = (
        f"{elapsed:.2f} s; {answered_pending} of {len(ordered)} answered pending; "
        f"POST median {_ms(statistics.median(ordered[:tenth]))} ms in the first tenth, "
        f"{_ms(statistics.median(ordered[-tenth:]))} ms in the last")


@dataclass
class Pull:
    count: int
    elapsed: float
    page_times: list[float]
    marks: list[tuple[int, str]]  # (objects so far, X-TAXII-Date-Added-Last of the page)
    body_bytes: int = 0  # of every page, as received


def _envelope_head(data: bytes) -> dict[str, Any]:
    """`more` and `next` of an envelope without parsing its objects (for the server-bound pull):
    the members before `"objects":[`, else the whole document."""
    cut = data.find(b'"objects":')
    if cut > 0:
        head = data[:cut].rstrip().rstrip(b",")
        try:
            found: dict[str, Any] = orjson.loads(head + b"}")
            return found
        except orjson.JSONDecodeError:
            pass
    whole: dict[str, Any] = orjson.loads(data)
    return whole


def pull(client: Client, path: str, deadline: Deadline, expect: int,
         extra: dict[str, str] | None = None, parse: bool = True) -> Pull:
    """Every page of a listing, limit=1000, following `next`; each page parsed with orjson as
    a client would (parse=False reads only the paging members: the server-bound variant)."""
    extra = extra or {}
    count, times, marks, received = 0, [], [], 0
    token: str | None = None
    started = time.perf_counter()
    for _ in range(expect // PAGE + 10):  # bounded: a server that never ends paging fails
        params = {"limit": str(PAGE), **extra}
        if token:
            params["next"] = token
        page_started = time.perf_counter()
        url = f"{path}?{urlencode(params)}"
        status, headers, data = client.request("GET", url, deadline)
        if status != 200:
            raise BenchError(f"GET {url} answered {status}: {data[:300]!r}")
        if parse:
            doc = orjson.loads(data)
            count += len(doc.get("objects", ()))
        else:
            doc = _envelope_head(data)
        times.append(time.perf_counter() - page_started)
        received += len(data)
        marks.append((count, headers.get("X-TAXII-Date-Added-Last", "")))
        if not doc.get("more"):
            return Pull(count, time.perf_counter() - started, times, marks, received)
        token = doc.get("next")
        if not token:
            raise BenchError("a page said more=true without a next token")
    raise BenchError(f"paging did not end after {expect // PAGE + 10} pages")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _timed_out(target: Target) -> str:
    return f">{target.op_timeout:.0f} s (timed out)"


def measure_full_pull(target: Target, n: int) -> Pull:
    runs: list[Pull] = []
    for _ in range(target.pull_repeats):
        client = target.client()
        try:
            run = pull(client, target.objects_path, Deadline(target.op_timeout), n)
        finally:
            client.close()
        if run.count != n:
            raise BenchError(f"full pull returned {run.count} objects, expected {n}")
        runs.append(run)
    runs.sort(key=lambda r: r.elapsed)
    middle = runs[len(runs) // 2]
    first = statistics.median(r.page_times[0] for r in runs)
    last = statistics.median(r.page_times[-1] for r in runs)
    median_page = statistics.median(statistics.median(r.page_times) for r in runs)
    target.raw.update(pull_rate=n / middle.elapsed, first=first, last=last,
                      median_page=median_page)
    reps = f" (median of {len(runs)})" if len(runs) > 1 else ""
    target.results["pull_rate"] = f"{n / middle.elapsed:,.0f}{reps}"
    target.results["pull_time"] = f"{middle.elapsed:.2f} s, {len(middle.page_times)} page(s)"
    target.results["first_page"] = _ms(first)
    target.results["last_page"] = _ms(last)
    target.results["last_first"] = f"{last / first:.2f}x"
    target.results["median_page"] = _ms(median_page)
    return middle


def measure_server_bound(target: Target, n: int) -> None:
    """The same full pull, but the client skips parsing the objects: what the server serves
    when the client is not the limit (the single-client pull above includes ~5 ms of orjson
    parsing and garbage collection per page on the client)."""
    rates = []
    for _ in range(target.pull_repeats):
        client = target.client()
        try:
            run = pull(client, target.objects_path, Deadline(target.op_timeout), n, parse=False)
        finally:
            client.close()
        rates.append(n / run.elapsed)
    target.raw["server_bound"] = statistics.median(rates)
    target.results["server_bound"] = f"{statistics.median(rates):,.0f}"


def cut_date(target: Target, full: Pull, position: int) -> str:
    """date_added of the object at `position` (1-based) of the full pull: a page's
    X-TAXII-Date-Added-Last where a page ends there, else asked of the manifest."""
    before, after_date = 0, ""
    for count, last in full.marks:
        if count == position and last:
            return last
        if count > position:
            break
        before, after_date = count, last
    params = {"limit": str(position - before)}
    if after_date:
        params["added_after"] = after_date
    client = target.client()
    try:
        _, headers = client.get_json(f"{target.manifest_path}?{urlencode(params)}",
                                     Deadline(target.op_timeout))
    finally:
        client.close()
    stamp = headers.get("X-TAXII-Date-Added-Last")
    if not stamp:
        raise BenchError("the manifest sent no X-TAXII-Date-Added-Last")
    return str(stamp)


def measure_incremental(target: Target, full: Pull, n: int) -> None:
    position = int(n * 0.9)
    cut = cut_date(target, full, position)
    client = target.client()
    try:
        run = pull(client, target.objects_path, Deadline(target.op_timeout), n - position,
                   {"added_after": cut})
    finally:
        client.close()
    if run.count != n - position:
        raise BenchError(f"added_after pull returned {run.count}, expected {n - position}")
    target.raw["incremental"] = run.count / run.elapsed
    target.results["incremental"] = (f"{run.count:,} in {run.elapsed:.3f} s "
                                     f"({run.count / run.elapsed:,.0f}/s)")


def measure_match(target: Target, ids: list[str], authorization: str, key: str,
                  visible: bool = True) -> None:
    """p50 / p95 / p99 of match[id] for a random sample of `ids`, one at a time; each answer must
    hold exactly that object (visible=False: nothing, an id this reader may not see)."""
    sample = random.Random(SEED + 1).sample(ids, min(target.match_samples, len(ids)))
    client = target.client(authorization)
    deadline = Deadline(target.op_timeout)
    times: list[float] = []
    note = ""
    try:
        # one untimed request first: a Basic password is verified (argon2) once, then cached
        client.get_json(f"{target.objects_path}?{urlencode({'match[id]': ids[0]})}", deadline)
        for object_id in sample:
            started = time.perf_counter()
            try:
                doc, _ = client.get_json(
                    f"{target.objects_path}?{urlencode({'match[id]': object_id})}", deadline)
            except OpTimeout:
                note = f", timed out at {target.op_timeout:.0f} s"
                break
            times.append(time.perf_counter() - started)
            found = [o["id"] for o in doc.get("objects", ())]
            if found != ([object_id] if visible else []):
                raise BenchError(f"match[id]={object_id} returned {found[:3]}")
    finally:
        client.close()
    if not times:
        raise OpTimeout(f"over {target.op_timeout:.0f} s")
    times.sort()
    p50 = times[len(times) // 2]
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    target.raw[key] = p50
    count = f" (n={len(times)}{note})" if len(times) < target.match_samples or note else ""
    target.results[key] = f"{p50 * 1000:.2f} / {p95 * 1000:.2f} / {p99 * 1000:.2f}{count}"


def measure_concurrent(target: Target, n: int, readers: int) -> None:
    deadline = Deadline(target.op_timeout)
    barrier = threading.Barrier(readers + 1)
    outcomes: list[Pull | BaseException | None] = [None] * readers

    def reader(index: int) -> None:
        client = target.client()
        try:
            barrier.wait(timeout=30)
            outcomes[index] = pull(client, target.objects_path, deadline, n)
        except BaseException as exc:  # reported below
            outcomes[index] = exc
        finally:
            client.close()

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(readers)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=30)
    started = time.perf_counter()
    for thread in threads:
        thread.join(timeout=target.op_timeout + 30)
    elapsed = time.perf_counter() - started
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome is None:
            raise OpTimeout(f"over {target.op_timeout:.0f} s")
        if outcome.count != n:
            raise BenchError(f"a concurrent pull returned {outcome.count}, expected {n}")
    total = readers * n
    target.raw["concurrent"] = total / elapsed
    target.results["concurrent"] = f"{total / elapsed:,.0f} ({elapsed:.2f} s)"


STORE_FILES = {"exchange": ("store.sqlite3*",),
               "opentaxii": ("data.db*", "auth.db*")}  # medallion: memory only


def store_size(target: Target) -> str:
    files = [f for pattern in STORE_FILES.get(target.kind, ())
             for f in target.directory.glob(pattern)]
    return f"{sum(f.stat().st_size for f in files) / MIB:.1f}" if files else "n/a (memory)"


def _rss_now(target: Target) -> str:
    """RSS over every server process now, MB (bench_policy.py's memory rows)."""
    if target.sampler is None:
        return "?"
    target.sampler.sample()
    return f"{target.sampler.last / MIB:,.0f}"


def _memory_now(target: Target) -> str:
    """PSS over every server process now, MB."""
    if target.sampler is None:
        return "?"
    target.sampler.sample()
    return f"{target.sampler.last_pss / MIB:,.0f}"


def run_target(target: Target, workload: Workload, readers: int) -> None:
    """Every measurement in turn; one that fails or times out is reported in its cell."""
    # The harness's own long-lived objects (the workload) stay out of the client's garbage
    # collections, which then only see what the client parses, as in a real client.
    gc.collect()
    gc.freeze()
    starter = {"exchange": start_exchange, "medallion": start_medallion,
               "opentaxii": start_opentaxii}[target.kind]
    target.results.update(objects=f"{workload.n:,}", avg_size=f"{workload.avg_size:,.0f}",
                          batch=f"{workload.batch:,}")
    target.results["code"] = target.tree.revision.split(" ")[0] if target.tree else \
        {"medallion": "medallion 3.0.0", "opentaxii": f"OpenTAXII {opentaxii.VERSION}"}[
            target.kind]
    started = time.monotonic()
    try:
        starter(target)
        full: Pull | None = None

        def step(keys: tuple[str, ...], action: Callable[[], Any], settle: bool = True) -> bool:
            target.alive()
            try:
                action()
                return True
            except OpTimeout:
                for key in keys:
                    target.results[key] = _timed_out(target)
                if settle and not wait_idle(target, target.op_timeout):
                    target.results[keys[0]] += ", server still busy after"
            except Exception as exc:  # reported in the table; the other rows still run
                message = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
                for key in keys:
                    target.results[key] = f"error: {message}"
                print(f"[bench] {target.label}: {keys[0]}: {exc!r}", file=sys.stderr)
            return False

        if not step(("ingest", "ingest_detail"), lambda: measure_ingest(target, workload)):
            return
        phases = [_memory_now(target)]

        def full_pull() -> None:
            nonlocal full
            full = measure_full_pull(target, workload.n)

        pulled = step(("pull_rate", "pull_time", "first_page", "last_page", "last_first",
                       "median_page"), full_pull)
        if pulled and target.kind == "exchange":
            step(("server_bound",), lambda: measure_server_bound(target, workload.n))
        else:
            target.results["server_bound"] = "not measured"
        phases.append(_memory_now(target))
        if pulled and full is not None:
            pull_result = full
            step(("incremental",), lambda: measure_incremental(target, pull_result, workload.n))
        else:
            target.results["incremental"] = "not run (no full pull)"
        if target.bearer:
            step(("match_bearer",),
                 lambda: measure_match(target, workload.ids, str(target.bearer), "match_bearer"))
        else:
            target.results["match_bearer"] = "n/a (HTTP Basic only)"
        step(("match_basic",),
             lambda: measure_match(target, workload.ids, target.basic, "match_basic"))
        if pulled:
            # the last step: a server still busy after a timeout is stopped, not waited for
            step(("concurrent",), lambda: measure_concurrent(target, workload.n, readers),
                 settle=False)
        else:
            target.results["concurrent"] = "not run (a single full pull did not finish)"
        phases.append(_memory_now(target))
        target.results["pss_phases"] = " / ".join(phases)
    except Exception as exc:  # the server did not start or died: say so in its column
        target.results.setdefault("ingest", f"error: {str(exc).splitlines()[0][:80]}")
        print(f"[bench] {target.label}: {exc!r}", file=sys.stderr)
    finally:
        if target.sampler is not None:
            sampler = target.sampler
            sampler.stop()
            target.raw.update(rss=sampler.peak / MIB, pss=sampler.peak_pss / MIB)
            unknown = "" if sampler.pss_known else " (PSS not readable: partial)"
            target.results["pss"] = f"{sampler.peak_pss / MIB:,.0f}{unknown}"
            plural = "" if sampler.processes == 1 else "es"
            target.results["pss_end"] = (f"{sampler.last_pss / MIB:,.0f} "
                                         f"({sampler.processes} process{plural})")
            target.results["rss"] = f"{sampler.peak / MIB:,.0f}"
        if target.proc is not None:
            _stop(target.proc)
        target.results["store"] = store_size(target)
        target.results["wall"] = f"{time.monotonic() - started:.0f} s"


# -- current vs baseline, interleaved ----------------------------------------------------
@dataclass
class Paired:
    """Both servers up over the same objects; every measurement alternates between them."""

    n: int
    rounds: int = 0
    rates: dict[str, list[float]] = field(default_factory=dict)  # "current/pull" -> per round
    lookups: dict[str, list[float]] = field(default_factory=dict)  # "current/bearer" -> times
    lookups_per_round: int = 0
    foreign: str = ""
    error: str = ""

    def median(self, side: str, what: str) -> float | None:
        values = self.rates.get(f"{side}/{what}") or self.lookups.get(f"{side}/{what}")
        return statistics.median(values) if values else None

    def ratio(self, what: str) -> float | None:
        now, then = self.median("current", what), self.median("baseline", what)
        return now / then if now and then else None


def compare_paired(current: Target, baseline: Target, workload: Workload, rounds: int,
                   lookups: int) -> Paired:
    """The current/baseline ratios of full pull and match[id], with machine drift and busy
    neighbours spread evenly over both: the two servers run side by side, and each round
    measures both, in alternating order (ABBA): one full pull parsing every page, one
    without parsing (server-bound), then `lookups` match[id] of the same random ids with a
    bearer token and as many with HTTP Basic (p50 over every lookup of every round)."""
    result = Paired(workload.n, lookups_per_round=min(lookups, workload.n))
    cpu = ForeignCpu()
    rng = random.Random(SEED + 3)
    try:
        for target in (current, baseline):
            start_exchange(target)
            measure_ingest(target, workload)
        sides = {"current": current, "baseline": baseline}
        for index in range(rounds):
            order = list(sides.items())
            if index % 2:
                order.reverse()
            sample = rng.sample(workload.ids, min(lookups, workload.n))
            for side, target in order:
                target.alive()
                for what, parse in (("pull", True), ("server_bound", False)):
                    client = target.client()
                    try:
                        run = pull(client, target.objects_path, Deadline(target.op_timeout),
                                   workload.n, parse=parse)
                    finally:
                        client.close()
                    if parse and run.count != workload.n:
                        raise BenchError(f"{side}: pulled {run.count} of {workload.n}")
                    result.rates.setdefault(f"{side}/{what}", []).append(
                        workload.n / run.elapsed)
                for what, authorization in (("bearer", target.bearer), ("basic", target.basic)):
                    result.lookups.setdefault(f"{side}/{what}", []).extend(
                        _lookups(target, sample, str(authorization)))
            result.rounds += 1
    except Exception as exc:  # reported in the table
        result.error = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        print(f"[bench] interleaved N={workload.n:,}: {exc!r}", file=sys.stderr)
    finally:
        for target in (current, baseline):
            if target.sampler is not None:
                target.sampler.stop()
            if target.proc is not None:
                _stop(target.proc)
        result.foreign = cpu.short()
    return result


def _lookups(target: Target, ids: list[str], authorization: str) -> list[float]:
    """Seconds per match[id] lookup of each id (after one untimed lookup: a Basic password
    is verified once, then cached)."""
    client = target.client(authorization)
    deadline = Deadline(target.op_timeout)
    times = []
    try:
        client.get_json(f"{target.objects_path}?{urlencode({'match[id]': ids[0]})}", deadline)
        for object_id in ids:
            started = time.perf_counter()
            doc, _ = client.get_json(
                f"{target.objects_path}?{urlencode({'match[id]': object_id})}", deadline)
            times.append(time.perf_counter() - started)
            if [o["id"] for o in doc.get("objects", ())] != [object_id]:
                raise BenchError(f"match[id]={object_id} did not return it")
    finally:
        client.close()
    return times


PAIRED_ROWS = [
    ("pull", "Full pull, limit=1000, parsing every page: objects/s (median of rounds)"),
    ("server_bound", "Full pull, client not parsing (server-bound): objects/s"),
    ("bearer", "match[id] p50, ms (bearer token)"),
    ("basic", "match[id] p50, ms (HTTP Basic)"),
]


def paired_report(pairs: list[Paired]) -> list[str]:
    lines = ["| Interleaved, current vs baseline | "
             + " | ".join(f"N={p.n:,}" for p in pairs) + " |",
             "|---|" + "---|" * len(pairs)]
    for what, label in PAIRED_ROWS:
        cells = []
        for pair in pairs:
            now, then = pair.median("current", what), pair.median("baseline", what)
            if now is None or then is None:
                cells.append(f"error: {pair.error}" if pair.error else "n/a")
            elif what in ("bearer", "basic"):
                cells.append(f"{now * 1000:.3f} vs {then * 1000:.3f} ({now / then:.2f}x)")
            else:
                cells.append(f"{now:,.0f} vs {then:,.0f} ({now / then:.2f}x)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| Rounds (match[id] lookups per round, server and auth) | "
                 + " | ".join(f"{p.rounds} ({p.lookups_per_round})" for p in pairs) + " |")
    lines.append("| Other processes during this phase | "
                 + " | ".join(p.foreign for p in pairs) + " |")
    return lines


# -- report -------------------------------------------------------------------------------
ROWS = [
    ("code", "Code (commit)"),
    ("objects", "Objects (N)"),
    ("avg_size", "Average object size, bytes (as posted)"),
    ("batch", "Ingest batch, objects per POST"),
    ("ingest", "Ingest, objects/s (POST until every status complete)"),
    ("ingest_detail", "Ingest wall time; batches answered pending; POST time early/late"),
    ("pull_rate", "Full pull, 1 client, limit=1000: objects/s"),
    ("pull_time", "Full pull wall time"),
    ("server_bound", "Full pull, client not parsing (server-bound): objects/s"),
    ("first_page", "First page latency, ms"),
    ("last_page", "Last page latency, ms"),
    ("last_first", "Last / first page"),
    ("median_page", "Median page time, ms"),
    ("median_vs_base", "Median page time vs the smallest N"),
    ("incremental", "added_after pull of the last 10%: objects, time (objects/s)"),
    ("match_bearer", "match[id] p50 / p95 / p99, ms (bearer token)"),
    ("match_basic", "match[id] p50 / p95 / p99, ms (HTTP Basic)"),
    ("concurrent", "Concurrent full pulls: aggregate objects/s (wall)"),
    ("pss_phases", "Server PSS after ingest / single-client pulls / the end, MB, "
                   "all processes"),
    ("pss", "Server peak PSS, MB, all processes (sampled every 50 ms over the whole column)"),
    ("pss_end", "Server PSS at the end of the column, MB, all processes"),
    ("rss", "Server peak RSS, MB, all processes (shared pages counted in each)"),
    ("store", "Store on disk, MB"),
    ("wall", "Time spent on this column"),
]


def machine_facts(trees: dict[str, Tree] | None = None,
                  peers: list[str] | None = None) -> list[str]:
    """The machine and the software measured, for the report's head: CPU, memory, kernel,
    Python, SQLite, the load before the run; `peers` adds a line per peer server."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    memory = psutil.virtual_memory()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    workers = f"{WORKERS} worker processes" if WORKERS > 1 else "1 worker"
    workers += f"; ingest by {PUSHERS} clients POSTing at once" if PUSHERS > 1 else ""
    return [
        f"- CPU: {model or 'model unknown'}; {os.cpu_count()} logical cores "
        f"({psutil.cpu_count(logical=False)} physical)",
        f"- Memory: {memory.total / 2**30:.1f} GiB ({memory.available / 2**30:.1f} GiB "
        f"available at start); load average before the run (1, 5, 15 min): {load}",
        f"- Kernel: {platform.system()} {platform.release()} ({platform.machine()}); "
        f"Python {platform.python_version()} ({platform.python_implementation()}); "
        f"SQLite {sqlite3.sqlite_version}",
        f"- taxii-exchange {version('taxii-exchange')} (uvicorn {version('uvicorn')}, "
        f"fastapi {version('fastapi')}, {workers}, SQLite store); medallion "
        f"{version('medallion')} (Flask {version('flask')}, werkzeug {version('werkzeug')}, "
        "its own threaded server, memory backend)",
        *(peers or []),
        *(f"- {role} code: {tree.describe()}" for role, tree in (trees or {}).items()),
    ]


class ForeignCpu:
    """CPU time the rest of the machine used during the run: on a shared 2-core machine a
    busy neighbour skews every figure, so the report says how busy it was."""

    def __init__(self) -> None:
        self.system, self.own, self.wall = self._system(), self._own(), time.monotonic()

    @staticmethod
    def _system() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    @staticmethod
    def _own() -> float:
        times = psutil.Process().cpu_times()  # servers are waited for: in children_*
        return times.user + times.system + times.children_user + times.children_system

    def used(self) -> tuple[float, float]:
        """CPU-seconds other processes used so far, and the wall seconds since the start."""
        wall = time.monotonic() - self.wall
        return max(0.0, (self._system() - self.system) - (self._own() - self.own)), wall

    def short(self) -> str:
        foreign, wall = self.used()
        return f"{foreign:,.0f} CPU-s in {wall:,.0f} s ({foreign / wall:.0%} of one core)"

    def summary(self) -> str:
        wall = time.monotonic() - self.wall
        foreign = max(0.0, (self._system() - self.system) - (self._own() - self.own))
        return (f"- Other processes used {foreign:,.0f} CPU-seconds during the run "
                f"({foreign / wall:.0%} of one core on average); load average at the end "
                f"{os.getloadavg()[0]:.2f}")


def check_targets(ours: list[Target], pairs: list[Paired]) -> list[str]:
    """The targets for this machine, on the largest and smallest of --sizes; with a
    baseline, a reader who may see everything keeps full pull and match[id] within 10% of
    it."""
    if not ours:
        return []
    big = max(ours, key=lambda t: t.n)
    small = min(ours, key=lambda t: t.n)
    lines = []

    def check(ok: bool | None, text: str) -> None:
        mark = "n/a" if ok is None else ("met" if ok else "MISSED")
        lines.append(f"- {mark}: {text}")

    def get(target: Target, key: str) -> float | None:
        return target.raw.get(key)

    rate = get(big, "pull_rate")
    check(None if rate is None else rate >= 50_000,
          f"full pull >= 50,000 objects/s at N={big.n:,}: {rate or 0:,.0f}")
    for target in sorted(ours, key=lambda t: t.n):
        first, last = get(target, "first"), get(target, "last")
        ratio = max(first, last) / min(first, last) if first and last else None
        check(None if ratio is None else ratio <= 2,
              f"first and last page within 2x at N={target.n:,}: "
              f"{_ms(first or 0)} ms vs {_ms(last or 0)} ms ({ratio or 0:.2f}x)")
    a, b = get(small, "median_page"), get(big, "median_page")
    if big is not small:
        check(None if not (a and b) else b <= 2 * a,
              f"median page time at N={big.n:,} within 2x of N={small.n:,}: "
              f"{_ms(b or 0)} ms vs {_ms(a or 0)} ms ({(b or 0) / (a or 1):.2f}x)")
    p50 = get(big, "match_bearer")
    check(None if p50 is None else p50 <= 0.010,
          f"match[id] p50 <= 10 ms at N={big.n:,}: {_ms(p50 or 0)} ms")
    for target in sorted(ours, key=lambda t: t.n):
        ingest = get(target, "ingest")
        check(None if ingest is None else ingest >= 5_000,
              f"ingest >= 5,000 objects/s at N={target.n:,}: {ingest or 0:,.0f}")
    # PSS, not RSS: with several worker processes RSS counts every shared page once per
    # process, and so grows with the worker count even where the memory does not.
    pss = get(big, "pss")
    check(None if pss is None else pss <= 300,
          f"server peak PSS, all processes, <= 300 MB at N={big.n:,}: {pss or 0:,.0f} MB")
    for pair in pairs:
        for what, text in (("pull", "full pull objects/s"), ("bearer", "match[id] p50 (bearer)"),
                           ("basic", "match[id] p50 (HTTP Basic)")):
            ratio = pair.ratio(what)
            ok = None if ratio is None else (ratio >= 0.9 if what == "pull" else ratio <= 1.1)
            check(ok, f"{text} within 10% of the baseline at N={pair.n:,} (interleaved): "
                      f"{ratio or 0:.2f}x")
    return lines


# (raw key, column head, True where a higher figure is better)
RATIOS = [
    ("ingest", "Ingest", True),
    ("pull_rate", "Full pull, 1 client", True),
    ("incremental", "Incremental (added_after)", True),
    ("match_bearer", "match[id] p50, token", False),
    ("match_basic", "match[id] p50, HTTP Basic", False),
    ("concurrent", "{readers} concurrent readers", True),
]


def _ratio_cell(ours: Target, peer: Target, key: str, higher_better: bool) -> str:
    mine, theirs = ours.raw.get(key), peer.raw.get(key)
    if not mine or not theirs:
        cell = peer.results.get(key, "") if not theirs else ours.results.get(key, "")
        return cell if cell.startswith("n/a") else f"n/a ({cell})" if cell else "n/a"
    ratio = mine / theirs
    if higher_better:
        return f"{ratio:,.1f}x" if ratio >= 10 else f"{ratio:.2f}x"
    # a latency: our p50 over theirs, and how many times faster that is
    return f"{ratio:.3f}x (1/{1 / ratio:,.0f})" if ratio < 0.1 else f"{ratio:.2f}x"


def peer_report(ours: list[Target], peers: list[Target], readers: int) -> list[str]:
    """Our figure over each peer's, for each of our columns (each peer ran once, at its
    own N): above 1 is better for the rates, below 1 for the match[id] latencies."""
    if not ours or not peers:
        return []
    heads = [head.format(readers=readers) for _, head, _ in RATIOS]
    lines = ["taxii-exchange against the peers: our figure / the peer's (rates: above 1 is "
             "better; match[id] p50: below 1 is better, 1/k = k times faster). Each peer ran "
             "once, at the N in its row: "
             + "; ".join(f"{p.label} ({p.results.get('wall', '?')})" for p in peers) + ".", "",
             "| taxii-exchange / peer | " + " | ".join(heads) + " |",
             "|---|" + "---|" * len(heads)]
    for peer in peers:
        for mine in sorted(ours, key=lambda t: t.n):
            same = " (same N)" if mine.n == peer.n else ""
            cells = [_ratio_cell(mine, peer, key, better) for key, _, better in RATIOS]
            lines.append(f"| N={mine.n:,} / {peer.label}{same} | " + " | ".join(cells) + " |")
    return lines


def report(targets: list[Target], ours: list[Target], baselines: dict[int, Target],
           pairs: list[Paired], readers: int, elapsed: float, facts: list[str], command: str,
           neighbours: str) -> str:
    for group in (ours, list(baselines.values())):
        base = min(group, key=lambda t: t.n) if group else None
        for target in group:
            assert base is not None
            mine, theirs = target.raw.get("median_page"), base.raw.get("median_page")
            if mine and theirs:
                target.results["median_vs_base"] = f"{mine / theirs:.2f}x (vs N={base.n:,})"
    header = "| Measurement | " + " | ".join(t.label for t in targets) + " |"
    lines = [f"## TAXII benchmark ({datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')})", "",
             f"Command: `{command}`", "", *facts, "", header,
             "|---|" + "---|" * len(targets)]
    for key, label in ROWS:
        if key == "concurrent":
            label = label.replace("Concurrent", f"{readers} concurrent")
        cells = [t.results.get(key, "") for t in targets]
        lines.append(f"| {label} | " + " | ".join(cells or ["-"]) + " |")
    peers = [t for t in targets if t.kind != "exchange"]
    current = [t for t in targets if t.kind == "exchange" and not t.baseline]
    if peers:
        lines += ["", *peer_report(current, peers, readers)]
    if pairs:
        lines += ["", "The baseline's columns above ran one after the other; the ratios below "
                  "(and the baseline targets) come from the two servers side by side over the "
                  "same objects, with every measurement alternating between them:", "",
                  *paired_report(pairs)]
    lines += ["", "Targets (taxii-exchange):", *check_targets(ours, pairs), "",
              f"Total run time: {elapsed:.0f} s", neighbours]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000",
                        help="taxii-exchange collection sizes, comma-separated")
    parser.add_argument("--medallion-n", type=int, default=2000,
                        help="size for medallion and the side-by-side taxii-exchange run "
                             "(0: no medallion)")
    parser.add_argument("--opentaxii-n", type=int, default=100_000,
                        help="size for OpenTAXII 0.10.0b1 (gunicorn, 2 workers, SQLite) and "
                             "taxii-exchange beside it (0: no OpenTAXII); it ingests about "
                             "270 objects/s, so 100,000 take about 6 minutes")
    parser.add_argument("--opentaxii-timeout", type=float, default=900,
                        help="per-operation limit for OpenTAXII, seconds (the whole load is "
                             "one operation)")
    parser.add_argument("--opentaxii-match-samples", type=int, default=200,
                        help="match[id] lookups for OpenTAXII, per authentication (HTTP Basic "
                             "costs it a scrypt check, about 130 ms, on every request)")
    parser.add_argument("--opentaxii-venv", type=Path, default=opentaxii.DEFAULT_VENV,
                        help="OpenTAXII's virtualenv: made with pip when it does not hold "
                             f"OpenTAXII {opentaxii.VERSION}, reused when it does")
    parser.add_argument("--out", help="also write the Markdown report here")
    parser.add_argument("--batch", type=int, default=1000, help="objects per POST")
    parser.add_argument("--readers", type=int, default=4, help="concurrent full-pull clients")
    parser.add_argument("--match-samples", type=int, default=2000,
                        help="random ids looked up with match[id]")
    parser.add_argument("--medallion-match-samples", type=int, default=200,
                        help="match[id] lookups for medallion (each is O(N) there)")
    parser.add_argument("--pull-repeats", type=int, default=5,
                        help="single-client full pulls of taxii-exchange (median reported)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="per-operation limit for taxii-exchange, seconds")
    parser.add_argument("--medallion-timeout", type=float, default=120,
                        help="per-operation limit for medallion, seconds")
    parser.add_argument("--tree", type=Path, default=REPO,
                        help="the checkout measured as current (default: this one; a "
                             "worktree of a commit keeps edits made meanwhile out of the run)")
    parser.add_argument("--baseline-tree", type=Path,
                        help="also measure a server run from this checkout (e.g. a git "
                             "worktree of the commit before the sharing policy) at --sizes")
    parser.add_argument("--paired-rounds", type=int, default=16,
                        help="rounds of the interleaved current/baseline comparison")
    parser.add_argument("--paired-lookups", type=int, default=200,
                        help="match[id] lookups per round, server and auth in that comparison")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument("--store", default="",
                        help="serve from this MongoDB (mongodb://HOST:PORT/?replicaSet=rs0; "
                             "a database per run) instead of a SQLite file")
    parser.add_argument("--workers", type=int, default=1,
                        help="serve with this many worker processes (peak memory: all of them)")
    parser.add_argument("--pushers", type=int, default=1,
                        help="clients POSTing the workload at once, each on its own "
                             "connection (several partners pushing), for every server")
    args = parser.parse_args(argv)
    global STORE_URL, WORKERS, OPENTAXII_VENV, PUSHERS
    STORE_URL, WORKERS, OPENTAXII_VENV = args.store, args.workers, args.opentaxii_venv
    PUSHERS = args.pushers
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    if any(0 < n < 20 for n in (*sizes, args.medallion_n, args.opentaxii_n)) or not sizes:
        parser.error("sizes must be at least 20")
    current = server_tree(args.tree)
    trees = {"Current": current}
    if args.baseline_tree:
        trees["Baseline"] = server_tree(args.baseline_tree)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(_stop_all)
    peer_facts, peer_error = [], ""
    if args.opentaxii_n:
        # installed (once) before the clock starts: pip is not part of any figure
        try:
            peer_facts.append(opentaxii.describe(opentaxii.ensure_venv(
                OPENTAXII_VENV, Path(tempfile.gettempdir()) / "taxii-bench-opentaxii-pip.log")))
        except opentaxii.PeerError as exc:
            peer_error = str(exc)
            peer_facts.append(f"- OpenTAXII {opentaxii.VERSION}: NOT RUN: {peer_error}")
            print(f"[bench] OpenTAXII: {exc}", file=sys.stderr)
    started = time.monotonic()
    facts = machine_facts(trees, peer_facts)
    foreign = ForeignCpu()
    workdir = Path(tempfile.mkdtemp(prefix="taxii-bench-"))
    command = " ".join([os.path.relpath(sys.executable), *sys.argv]) if argv is None else \
        " ".join(["bench_taxii.py", *argv])

    def make(label: str, kind: str, n: int, tree: Tree | None = None,
             baseline: bool = False) -> Target:
        directory = workdir / f"{kind}{'-baseline' if baseline else ''}-{n}"
        directory.mkdir()
        timeout, samples, repeats = {
            "medallion": (args.medallion_timeout, args.medallion_match_samples, 1),
            # OpenTAXII: one full pull (at 100,000 objects about 20 s)
            "opentaxii": (args.opentaxii_timeout, args.opentaxii_match_samples, 1),
        }.get(kind, (args.timeout, args.match_samples, args.pull_repeats))
        return Target(label=label, kind=kind, n=n, op_timeout=timeout, match_samples=samples,
                      pull_repeats=repeats, directory=directory, tree=tree, baseline=baseline)

    # Each baseline column right after the current one at the same N: same objects, and the
    # two runs close together in time.
    ours, baselines, targets = [], {}, []
    for n in sizes:
        ours.append(make(f"taxii-exchange N={n:,}", "exchange", n, current))
        targets.append(ours[-1])
        if "Baseline" in trees:
            revision = trees["Baseline"].revision.split(" ")[0]
            baselines[n] = make(f"baseline {revision} N={n:,}", "exchange", n,
                                trees["Baseline"], baseline=True)
            targets.append(baselines[n])
    # Each peer beside a taxii-exchange column at its N, for the direct comparison: when that
    # N is not among --sizes, one is added right before the peer.
    beside = set(sizes)
    for n, kind, label in ((args.medallion_n, "medallion", "medallion 3.0.0 (memory)"),
                           (args.opentaxii_n, "opentaxii",
                            f"OpenTAXII {opentaxii.VERSION} (gunicorn x{opentaxii.WORKERS}, "
                            "SQLite)")):
        if not n:
            continue
        if n not in beside:
            beside.add(n)
            targets.append(make(f"taxii-exchange N={n:,}", "exchange", n, current))
        targets.append(make(f"{label} N={n:,}", kind, n))
    workloads: dict[tuple[int, int], Workload] = {}
    pairs: list[Paired] = []
    try:
        for target in targets:
            if target.kind == "opentaxii" and peer_error:
                target.results["ingest"] = f"not run: {peer_error[:200]}"
                continue
            key = (target.n, batch_size(target.n, args.batch, target.n == args.medallion_n))
            if key not in workloads:
                workloads.clear()  # keep one workload in memory at a time
                t0 = time.perf_counter()
                workloads[key] = make_workload(*key)
                print(f"[bench] generated {target.n:,} objects in "
                      f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
            print(f"[bench] {target.label} ...", file=sys.stderr, flush=True)
            run_target(target, workloads[key], args.readers)
            print(f"[bench] {target.label}: done in {target.results.get('wall')}",
                  file=sys.stderr, flush=True)
            if target.baseline and args.paired_rounds:
                print(f"[bench] interleaved current/baseline N={target.n:,} ...",
                      file=sys.stderr, flush=True)
                pairs.append(compare_paired(
                    make(f"paired current N={target.n:,}", "paired", target.n, current),
                    make(f"paired baseline N={target.n:,}", "paired", target.n,
                         trees["Baseline"], baseline=True),
                    workloads[key], args.paired_rounds, args.paired_lookups))
    finally:
        _stop_all()
        if args.keep:
            print(f"[bench] kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    facts += code_changes(trees)
    text = report(targets, ours, baselines, pairs, args.readers, time.monotonic() - started,
                  facts, command, foreign.summary())
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
