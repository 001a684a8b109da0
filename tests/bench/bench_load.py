#!/usr/bin/env python
"""Mixed load: many concurrent clients poll, look up and push at once against one server.

    .venv/bin/python tests/bench/bench_load.py [--n 1000000] [--clients 50] [--seconds 60]
        [--workers 2] [--mix lookup=60,poll=30,push=10] [--store-from PATH] [--keep-store]
        [--client-processes 1] [--out FILE]

The real server runs as a subprocess (`python -m exchange --config CFG serve --workers W`,
this checkout's code first on PYTHONPATH, as in bench_taxii.py, whose server start-up,
partners and synthetic objects this script reuses) over a SQLite store of N objects:
bench_taxii.py's synthetic mix (indicators, ipv4-addr observables and relationships, all
TLP:GREEN; documentation address ranges, `.example` domains). The store is built by pushing
the objects through the API (TAXII POST, 1,000 objects per request, generated and posted
batch by batch so that no more than one batch is held in memory), then the server is
restarted over it. Building 1,000,000 objects takes minutes: `--keep-store` keeps the built
file under ~/.cache/taxii-exchange/bench-load/ keyed by N and seed and reuses it on the next
run; `--store-from PATH` starts from a file built before. Either way the run works on a copy,
so the objects pushed during a run never reach the kept file.

`--partners` partners (default 10) may read and push; client i is partner i % P, and the
first half of the clients authenticate with HTTP Basic, the second half with an API token.
Before the run, one walk of the manifest samples the ids that lookups ask for and the
date_added of the newest `--poll-window` objects, the "recent dates" polls start from.

Each client holds one keep-alive HTTP/1.1 connection and loops, picking an operation at
random by weight (`--mix`, default lookup 60, poll 30, push 10):

- lookup: `match[id]` of a random stored id; the answer must hold that object;
- poll: `added_after` one of the recent dates, `limit=100`, as a SIEM connector polls; with
  probability `--follow` (default 0.25) it follows the page's `next` once;
- push: a STIX bundle of 10 new objects created by the client's partner, then one GET of the
  push's status, which must say complete with all 10 objects succeeded.

The clients are asyncio tasks speaking raw HTTP/1.1 over asyncio streams (status line,
headers, then a Content-Length or chunked body): a generator that costs little per request,
because it shares the machine's cores with the server. They run in `--client-processes`
processes (default 1; clients split evenly), each reporting its CPU time, so the report says
what the load itself cost. After every client has connected and made one untimed lookup (a
Basic password is verified with argon2 once per server process, then remembered), the load
runs `--warmup` seconds unmeasured, then `--seconds` measured.

Reported: requests/s overall and per operation; latency p50/p95/p99/max per operation;
errors by kind (a non-2xx answer, a timeout after `--timeout` seconds, a connection error, a
lookup without its object, a push whose status is not complete with every object
succeeded); the server's peak PSS over all its processes (/proc/PID/smaps_rollup, sampled
every 200 ms over the load) beside its peak RSS (every 50 ms); the server's and the clients'
CPU seconds, and what other processes used. Target: at least 1,500 requests/s with 0 errors
(reported, never asserted). Every server listens on 127.0.0.1 only and is stopped on exit.
The result is a Markdown report on stdout (and in --out).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import collections
import contextlib
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode

import orjson
import psutil

try:
    from . import bench_taxii as bt
except ImportError:  # run as a script: tests/bench is on sys.path
    import bench_taxii as bt  # type: ignore[no-redef]

MIB = 1024 * 1024
POLL_LIMIT = 100
PUSH_SIZE = 10
MANIFEST_PAGE = 5000  # bench_taxii's config allows pages up to 5,000
BUILD_BATCH = 1000
GROUP = bt.PARTNER  # every partner's group: the collection's readers and writers
# Load partners' STIX identities are derived from their names in this namespace.
IDENTITY_NAMESPACE = uuid.UUID("4f6b2c1e-8a3d-4e59-b7c0-2d1e9f8a6b34")
OPS = ("lookup", "poll", "push")
# Rows of the per-request table: what each request was, in the order shown.
KINDS = {
    "lookup-token": "lookup, `match[id]` (API token)",
    "lookup-basic": "lookup, `match[id]` (HTTP Basic)",
    "poll": f"poll, `added_after` + `limit={POLL_LIMIT}`",
    "poll-next": "poll, following `next`",
    "push": f"push, POST of a {PUSH_SIZE}-object bundle",
    "status": "push, GET of its status",
}


# -- the load generator (runs in client processes) ----------------------------------------
class Http:
    """One keep-alive HTTP/1.1 connection over asyncio streams: a request out, then the status
    line, the headers and a Content-Length (or chunked) body back. Little work per request:
    the generator shares the cores with the server it measures."""

    def __init__(self, port: int, authorization: str) -> None:
        self.port = port
        self.fixed = (f"Host: 127.0.0.1:{port}\r\nAccept: {bt.TAXII}\r\n"
                      f"Authorization: {authorization}\r\n").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: bytes, target: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """(status, body). A GET on a kept-alive connection the server closed meanwhile (its
        idle timeout) is sent again once on a new one, as HTTP clients do (RFC 9112 9.3.1);
        such reconnects are counted, not hidden."""
        reused = self.writer is not None
        try:
            return await self._exchange(method, target, body)
        except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError) as exc:
            closed_before_answer = not (isinstance(exc, asyncio.IncompleteReadError)
                                        and exc.partial)
            if not (reused and method == b"GET" and closed_before_answer):
                raise
            self.close()
            self.reconnects += 1
            return await self._exchange(method, target, body)

    async def _exchange(self, method: bytes, target: bytes, body: bytes) -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port, limit=MIB)
        reader, writer = self.reader, self.writer
        head = b"%s %s HTTP/1.1\r\n%s" % (method, target, self.fixed)
        if body:
            head += b"Content-Type: %s\r\nContent-Length: %d\r\n" % (
                bt.TAXII.encode(), len(body))
        writer.write(head + b"\r\n" + body)
        if len(body) > 65536:
            await writer.drain()
        block = await reader.readuntil(b"\r\n\r\n")
        status = int(block[9:12])
        length, chunked, close = -1, False, False
        for line in block.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # no trailers are sent
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            data = b"".join(parts)
        elif length >= 0:
            data = await reader.readexactly(length)
        else:  # neither: the body runs to the end of the connection
            data = await reader.read()
            close = True
        if close:
            self.close()
        return status, data


@dataclass
class Tally:
    """What one client process saw: per request kind, the latencies of measured requests;
    warm-up requests (started before the measured window) are only counted."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: dict[str, str] = field(default_factory=dict)
    chosen: collections.Counter[str] = field(default_factory=collections.Counter)
    warmup_requests: int = 0
    reconnects: int = 0  # GETs sent again on a new connection: the server closed the old one
    warmup_reconnects: int = 0
    warmup_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    received: int = 0
    pushed: int = 0
    measure_start: float = float("inf")
    last_finish: float = 0.0

    def error(self, kind: str, what: str, example: str, measured: bool) -> None:
        key = f"{kind}: {what}"
        (self.errors if measured else self.warmup_errors)[key] += 1
        self.examples.setdefault(key, example[:200])


class LoadClient:
    def __init__(self, spec: dict[str, Any], index: int, tally: Tally) -> None:
        self.index = index
        self.tally = tally
        self.basic = index < spec["clients"] // 2
        partner = spec["partners"][index % len(spec["partners"])]
        self.http = Http(spec["port"], partner["basic"] if self.basic else partner["token"])
        self.objects = spec["objects_path"].encode()
        self.status_path = spec["status_path"]
        self.ids: list[str] = spec["ids"]
        self.stamps: list[str] = spec["stamps"]
        self.cuts: tuple[float, float] = spec["cuts"]
        self.follow: float = spec["follow"]
        self.timeout: float = spec["timeout"]
        self.rng = random.Random(spec["seed"] * 1000 + index)
        # new objects for pushes, created by this client's partner: a relationship refers to
        # the two objects before it, which the same 10-object bundle holds
        self.new_objects = bt.synthetic_objects(10**12, spec["seed"] + 1 + index,
                                                author=partner["identity"])

    async def call(self, kind: str, method: bytes, target: bytes,
                   body: bytes = b"") -> bytes | None:
        """One timed request; None (and an error counted) unless it was answered 2xx."""
        tally = self.tally
        started = time.monotonic()
        measured = started >= tally.measure_start
        reconnects = self.http.reconnects
        try:
            async with asyncio.timeout(self.timeout):
                status, data = await self.http.request(method, target, body)
                if self.http.reconnects != reconnects:
                    if measured:
                        tally.reconnects += 1
                    else:
                        tally.warmup_reconnects += 1
        except TimeoutError:
            self.http.close()  # the answer may still come: this connection is out of step
            tally.error(kind, "timeout", f"over {self.timeout:.0f} s: {target[:120]!r}",
                        measured)
            return None
        except (OSError, EOFError, asyncio.LimitOverrunError, ValueError) as exc:
            self.http.close()
            tally.error(kind, "connection error", repr(exc), measured)
            await asyncio.sleep(0.05)  # a refused connection must not turn into a busy loop
            return None
        finished = time.monotonic()
        if measured:
            tally.received += len(data)
            tally.latencies[kind].append(finished - started)
            tally.last_finish = max(tally.last_finish, finished)
        else:
            tally.warmup_requests += 1
        if not 200 <= status < 300:
            tally.error(kind, f"HTTP {status}", data[:200].decode(errors="replace"), measured)
            return None
        return data

    async def lookup(self) -> None:
        object_id = self.rng.choice(self.ids)
        kind = "lookup-basic" if self.basic else "lookup-token"
        data = await self.call(kind, b"GET", self.objects + b"?match%5Bid%5D="
                               + object_id.encode())
        if data is not None and object_id.encode() not in data:
            self.tally.error(kind, "answer without the object", object_id,
                             time.monotonic() >= self.tally.measure_start)

    async def poll(self) -> None:
        stamp = self.rng.choice(self.stamps)
        query = f"?added_after={stamp}&limit={POLL_LIMIT}"
        data = await self.call("poll", b"GET", self.objects + query.encode())
        if data is None or self.rng.random() >= self.follow:
            return
        try:  # paging members only: the objects are not needed
            head = bt._envelope_head(data)
        except orjson.JSONDecodeError:
            self.tally.error("poll", "not a TAXII envelope", data[:200].decode(errors="replace"),
                             time.monotonic() >= self.tally.measure_start)
            return
        if head.get("more") and head.get("next"):
            query += f"&next={quote(str(head['next']), safe='')}"
            await self.call("poll-next", b"GET", self.objects + query.encode())

    async def push(self) -> None:
        objects = [next(self.new_objects) for _ in range(PUSH_SIZE)]
        body = orjson.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                             "objects": objects})
        measured = time.monotonic() >= self.tally.measure_start  # as the POST will be
        data = await self.call("push", b"POST", self.objects, body)
        if data is None:
            return
        try:
            status_id = orjson.loads(data)["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.tally.error("push", "answer without a status id", data[:200].decode(
                errors="replace"), measured)
            return
        data = await self.call("status", b"GET", f"{self.status_path}{status_id}/".encode())
        if data is None:
            return
        try:
            doc = dict(orjson.loads(data))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            self.tally.error("status", "not a status resource", data[:200].decode(
                errors="replace"), measured)
            return
        if (doc.get("status") != "complete" or doc.get("success_count") != PUSH_SIZE
                or doc.get("failure_count")):
            self.tally.error("push", "status not complete with every object succeeded",
                             f"{doc.get('status')}: {doc.get('success_count')} succeeded, "
                             f"{doc.get('failure_count')} failed, {doc.get('pending_count')} "
                             f"pending of {doc.get('total_count')}", measured)
        elif measured:
            self.tally.pushed += PUSH_SIZE

    async def run(self, end: float) -> None:
        # A lookup first (a GET, sent again if the connection went stale): the server closes
        # a connection idle for 5 s, and the first requests of 50 clients can take that long
        # when every Basic client's password is checked with argon2 at once.
        await self.lookup()
        lookup_cut, poll_cut = self.cuts
        while time.monotonic() < end:
            pick = self.rng.random()
            op = "lookup" if pick < lookup_cut else "poll" if pick < poll_cut else "push"
            if time.monotonic() >= self.tally.measure_start:
                self.tally.chosen[op] += 1
            await (self.lookup() if op == "lookup" else
                   self.poll() if op == "poll" else self.push())
        self.http.close()


async def _generate(spec: dict[str, Any], barrier: Barrier) -> dict[str, Any]:
    tally = Tally()
    clients = [LoadClient(spec, index, tally) for index in spec["indexes"]]
    # connected, and each credential's first check (argon2 for a password) made, unmeasured
    first = time.monotonic()
    await asyncio.gather(*(c.lookup() for c in clients))
    first = time.monotonic() - first
    barrier.wait(timeout=300)  # every client process is ready: start together
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    tally.measure_start = start + spec["warmup"]
    end = tally.measure_start + spec["seconds"]
    cpu: dict[str, float] = {}
    loop.call_later(spec["warmup"], lambda: cpu.setdefault("start", time.process_time()))
    await asyncio.gather(*(c.run(end) for c in clients))
    cpu_end = time.process_time()
    # plain data crosses the process boundary: the class lives in this script's __main__
    return {"tally": vars(tally), "cpu": cpu_end - cpu.get("start", cpu_end), "first": first,
            "window": max(tally.last_finish, end) - tally.measure_start}


def client_process(spec: dict[str, Any], barrier: Barrier,
                   results: multiprocessing.Queue[dict[str, Any]]) -> None:
    """One load-generating process: its clients' tallies and CPU time go back on `results`."""
    try:
        results.put(asyncio.run(_generate(spec, barrier)))
    except BaseException as exc:  # reported by the parent
        with contextlib.suppress(Exception):
            barrier.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})


# -- memory --------------------------------------------------------------------------------
def _pss(pid: int) -> int:
    """PSS in bytes of one process: each shared page is divided among the processes mapping
    it, so the workers' common pages are not counted twice, as RSS counts them."""
    with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
        for line in rollup:
            if line.startswith(b"Pss:"):
                return int(line.split()[1]) * 1024
    return 0


class PssSampler(bt.RssSampler):
    """bench_taxii's sampler (RSS over the server and its children, every 50 ms) that also
    sums PSS, every 200 ms. It shares the cores with the server it measures, so it does the
    costly parts less often: smaps_rollup walks a process's page tables (about 1 ms for a
    150 MB worker), and finding children scans every process on the machine (once a second)."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self.pss_peak = 0
        self.pss_last = 0
        self.procs: list[psutil.Process] = []

    def sample(self) -> None:
        if self.samples % 20 == 0 or not self.procs:
            try:
                self.procs = [self.process, *self.process.children(recursive=True)]
            except psutil.Error:
                return
        with_pss = self.samples % 4 == 0
        rss = pss = 0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error, OSError, ValueError):
                rss += proc.memory_info().rss
                if with_pss:
                    pss += _pss(proc.pid)
        self.last = rss
        self.peak = max(self.peak, rss)
        if with_pss:
            self.pss_last = pss
            self.pss_peak = max(self.pss_peak, pss)
        self.samples += 1


def server_cpu(pid: int) -> float:
    """CPU seconds of the server and its children so far."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def busy_cpu() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def own_cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


# -- the store -----------------------------------------------------------------------------
class Batches:
    """The TAXII envelopes of N synthetic objects, generated as they are posted: at 1,000,000
    objects (about 1 GB as JSON) the whole workload is never in memory at once. It stands in
    for bench_taxii's list of batches, which its ingest measurement only iterates and counts."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        self.n, self.batch, self.seed = n, batch, seed

    def __len__(self) -> int:
        return -(-self.n // self.batch)

    def __iter__(self) -> Iterator[bytes]:
        chunk: list[dict[str, Any]] = []
        done, step = 0, max(self.batch, self.n // 10)
        for obj in bt.synthetic_objects(self.n, self.seed):
            chunk.append(obj)
            if len(chunk) == self.batch:
                yield orjson.dumps({"objects": chunk})
                done += len(chunk)
                chunk = []
                if done % step < self.batch:
                    print(f"[load] posted {done:,} of {self.n:,}", file=sys.stderr, flush=True)
        if chunk:
            yield orjson.dumps({"objects": chunk})


def cache_file(n: int, seed: int) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "taxii-exchange" / "bench-load" / f"store-n{n}-seed{seed}.sqlite3"


def copy_store(source: Path, target: Path) -> None:
    """The SQLite file (and its WAL, if one was left) copied; `target` is written under a
    temporary name first, so an interrupted copy never looks like a complete store."""
    for suffix in ("", "-wal"):
        origin = Path(f"{source}{suffix}")
        if origin.exists():
            partial = Path(f"{target}{suffix}.partial")
            shutil.copyfile(origin, partial)
            partial.replace(f"{target}{suffix}")


@dataclass
class Survey:
    count: int
    ids: list[str]  # a uniform sample of the stored ids
    stamps: list[str]  # date_added of the newest objects, URL-encoded
    seconds: float


def survey(target: bt.Target, sample: int, window: int, seed: int) -> Survey:
    """One walk of the manifest (every record's id and date_added, in date_added order):
    a reservoir sample of ids and the dates of the newest `window` objects."""
    rng = random.Random(seed + 7)
    ids: list[str] = []
    stamps: collections.deque[str] = collections.deque(maxlen=window)
    count, token = 0, ""
    started = time.perf_counter()
    client = target.client(target.bearer)
    try:
        while True:
            params = {"limit": str(MANIFEST_PAGE), **({"next": token} if token else {})}
            doc, _ = client.get_json(f"{target.manifest_path}?{urlencode(params)}",
                                     bt.Deadline(target.op_timeout))
            for record in doc.get("objects", ()):
                count += 1
                if len(ids) < sample:
                    ids.append(record["id"])
                else:
                    slot = rng.randrange(count)
                    if slot < sample:
                        ids[slot] = record["id"]
                stamps.append(record["date_added"])
            if not doc.get("more"):
                break
            token = doc["next"]
    finally:
        client.close()
    if not ids:
        raise bt.BenchError("the store holds no objects")
    return Survey(count, ids, [quote(s, safe="") for s in stamps],
                  time.perf_counter() - started)


# -- the run -------------------------------------------------------------------------------
def parse_mix(text: str) -> dict[str, float]:
    weights = {op: 0.0 for op in OPS}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in weights or not value.strip():
            raise ValueError(f"--mix takes {'=W,'.join(OPS)}=W, not {text!r}")
        weights[name.strip()] = float(value)
    total = sum(weights.values())
    if total <= 0 or min(weights.values()) < 0:
        raise ValueError("--mix weights must be >= 0, with a positive sum")
    return {op: w / total for op, w in weights.items()}


def load_partners(tree: bt.Tree, config: Path, count: int) -> list[dict[str, str]]:
    """`count` partners who may read and push, each with its own identity, token and
    password, made with the checkout's own `partners add`."""
    made = []
    for number in range(1, count + 1):
        name = f"load-{number:02d}"
        identity = f"identity--{uuid.uuid5(IDENTITY_NAMESPACE, name)}"
        token, password = bt.add_partner(tree, config, name, (GROUP,), identity,
                                         clearance="red")
        made.append({"name": name, "identity": identity, "token": f"Bearer {token}",
                     "basic": bt._basic(name, password)})
    return made


@dataclass
class Outcome:
    tallies: list[Tally]
    client_cpu: float
    window: float
    server_cpu: float
    own_cpu: float
    foreign_cpu: float
    wall: float
    first_seconds: float


def run_load(target: bt.Target, spec: dict[str, Any], processes: int) -> Outcome:
    assert target.proc is not None
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    results: multiprocessing.Queue[dict[str, Any]] = context.Queue()
    workers = []
    for number in range(processes):
        part = dict(spec, indexes=list(range(number, spec["clients"], processes)))
        worker = context.Process(target=client_process, args=(part, barrier, results),
                                 daemon=True, name=f"load-clients-{number}")
        worker.start()
        workers.append(worker)
    try:
        barrier.wait(timeout=300)
    except threading.BrokenBarrierError:
        raise bt.BenchError(f"a client process failed to start: {results.get(timeout=30)}"
                            ) from None
    time.sleep(spec["warmup"])
    cpu = (server_cpu(target.proc.pid), own_cpu(), busy_cpu(), time.monotonic())
    outcomes = [results.get(timeout=spec["warmup"] + spec["seconds"] + spec["timeout"] + 120)
                for _ in workers]
    server, own, busy = (server_cpu(target.proc.pid) - cpu[0], own_cpu() - cpu[1],
                         busy_cpu() - cpu[2])
    wall = time.monotonic() - cpu[3]
    for worker in workers:
        worker.join(timeout=30)
    failed = [o["error"] for o in outcomes if "error" in o]
    if failed:
        raise bt.BenchError(f"a client process failed: {failed[0]}")
    client = sum(o["cpu"] for o in outcomes)
    return Outcome([Tally(**o["tally"]) for o in outcomes], client,
                   max(o["window"] for o in outcomes), server, own,
                   max(0.0, busy - server - own - client), wall,
                   max(o["first"] for o in outcomes))


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(args: argparse.Namespace, outcome: Outcome, facts: list[str], setup: list[str],
           memory: dict[str, float], command: str, neighbours: str) -> str:
    window = outcome.window
    latencies: dict[str, list[float]] = {k: [] for k in KINDS}
    errors: collections.Counter[str] = collections.Counter()
    warmup_errors: collections.Counter[str] = collections.Counter()
    chosen: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    received = pushed = warmup_requests = reconnects = warmup_reconnects = 0
    for tally in outcome.tallies:
        for kind, values in tally.latencies.items():
            latencies[kind] += values
        errors.update(tally.errors)
        warmup_errors.update(tally.warmup_errors)
        chosen.update(tally.chosen)
        for key, text in tally.examples.items():
            examples.setdefault(key, text)
        received += tally.received
        pushed += tally.pushed
        warmup_requests += tally.warmup_requests
        reconnects += tally.reconnects
        warmup_reconnects += tally.warmup_reconnects
    requests = sum(len(v) for v in latencies.values())
    error_count = sum(errors.values())
    rate = requests / window if window else 0.0

    def row(label: str, values: list[float], errs: int) -> str:
        values = sorted(values)
        if not values:
            return f"| {label} | 0 | 0 | - | - | - | - | {errs:,} |"
        return (f"| {label} | {len(values):,} | {len(values) / window:,.0f} | "
                f"{_ms(_pct(values, 0.50))} | {_ms(_pct(values, 0.95))} | "
                f"{_ms(_pct(values, 0.99))} | {_ms(values[-1])} | {errs:,} |")

    def errors_of(*kinds: str) -> int:
        return sum(c for key, c in errors.items() if key.split(":")[0] in kinds)

    lines = [f"## Mixed-load benchmark ({datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')})",
             "", f"Command: `{command}`", "", *facts, "", *setup, "",
             "| Request | Requests | Requests/s | p50 ms | p95 ms | p99 ms | max ms | Errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, label in KINDS.items():
        lines.append(row(label, latencies[kind], errors_of(kind)))
    lookups = latencies["lookup-token"] + latencies["lookup-basic"]
    lines.append(row("lookup, both", lookups, errors_of("lookup-token", "lookup-basic")))
    lines.append(row("**all requests**", [v for vs in latencies.values() for v in vs],
                     error_count))
    ops = sum(chosen.values()) or 1
    client_per_request = outcome.client_cpu / requests * 1e6 if requests else 0.0
    server_per_request = outcome.server_cpu / requests * 1e6 if requests else 0.0
    lines += [
        "", "| Measurement | Value |", "|---|---|",
        f"| Requests/s, all requests ({window:.1f} s measured) | {rate:,.0f} |",
        "| Operations chosen (lookup / poll / push) | "
        + " / ".join(f"{chosen[op]:,} ({chosen[op] / ops:.0%})" for op in OPS) + " |",
        "| Objects pushed (and complete at their status GET) in the measured window | "
        f"{pushed:,} |",
        f"| Received, MB/s | {received / MIB / max(outcome.wall, 1e-9):,.1f} |",
        "| Errors by kind | " + ("; ".join(
            f"{key}: {count:,} (e.g. {examples.get(key, '')!r})"
            for key, count in errors.most_common()) or "none") + " |",
        f"| GETs sent again on a new connection (the server had closed the kept-alive one) "
        f"| {reconnects:,} (warm-up: {warmup_reconnects:,}) |",
        f"| Each client's first request (connect, first credential check), slowest | "
        f"{outcome.first_seconds:.2f} s |",
        f"| Warm-up ({args.warmup:g} s, not measured): requests, errors | "
        f"{warmup_requests:,}, " + ("; ".join(
            f"{key}: {count:,} (e.g. {examples.get(key, '')!r})"
            for key, count in warmup_errors.most_common()) or "none") + " |",
        f"| Server PSS peak over all processes, MB (RSS peak) | {memory['pss_peak']:,.0f} "
        f"({memory['rss_peak']:,.0f}) |",
        f"| Server PSS before the load / at the end, MB | {memory['pss_idle']:,.0f} / "
        f"{memory['pss_end']:,.0f} |",
        f"| Server CPU, all processes | {outcome.server_cpu:,.1f} CPU-s "
        f"({outcome.server_cpu / outcome.wall:.2f} cores; {server_per_request:,.0f} µs per "
        "request) |",
        f"| Client CPU ({args.client_processes} process(es), {args.clients} clients) | "
        f"{outcome.client_cpu:,.1f} CPU-s ({outcome.client_cpu / outcome.wall:.2f} cores; "
        f"{client_per_request:,.0f} µs per request) |",
        f"| This script's own process (memory sampling) | {outcome.own_cpu:,.1f} CPU-s |",
        f"| Other processes on the machine | {outcome.foreign_cpu:,.1f} CPU-s "
        f"({outcome.foreign_cpu / outcome.wall:.2f} cores) |",
    ]
    met = rate >= 1500 and error_count == 0
    lines += ["", "Target:",
              f"- {'met' if met else 'MISSED'}: >= 1,500 requests/s with 0 errors, "
              f"{args.clients} clients, `serve --workers {args.workers}`: {rate:,.0f} "
              f"requests/s, {error_count:,} errors", "", neighbours]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="objects in the store")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=60, help="measured load, seconds")
    parser.add_argument("--warmup", type=float, default=3,
                        help="load before the measured window, seconds")
    parser.add_argument("--workers", type=int, default=2, help="`serve --workers`")
    parser.add_argument("--mix", default="lookup=60,poll=30,push=10",
                        help="weights of the operations a client picks from")
    parser.add_argument("--follow", type=float, default=0.25,
                        help="probability that a poll follows its page's `next` once")
    parser.add_argument("--partners", type=int, default=10,
                        help="partners the clients are spread over")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="processes generating the load (clients split evenly)")
    parser.add_argument("--poll-window", type=int, default=10_000,
                        help="polls start after the date_added of one of this many newest "
                             "objects")
    parser.add_argument("--lookup-ids", type=int, default=100_000,
                        help="stored ids sampled for lookups")
    parser.add_argument("--timeout", type=float, default=10,
                        help="a request unanswered after this many seconds is an error")
    parser.add_argument("--seed", type=int, default=bt.SEED)
    parser.add_argument("--store-from", type=Path,
                        help="start from a copy of this SQLite store (built by this script)")
    parser.add_argument("--keep-store", action="store_true",
                        help="reuse, or build and keep, the store under "
                             "~/.cache/taxii-exchange/bench-load/ (keyed by N and seed)")
    parser.add_argument("--tree", type=Path, default=bt.REPO,
                        help="the checkout the server runs from (default: this one)")
    parser.add_argument("--out", help="also write the Markdown report here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    try:
        weights = parse_mix(args.mix)
    except ValueError as exc:
        parser.error(str(exc))
    if args.clients < 1 or not 1 <= args.client_processes <= args.clients:
        parser.error("--clients must be >= 1 and --client-processes between 1 and --clients")
    if args.store_from and not args.store_from.is_file():
        parser.error(f"--store-from {args.store_from}: no such file")

    bt.WORKERS = args.workers
    signal.signal(signal.SIGTERM, bt._on_signal)
    signal.signal(signal.SIGHUP, bt._on_signal)
    atexit.register(bt._stop_all)
    command = " ".join([os.path.relpath(sys.executable), *sys.argv]) if argv is None else \
        " ".join(["bench_load.py", *argv])
    tree = bt.server_tree(args.tree)
    facts = bt.machine_facts({"Server": tree})
    facts.append(f"- served by `serve --workers {args.workers}` on SQLite (memory: every "
                 "process of the server)")
    foreign = bt.ForeignCpu()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="taxii-load-"))
    target = bt.Target(label=f"load N={args.n:,}", kind="exchange", n=args.n,
                       op_timeout=3600, match_samples=0, pull_repeats=0,
                       directory=workdir / "server", tree=tree)
    target.directory.mkdir()
    try:
        config = bt.write_exchange_config(
            target, {"read": [f"group:{GROUP}"], "write": [f"group:{GROUP}"]},
            {"default_marking": "amber", "red_recipients": [
                f"partner:{bt.PARTNER}",
                *(f"partner:load-{i:02d}" for i in range(1, args.partners + 1))]})
        token, password = bt.add_partner(tree, config, bt.PARTNER, (GROUP,),
                                         bt.PARTNER_IDENTITY, clearance="red")
        target.bearer, target.basic = f"Bearer {token}", bt._basic(bt.PARTNER, password)
        target.read_auth = target.bearer
        partners = load_partners(tree, config, args.partners)
        store = target.directory / "store.sqlite3"
        cached = cache_file(args.n, args.seed)
        source = args.store_from or (cached if args.keep_store and cached.is_file() else None)
        if source is not None:
            t0 = time.perf_counter()
            copy_store(source, store)
            origin = f"a copy of {source} ({time.perf_counter() - t0:.0f} s to copy)"
            print(f"[load] store: {origin}", file=sys.stderr, flush=True)
        else:
            print(f"[load] building the store: {args.n:,} objects by POST ...",
                  file=sys.stderr, flush=True)
            bt.serve_exchange(target, config)
            workload = bt.Workload(args.n, BUILD_BATCH, cast(list[bytes], Batches(
                args.n, BUILD_BATCH, args.seed)), [], 0.0)
            bt.measure_ingest(target, workload)
            assert target.proc is not None and target.sampler is not None
            target.sampler.stop()
            bt._stop(target.proc)
            origin = (f"built by POST, {BUILD_BATCH:,} objects per request, at "
                      f"{target.results['ingest']} objects/s ({target.results['ingest_detail']})")
            if args.keep_store:
                cached.parent.mkdir(parents=True, exist_ok=True)
                copy_store(store, cached)
                origin += f"; kept as {cached}"
        size = sum(f.stat().st_size for f in target.directory.glob("store.sqlite3*")) / MIB

        print("[load] starting the server ...", file=sys.stderr, flush=True)
        bt.serve_exchange(target, config)
        assert target.proc is not None and target.sampler is not None
        target.sampler.stop()  # replaced by one that also reads PSS
        found = survey(target, args.lookup_ids, args.poll_window, args.seed)
        sampler = PssSampler(target.proc.pid)
        sampler.sample()
        pss_idle = sampler.pss_last
        sampler.start()
        setup = [
            f"- Store: {found.count:,} objects ({size:,.0f} MB on disk), {origin}",
            f"- Load: {args.clients} clients on one keep-alive connection each, in "
            f"{args.client_processes} process(es), over {args.partners} partners (half HTTP "
            f"Basic, half API token); {args.warmup:g} s warm-up, then {args.seconds:g} s "
            "measured",
            "- Mix: " + ", ".join(f"{op} {w:.0%}" for op, w in weights.items())
            + f"; a poll is `added_after` one of the newest {args.poll_window:,} objects' "
            f"dates, `limit={POLL_LIMIT}`, following `next` once with probability "
            f"{args.follow:g}; a push is a {PUSH_SIZE}-object bundle, then one GET of its "
            f"status; lookups draw from {len(found.ids):,} sampled ids (sampled by one "
            f"manifest walk in {found.seconds:.1f} s)",
        ]
        if args.store_from is None and found.count != args.n:
            setup.append(f"- NOTE: the store holds {found.count:,} objects, not --n {args.n:,}")
        spec = {
            "port": target.port, "clients": args.clients, "partners": partners,
            "objects_path": target.objects_path, "status_path": f"/{bt.ROOT}/status/",
            "ids": found.ids, "stamps": found.stamps,
            "cuts": (weights["lookup"], weights["lookup"] + weights["poll"]),
            "follow": args.follow, "timeout": args.timeout, "seed": args.seed,
            "warmup": args.warmup, "seconds": args.seconds,
        }
        print(f"[load] {args.clients} clients for {args.warmup:g} + {args.seconds:g} s ...",
              file=sys.stderr, flush=True)
        outcome = run_load(target, spec, args.client_processes)
        target.alive()
        sampler.stop()
        memory = {"pss_peak": sampler.pss_peak / MIB, "rss_peak": sampler.peak / MIB,
                  "pss_idle": pss_idle / MIB, "pss_end": sampler.pss_last / MIB}
    finally:
        bt._stop_all()
        if args.keep:
            print(f"[load] kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    neighbours = foreign.summary() + f"; total run time {time.monotonic() - started:.0f} s"
    text = report(args, outcome, facts, setup, memory, command, neighbours)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
