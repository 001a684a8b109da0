#!/usr/bin/env python
"""What a federation sync costs: `taxii-exchange sync` between two nodes of this project (an
EU node and a US node), and with medallion 3.0.0 as the peer, end to end.

    .venv/bin/python tests/bench/bench_federation.py [--n 100000] [--medallion-n 5000]
                                                     [--tree PATH] [--out FILE]

Every server is a real subprocess on 127.0.0.1, started from a checkout (this one, or --tree
PATH: its code first on PYTHONPATH, as in bench_taxii.py) over a fresh store in a temporary
folder. Each node has one collection (`default_marking: amber`, read and write for
group:analysts and group:peers, both groups RED recipients), its own partners file (made with
the checkout's `partners add`) and its own peers.yaml:

- EU node: partner eu-analyst (group analysts, clearance red, identity EU-ANALYST) and the US
  node as partner us-node (group peers, clearance red, a RED recipient through its group,
  relays US-ANALYST);
- US node: partner us-analyst, and the EU node as partner eu-node (group peers, clearance
  red, relays EU-ANALYST): every pulled or pushed SDO/SRO names EU-ANALYST as
  `created_by_ref`, an identity the peer relays, so each one passes the write path's check.

The objects are bench_taxii.py's synthetic mix (indicators, ipv4-addr observables and
relationships, 4:3:3, about 1 KB each) with TLP 2.0 markings spread over every level (object i:
RED when i % 10 == 0, AMBER for 1-3, GREEN for 4-6, CLEAR for 7-9): the US node's partner is
cleared for all of it, so a sync moves every object and the policy still decides each one.
They are loaded through the EU node's API as eu-analyst (TAXII POST, 1,000 per request, every
status complete), untimed. A node's peers.yaml is written only after its server started, so
no server runs background syncs (`serve` syncs its peers at their interval): only the timed
commands move objects.

Measured, each as the wall time of one `python -m exchange --config CFG sync --direction D`
command run from the checkout (process start, imports, pull or push, checks, store, exit),
with the command's own CPU time and peak RSS and the CPU time each server used meanwhile:

1. first sync of N objects (default 100,000) pulled by the US node from the EU node
   (`--config US sync --direction pull`): objects/s = N / wall time. Then, as a separate
   figure, the same N pushed by the EU node to a second, empty US node
   (`--config EU sync --direction push`);
2. incremental rounds: --new objects (default 1,000) added to the EU node through its API
   (untimed), then one pull at the US node (and one push from the EU node to the second US
   node): wall time; --rounds of them, each reported. Then rounds with nothing new;
3. the same with medallion 3.0.0 (memory backend, started as bench_taxii.py does) at
   --medallion-n objects: a US node pulls from a medallion loaded through its API (objects
   created by an identity its `medallion` partner relays), and an EU node loaded with the same
   number pushes to another, empty medallion; then the incremental and nothing-new rounds.
   medallion gives every object of one POST the same date_added; it is loaded in envelopes
   of N/20 (as bench_taxii.py does), so a sync page holds objects of more than one request.

Also reported: `sync status` wall time at the US node, the floor under any sync command
(Python start, imports, settings, opening the store). --profile DIR runs every timed command
under py-spy (200 Hz, the command and the peer's server) and adds where their samples fall;
its figures are then slowed by the sampling.

Targets (reported, never asserted): first sync between two nodes >= 5,000 objects/s; an
incremental round of 1,000 objects under 1 s. Every server listens on 127.0.0.1 only and is
stopped on exit. The result is a Markdown report on stdout (and in --out).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import collections
import contextlib
import importlib.metadata
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

try:
    from . import bench_taxii as bt
except ImportError:  # run as a script: tests/bench is on sys.path
    import bench_taxii as bt  # type: ignore[no-redef]

# TLP 2.0 marking definitions (exchange/markings.py has them; the bench keeps its own copy).
TLP2 = {"clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
        "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
        "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
        "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"}
EU_ANALYST = "identity--2a7c5e13-8b4d-4f06-9c1e-3d5a7b9e0f21"
US_ANALYST = "identity--5e9b1d27-0c3a-4e48-8f6d-1b2c3a4d5e62"
EU_NODE = "identity--7c1e3a59-2d4b-4a6f-8e0c-9f1a2b3c4d83"
US_NODE = "identity--8d2f4b6a-3e5c-4b70-9f1d-0a2b3c4d5e94"
MEDALLION_NODE = "identity--9e3a5c7b-4f6d-4c81-a02e-1b3c4d5e6fa5"
MEDALLION_SOURCE = "identity--0f4b6d8c-5a7e-4d92-b13f-2c4d5e6f7ab6"  # authors objects there
ANALYSTS, PEERS = "analysts", "peers"
LINE = re.compile(r"^(?P<peer>\S+) (?P<direction>pull|push): (?:pulled|pushed) (?P<moved>\d+), "
                  r"unchanged (?P<unchanged>\d+), failed (?P<failed>\d+)"
                  r"(?:; error: (?P<error>.*))?$")


def marking(i: int) -> str:
    slot = i % 10
    return TLP2["red" if slot == 0 else "amber" if slot <= 3 else "green" if slot <= 6
                else "clear"]


# -- nodes --------------------------------------------------------------------------------
@dataclass
class Node:
    """One taxii-exchange node: its folder, its partners' secrets, its server."""

    name: str
    target: bt.Target
    config: Path
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (token, password)

    @property
    def collection_url(self) -> str:
        return f"http://127.0.0.1:{self.target.port}/{bt.ROOT}/collections/{bt.COLLECTION}/"

    def bearer(self, partner: str) -> str:
        return f"Bearer {self.secrets[partner][0]}"


@dataclass(frozen=True)
class PartnerSpec:
    id: str
    group: str
    identity: str
    relay_for: tuple[str, ...] = ()
    clearance: str = "red"


def add_partner(tree: bt.Tree, config: Path, spec: PartnerSpec) -> tuple[str, str]:
    """A partner added with the checkout's own CLI; its (token, password)."""
    command = tree.command("--config", str(config), "partners", "add", spec.id,
                           "--name", f"Benchmark partner {spec.id}", "--identity",
                           spec.identity, "--group", spec.group, "--clearance", spec.clearance)
    for identity in spec.relay_for:
        command += ["--relay-for", identity]
    done = subprocess.run(command, env=tree.env, cwd=config.parent, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise bt.BenchError(f"partners add {spec.id}: {done.stderr.strip()[-500:]}")
    found = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    return found["token"].strip(), found["password"].strip()


def start_node(tree: bt.Tree, directory: Path, name: str, partners: list[PartnerSpec],
               timeout: float) -> Node:
    """A node's files and its server; no peers.yaml yet (see `write_peers`)."""
    directory.mkdir(parents=True)
    target = bt.Target(label=name, kind="exchange", n=0, op_timeout=timeout, match_samples=0,
                       pull_repeats=0, directory=directory, tree=tree)
    groups = [f"group:{ANALYSTS}", f"group:{PEERS}"]
    config = bt.write_exchange_config(target, {"read": groups, "write": groups},
                                      {"default_marking": "amber", "red_recipients": groups})
    node = Node(name, target, config)
    for spec in partners:
        node.secrets[spec.id] = add_partner(tree, config, spec)
    analyst = next(s.id for s in partners if s.group == ANALYSTS)
    target.bearer = target.read_auth = node.bearer(analyst)
    bt.serve_exchange(target, config)
    return node


def write_peers(node: Node, peers: list[dict[str, Any]]) -> None:
    """The node's peers.yaml; written after its server started, so that the server runs no
    background syncs (it read no peers) and only the `sync` commands move objects."""
    (node.target.directory / "peers.yaml").write_text(yaml.safe_dump({"peers": peers}))


def peer_entry(name: str, url: str, user: str, variable: str, direction: str,
               page_size: int) -> dict[str, Any]:
    return {"name": name, "url": url, "local_collection": "bench", "direction": direction,
            "page_size": page_size, "timeout_seconds": 600,
            "auth": {"user": user, "password_env": variable}}


def eu_partners() -> list[PartnerSpec]:
    return [PartnerSpec("eu-analyst", ANALYSTS, EU_ANALYST),
            PartnerSpec("us-node", PEERS, US_NODE, (US_ANALYST,))]


def us_partners() -> list[PartnerSpec]:
    return [PartnerSpec("us-analyst", ANALYSTS, US_ANALYST),
            PartnerSpec("eu-node", PEERS, EU_NODE, (EU_ANALYST,))]


def workload(n: int, seed: int, author: str, batch: int) -> bt.Workload:
    return bt.make_workload(n, batch, objects=bt.synthetic_objects(
        n, seed, author=author, marking=marking))


def load(target: bt.Target, work: bt.Workload) -> float:
    """Push the objects through the target's API (untimed for the report); objects/s."""
    target.alive()
    bt.measure_ingest(target, work)
    return target.raw["ingest"]


def count_at(node: Node, expect: int, timeout: float) -> int:
    """How many object versions the node's analyst (sees everything) reads back."""
    client = node.target.client()
    try:
        return bt.pull(client, node.target.objects_path, bt.Deadline(timeout), expect,
                       {"match[version]": "all"}, parse=True).count
    finally:
        client.close()


# -- one timed sync command -----------------------------------------------------------------
@dataclass
class Sync:
    label: str
    wall: float = 0.0
    cpu: float = 0.0  # the command's own CPU seconds (user + system)
    rss: float = 0.0  # its peak RSS, MiB
    servers: dict[str, float] = field(default_factory=dict)  # server label -> CPU seconds
    moved: int = 0
    unchanged: int = 0
    failed: int = 0
    error: str = ""
    expected: int | None = None
    output: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not self.failed and (
            self.expected is None or self.moved == self.expected)

    def rate(self) -> float:
        return self.moved / self.wall if self.wall else 0.0

    def cpu_text(self) -> str:
        parts = [f"command {self.cpu:.2f}"] + [f"{k} {v:.2f}" for k, v in self.servers.items()]
        return ", ".join(parts)

    def summary(self, with_rate: bool = False) -> str:
        if self.error:
            return f"error: {self.error[:120]}"
        text = f"{self.wall:.2f} s"
        if with_rate:
            text += f" ({self.rate():,.0f} objects/s)"
        text += f"; moved {self.moved:,}, unchanged {self.unchanged:,}, failed {self.failed:,}"
        if self.expected is not None and self.moved != self.expected:
            text += f" (EXPECTED {self.expected:,} moved)"
        return text


def _cpu(proc: psutil.Process) -> float:
    total = 0.0
    with contextlib.suppress(psutil.Error):
        for p in (proc, *proc.children(recursive=True)):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Profiler:
    """py-spy on the sync command and on the servers while it runs (raw collapsed stacks)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.files: list[tuple[str, Path]] = []
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self.binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

    def wrap(self, label: str, command: list[str]) -> list[str]:
        if self.directory is None:
            return command
        out = self.directory / f"{_slug(label)}-command.txt"
        self.files.append((f"{label}: the sync command", out))
        return [self.binary, "record", "--format", "raw", "--rate", "200", "--nonblocking",
                "-o", str(out), "--", *command]

    def attach(self, label: str, servers: dict[str, bt.Target]) -> list[subprocess.Popen[bytes]]:
        if self.directory is None:
            return []
        procs = []
        for name, target in servers.items():
            assert target.proc is not None
            out = self.directory / f"{_slug(label)}-{_slug(name)}.txt"
            self.files.append((f"{label}: {name} server", out))
            procs.append(subprocess.Popen(
                [self.binary, "record", "--format", "raw", "--rate", "200", "--nonblocking",
                 "--pid", str(target.proc.pid), "-o", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5 if procs else 0)  # attached before the command starts
        return procs

    @staticmethod
    def detach(procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def report(self, top: int = 14) -> list[str]:
        lines = []
        for label, path in self.files:
            if not path.exists():
                continue
            found = _inclusive(path, top)
            if not found:
                continue
            lines += [f"**{label}** ({path.name}): share of its samples in each function "
                      "(inclusive), most first", ""]
            lines += [f"    {share:6.1%}  {name}" for name, share in found]
            lines.append("")
        return lines


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


_LIBRARIES = ("exchange/", "lark/", "rfc3987_syntax/", "jsonschema/", "requests/", "urllib3/",
              "http/client.py", "socket.py", "sqlite3/", "taxii2client/", "json/", "yaml/",
              "argon2/", "fastapi/", "starlette/", "medallion/", "flask/", "werkzeug/",
              "copy.py")


def _inclusive(path: Path, top: int) -> list[tuple[str, float]]:
    """The functions (of this project and of the libraries that matter here) present in the
    most samples of a py-spy raw file, with a row for all module imports. Frames present in
    nearly every sample (entry points, the event loop) are left out."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        samples = int(number)
        total += samples
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        if any(f.startswith("_find_and_load ") for f in frames):
            counts["(importing modules)"] += samples
        for frame in dict.fromkeys(frames):
            where = frame.rpartition("(")[2]
            if where.startswith(_LIBRARIES):
                counts[frame] += samples
    if not total:
        return []
    ranked = [(name, n / total) for name, n in counts.most_common() if n / total < 0.99]
    return ranked[:top]


class Foreign:
    """CPU time other processes used since it was made: the machine's busy time less this
    process's and its descendants' (servers still running included, unlike bt.ForeignCpu,
    which counts a server only once it has been stopped)."""

    def __init__(self) -> None:
        self.system, self.own, self.wall = bt.ForeignCpu._system(), self._own(), \
            time.monotonic()

    @staticmethod
    def _own() -> float:
        me = psutil.Process()
        times = me.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        with contextlib.suppress(psutil.Error):
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child_times = child.cpu_times()
                    total += child_times.user + child_times.system
        return total

    def short(self) -> str:
        wall = time.monotonic() - self.wall
        foreign = max(0.0, (bt.ForeignCpu._system() - self.system) - (self._own() - self.own))
        return f"{foreign:,.0f} CPU-s in {wall:,.0f} s ({foreign / wall:.0%} of one core)"


def run_sync(label: str, tree: bt.Tree, config: Path, direction: str, env: dict[str, str],
             servers: dict[str, bt.Target], timeout: float, profiler: Profiler,
             expected: int | None = None) -> Sync:
    """One `sync --direction D` command, timed from before the process starts to its exit."""
    result = Sync(label, expected=expected)
    command = profiler.wrap(label, tree.command("--config", str(config), "sync",
                                                "--direction", direction))
    for target in servers.values():
        target.alive()
    spies = profiler.attach(label, servers)
    watched = {name: psutil.Process(t.proc.pid) for name, t in servers.items() if t.proc}
    before_servers = {name: _cpu(p) for name, p in watched.items()}
    before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(command, env={**tree.env, **env}, cwd=config.parent,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    sampler = bt.RssSampler(proc.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        result.error = f"over {timeout:.0f} s"
    result.wall = time.perf_counter() - started
    sampler.stop()
    result.cpu = _children_cpu() - before
    result.servers = {name: _cpu(p) - before_servers[name] for name, p in watched.items()}
    Profiler.detach(spies)
    result.rss = sampler.peak / bt.MIB
    text = out.decode(errors="replace")
    result.output = (text + err.decode(errors="replace")).strip()
    lines = [m for m in map(LINE.match, text.splitlines()) if m]
    if not result.error:
        if len(lines) != 1:
            result.error = f"exit {proc.returncode}: {result.output[-300:]}"
        else:
            found = lines[0]
            result.moved, result.unchanged = int(found["moved"]), int(found["unchanged"])
            result.failed = int(found["failed"])
            result.error = found["error"] or ("" if proc.returncode == 0 else
                                              f"exit {proc.returncode}")
    status = "ok" if result.ok else "NOT OK"
    print(f"[bench] {label}: {result.summary(with_rate=True)} [{status}]", file=sys.stderr,
          flush=True)
    return result


def status_floor(tree: bt.Tree, config: Path, repeats: int = 5) -> list[float]:
    """Wall times of `sync status`: Python start, imports, settings, store opened, exit."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(tree.command("--config", str(config), "sync", "status"), env=tree.env,
                       cwd=config.parent, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return times


def import_costs(tree: bt.Tree, config: Path, top: int = 4) -> str:
    """What importing the sync command costs (`python -X importtime`): the total, and the
    modules whose own import took longest (their import-time work, e.g. a grammar built)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "exchange", "--config",
                           str(config), "sync", "status"], env=tree.env, cwd=config.parent,
                          capture_output=True, text=True, check=True)
    own: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[0][12:].strip() \
                .isdigit():
            own.append((int(parts[0][12:]), parts[2].strip()))
    total = sum(us for us, _ in own) / 1e6
    largest = ", ".join(f"{name} {us / 1e6:.2f} s" for us, name in sorted(own)[::-1][:top])
    return f"imports take {total:.2f} s in all; the slowest of their own: {largest}"


def interpreter_fact() -> str:
    """The interpreter every server and command runs on, and whether jsonschema finds its
    optional rfc3987-syntax there: importing it builds a grammar (about 0.8 s here) in every
    process that imports jsonschema, as the sync command does. The test extra brings it
    (stix2-validator needs jsonschema[format-nongpl]); a production install does not."""
    try:
        found = f"installed ({importlib.metadata.version('rfc3987-syntax')})"
    except importlib.metadata.PackageNotFoundError:
        found = "not installed"
    return (f"- Interpreter for servers and commands: {sys.executable}; rfc3987-syntax "
            f"(jsonschema's optional IRI checker, imported with jsonschema): {found}")


# -- the scenarios ------------------------------------------------------------------------
@dataclass
class Scenario:
    """One column of the report: a first sync and its rounds, one peer and direction."""

    label: str
    n: int = 0
    load_rate: float = 0.0
    first: Sync | None = None
    rounds: list[Sync] = field(default_factory=list)
    idle: list[Sync] = field(default_factory=list)
    verified: str = ""
    error: str = ""
    notes: list[str] = field(default_factory=list)
    foreign: str = ""  # CPU other processes used while its commands ran


def _new_objects(n: int, index: int, author: str, batch: int) -> bt.Workload:
    return workload(n, bt.SEED + 1000 + index, author, batch)


def node_to_node(tree: bt.Tree, workdir: Path, args: argparse.Namespace,
                 profiler: Profiler) -> tuple[Scenario, Scenario, list[float]]:
    """The EU node with N objects; US node A pulls them, US node B has them pushed."""
    pull = Scenario("US node pulls from the EU node", args.n)
    push = Scenario("EU node pushes to the US node", args.n)
    floor: list[float] = []
    eu = us_a = us_b = None
    try:
        eu = start_node(tree, workdir / "eu", "eu", eu_partners(), args.timeout)
        us_a = start_node(tree, workdir / "us-a", "us-a", us_partners(), args.timeout)
        us_b = start_node(tree, workdir / "us-b", "us-b", us_partners(), args.timeout)
        t0 = time.perf_counter()
        work = workload(args.n, bt.SEED, EU_ANALYST, args.batch)
        print(f"[bench] generated {args.n:,} objects in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr, flush=True)
        pull.load_rate = push.load_rate = load(eu.target, work)
        del work
        print(f"[bench] loaded the EU node: {pull.load_rate:,.0f} objects/s", file=sys.stderr,
              flush=True)
        # The US node signs in at the EU node as us-node; the EU node at US node B as eu-node.
        us_env = {"US_AT_EU": eu.secrets["us-node"][1]}
        eu_env = {"EU_AT_US": us_b.secrets["eu-node"][1]}
        write_peers(us_a, [peer_entry("eu-node", eu.collection_url, "us-node", "US_AT_EU",
                                      "both", args.page_size)])
        write_peers(eu, [peer_entry("us-node", us_b.collection_url, "eu-node", "EU_AT_US",
                                    "both", args.page_size)])
        pull_servers = {"EU server": eu.target, "US server": us_a.target}
        push_servers = {"EU server": eu.target, "US server": us_b.target}

        def pull_once(label: str, expected: int) -> Sync:
            return run_sync(label, tree, us_a.config, "pull", us_env, pull_servers,
                            args.timeout, profiler, expected)

        def push_once(label: str, expected: int) -> Sync:
            return run_sync(label, tree, eu.config, "push", eu_env, push_servers,
                            args.timeout, profiler, expected)

        cpu = Foreign()
        pull.first = pull_once("first pull", args.n)
        push.first = push_once("first push", args.n)
        total = args.n
        for index in range(args.rounds):
            load(eu.target, _new_objects(args.new, index, EU_ANALYST, args.batch))
            total += args.new
            pull.rounds.append(pull_once(f"incremental pull {index + 1}", args.new))
            push.rounds.append(push_once(f"incremental push {index + 1}", args.new))
        for index in range(args.rounds):
            pull.idle.append(pull_once(f"nothing-new pull {index + 1}", 0))
            push.idle.append(push_once(f"nothing-new push {index + 1}", 0))
        pull.foreign = push.foreign = cpu.short()
        for scenario, node in ((pull, us_a), (push, us_b)):
            held = count_at(node, total, args.timeout)
            scenario.verified = (f"{held:,} of {total:,} versions readable at the US node"
                                 + ("" if held == total else " (MISMATCH)"))
        floor = status_floor(tree, us_a.config)
        pull.notes.append(f"The sync command's imports (`-X importtime`, `sync status` at the "
                          f"US node): {import_costs(tree, us_a.config)}")
    except Exception as exc:  # reported in the table
        message = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        pull.error = push.error = message
        print(f"[bench] node to node: {exc!r}", file=sys.stderr)
    finally:
        for node in (eu, us_a, us_b):
            if node is not None and node.target.proc is not None:
                bt._stop(node.target.proc)
    return pull, push, floor


def _medallion_password(target: bt.Target) -> str:
    return base64.b64decode(target.basic.split(" ", 1)[1]).decode().split(":", 1)[1]


def start_medallion(workdir: Path, name: str, timeout: float) -> bt.Target:
    directory = workdir / name
    directory.mkdir()
    target = bt.Target(label=name, kind="medallion", n=0, op_timeout=timeout,
                       match_samples=0, pull_repeats=0, directory=directory)
    bt.start_medallion(target)
    return target


def with_medallion(tree: bt.Tree, workdir: Path, args: argparse.Namespace,
                   profiler: Profiler) -> tuple[Scenario, Scenario]:
    n = args.medallion_n
    batch = bt.batch_size(n, args.batch, True)
    pull = Scenario("US node pulls from medallion", n)
    push = Scenario("EU node pushes to medallion", n)
    pull.notes.append(f"medallion loaded through its API in envelopes of {batch:,} objects")
    servers: list[bt.Target] = []
    try:
        # Pull: a medallion collection with N objects by MEDALLION_SOURCE, which the US
        # node's `medallion` partner relays.
        source = start_medallion(workdir, "medallion-pull", args.timeout)
        servers.append(source)
        pull.load_rate = load(source, workload(n, bt.SEED, MEDALLION_SOURCE, batch))
        print(f"[bench] loaded medallion: {pull.load_rate:,.0f} objects/s", file=sys.stderr,
              flush=True)
        us = start_node(tree, workdir / "us-m", "us-m", [
            PartnerSpec("us-analyst", ANALYSTS, US_ANALYST),
            PartnerSpec("medallion", PEERS, MEDALLION_NODE, (MEDALLION_SOURCE,))], args.timeout)
        servers.append(us.target)
        write_peers(us, [peer_entry("medallion", _collection_url(source),
                                    bt.PARTNER, "MEDALLION_PASSWORD", "pull", args.page_size)])
        env = {"MEDALLION_PASSWORD": _medallion_password(source)}
        watch = {"medallion": source, "US server": us.target}
        cpu = Foreign()
        pull.first = run_sync("medallion: first pull", tree, us.config, "pull", env, watch,
                              args.timeout, profiler, n)
        total = n
        for index in range(args.medallion_rounds):
            load(source, _new_objects(args.new, index, MEDALLION_SOURCE,
                                      min(args.batch, args.new)))
            total += args.new
            pull.rounds.append(run_sync(f"medallion: incremental pull {index + 1}", tree,
                                        us.config, "pull", env, watch, args.timeout,
                                        profiler, args.new))
        for index in range(args.medallion_rounds):
            pull.idle.append(run_sync(f"medallion: nothing-new pull {index + 1}", tree,
                                      us.config, "pull", env, watch, args.timeout, profiler,
                                      0))
        pull.foreign = cpu.short()
        held = count_at(us, total, args.timeout)
        pull.verified = (f"{held:,} of {total:,} versions readable at the US node"
                         + ("" if held == total else " (MISMATCH)"))
    except Exception as exc:
        pull.error = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        print(f"[bench] medallion pull: {exc!r}", file=sys.stderr)
    finally:
        for target in servers:
            if target.proc is not None:
                bt._stop(target.proc)
    servers = []
    try:
        # Push: an EU node with N objects pushes to an empty medallion.
        sink = start_medallion(workdir, "medallion-push", args.timeout)
        servers.append(sink)
        eu = start_node(tree, workdir / "eu-m", "eu-m", [
            PartnerSpec("eu-analyst", ANALYSTS, EU_ANALYST),
            PartnerSpec("medallion", PEERS, MEDALLION_NODE)], args.timeout)
        servers.append(eu.target)
        push.load_rate = load(eu.target, workload(n, bt.SEED, EU_ANALYST, args.batch))
        write_peers(eu, [peer_entry("medallion", _collection_url(sink), bt.PARTNER,
                                    "MEDALLION_PASSWORD", "push", args.page_size)])
        env = {"MEDALLION_PASSWORD": _medallion_password(sink)}
        watch = {"medallion": sink, "EU server": eu.target}
        cpu = Foreign()
        push.first = run_sync("medallion: first push", tree, eu.config, "push", env, watch,
                              args.timeout, profiler, n)
        for index in range(args.medallion_rounds):
            load(eu.target, _new_objects(args.new, index, EU_ANALYST, args.batch))
            push.rounds.append(run_sync(f"medallion: incremental push {index + 1}", tree,
                                        eu.config, "push", env, watch, args.timeout,
                                        profiler, args.new))
        for index in range(args.medallion_rounds):
            push.idle.append(run_sync(f"medallion: nothing-new push {index + 1}", tree,
                                      eu.config, "push", env, watch, args.timeout, profiler,
                                      0))
        push.foreign = cpu.short()
        push.verified = "by medallion's statuses (success_count), not read back"
    except Exception as exc:
        push.error = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        print(f"[bench] medallion push: {exc!r}", file=sys.stderr)
    finally:
        for target in servers:
            if target.proc is not None:
                bt._stop(target.proc)
    return pull, push


def _collection_url(target: bt.Target) -> str:
    return f"http://127.0.0.1:{target.port}/{bt.ROOT}/collections/{bt.COLLECTION}/"


# -- report -------------------------------------------------------------------------------
def _median(syncs: list[Sync], key: Callable[[Sync], float]) -> float | None:
    values = [key(s) for s in syncs if not s.error]
    return statistics.median(values) if values else None


def _rounds(syncs: list[Sync]) -> str:
    if not syncs:
        return ""
    if any(s.error for s in syncs):
        return "; ".join(s.summary() for s in syncs)
    walls = ", ".join(f"{s.wall:.2f}" for s in syncs)
    moved = sorted({s.moved for s in syncs})
    bad = "" if all(s.ok for s in syncs) else " (NOT all as expected)"
    return (f"median {_median(syncs, lambda s: s.wall):.2f} s (each: {walls} s); moved "
            f"{'/'.join(f'{m:,}' for m in moved)} per round{bad}")


def _cpu_cells(syncs: list[Sync]) -> str:
    good = [s for s in syncs if not s.error]
    if not good:
        return ""
    names = list(good[0].servers)
    parts = [f"command {statistics.median(s.cpu for s in good):.2f}"]
    parts += [f"{name} {statistics.median(s.servers.get(name, 0) for s in good):.2f}"
              for name in names]
    return ", ".join(parts)


ROWS: list[tuple[str, Callable[[Scenario], str]]] = [
    ("Objects in the first sync (N)", lambda s: f"{s.n:,}"),
    ("Peer loaded through its API (untimed), objects/s",
     lambda s: f"{s.load_rate:,.0f}" if s.load_rate else ""),
    ("First sync: wall time (objects/s)",
     lambda s: s.first.summary(with_rate=True) if s.first else s.error),
    ("First sync: CPU seconds (the command; servers meanwhile)",
     lambda s: s.first.cpu_text() if s.first and not s.first.error else ""),
    ("First sync: the command's peak RSS, MB",
     lambda s: f"{s.first.rss:,.0f}" if s.first and not s.first.error else ""),
    ("Incremental rounds (new objects each): wall time", lambda s: _rounds(s.rounds)),
    ("Incremental rounds: CPU seconds, median", lambda s: _cpu_cells(s.rounds)),
    ("Rounds with nothing new: wall time", lambda s: _rounds(s.idle)),
    ("Rounds with nothing new: CPU seconds, median", lambda s: _cpu_cells(s.idle)),
    ("Check after the rounds", lambda s: s.verified or s.error),
    ("Other processes while these commands ran (a quiet machine: 0)", lambda s: s.foreign),
]


def check_targets(n2n: list[Scenario], medallion: list[Scenario]) -> list[str]:
    lines = []

    def check(ok: bool | None, text: str) -> None:
        lines.append(f"- {'n/a' if ok is None else ('met' if ok else 'MISSED')}: {text}")

    for scenario in n2n:
        first = scenario.first
        good = first is not None and first.ok
        rate = first.rate() if first is not None and good else None
        check(None if rate is None else rate >= 5000,
              f"{scenario.label}, first sync of N={scenario.n:,} >= 5,000 objects/s: "
              + (f"{rate:,.0f} objects/s ({first.wall:.2f} s)" if rate and first
                 else "not measured"))
    for scenario in n2n:
        wall = _median(scenario.rounds, lambda s: s.wall)
        worst = max((s.wall for s in scenario.rounds if not s.error), default=None)
        ok = None if wall is None else all(s.ok for s in scenario.rounds) and wall < 1.0
        check(ok, f"{scenario.label}, incremental round under 1 s: median "
                  + (f"{wall:.2f} s, slowest {worst:.2f} s" if wall is not None and worst
                     is not None else "not measured"))
    # The targets are between two nodes of this project; with medallion, for reference.
    for scenario in medallion:
        first, wall = scenario.first, _median(scenario.rounds, lambda s: s.wall)
        if first is not None and first.ok:
            lines.append(f"- (for reference, no target) {scenario.label}, first sync of "
                         f"N={scenario.n:,}: {first.rate():,.0f} objects/s "
                         f"({first.wall:.2f} s); incremental round: "
                         + (f"median {wall:.2f} s" if wall is not None else "not measured"))
    return lines


def report(columns: list[Scenario], n2n: list[Scenario], medallion: list[Scenario],
           floor: list[float], facts: list[str], command: str, args: argparse.Namespace,
           elapsed: float, neighbours: str, profiler: Profiler) -> str:
    lines = [f"## Federation sync benchmark ({datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')})",
             "", f"Command: `{command}`", "", *facts,
             f"- Peers' page_size {args.page_size:,} (objects per page pulled, per batch "
             f"pushed); {args.new:,} new objects per incremental round, {args.rounds} rounds "
             f"between nodes, {args.medallion_rounds} with medallion"
             + ("; every timed command ran under py-spy (--profile): figures inflated"
                if profiler.directory else ""), "",
             "Each figure is the wall time of one `python -m exchange --config CFG sync "
             "--direction pull|push` process, start to exit.", "",
             "| Measurement | " + " | ".join(s.label for s in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for label, cell in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(s) for s in columns) + " |")
    notes = [note for s in columns for note in s.notes]
    if floor:
        notes.append(f"`sync status` at the US node (the floor under any sync command: "
                     f"Python start, imports, settings, store opened, exit): median "
                     f"{statistics.median(floor):.2f} s of {len(floor)}")
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    lines += ["", "Targets:", *check_targets(n2n, medallion)]
    if profiler.directory:
        lines += ["", "### Where the samples fall (py-spy, --profile)", "",
                  *profiler.report()]
    lines += ["", f"Total run time: {elapsed:.0f} s", neighbours]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000,
                        help="objects in the first sync between two nodes")
    parser.add_argument("--medallion-n", type=int, default=5000,
                        help="objects in the first sync with medallion (0: no medallion)")
    parser.add_argument("--new", type=int, default=1000,
                        help="new objects per incremental round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="incremental rounds, and rounds with nothing new")
    parser.add_argument("--medallion-rounds", type=int, default=1,
                        help="the same with medallion (each pull with added_after costs "
                             "medallion O(N^2): a minute at 3,000 objects)")
    parser.add_argument("--page-size", type=int, default=1000,
                        help="the peers' page_size (default: the peers file's default)")
    parser.add_argument("--batch", type=int, default=1000,
                        help="objects per POST when loading a taxii-exchange node")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="per-command limit, seconds")
    parser.add_argument("--tree", type=Path, default=bt.REPO,
                        help="the checkout whose code the servers and commands run")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="run every timed command under py-spy; raw stacks in DIR")
    parser.add_argument("--skip-nodes", action="store_true",
                        help="only the medallion part")
    parser.add_argument("--out", help="also write the Markdown report here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args(argv)
    if args.n < 20 or args.new < 1 or args.rounds < 1 or args.medallion_rounds < 1:
        parser.error("--n must be at least 20, --new and the rounds at least 1")
    tree = bt.server_tree(args.tree)
    if not tree.policy or not (tree.path / "exchange" / "federation").is_dir():
        parser.error(f"{tree.path} has no federation to measure")

    signal.signal(signal.SIGTERM, bt._on_signal)
    signal.signal(signal.SIGHUP, bt._on_signal)
    atexit.register(bt._stop_all)
    started = time.monotonic()
    facts = bt.machine_facts({"Server and command": tree}) + [interpreter_fact()]
    foreign = bt.ForeignCpu()
    profiler = Profiler(args.profile)
    workdir = Path(tempfile.mkdtemp(prefix="taxii-federation-bench-"))
    command = " ".join(["tests/bench/bench_federation.py", *(argv or sys.argv[1:])])
    n2n: list[Scenario] = []
    medallion: list[Scenario] = []
    floor: list[float] = []
    try:
        if not args.skip_nodes:
            pull, push, floor = node_to_node(tree, workdir, args, profiler)
            n2n = [pull, push]
        if args.medallion_n:
            medallion = list(with_medallion(tree, workdir, args, profiler))
    finally:
        bt._stop_all()
        if args.keep:
            print(f"[bench] kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    facts += bt.code_changes({"Server and command": tree})
    text = report([*n2n, *medallion], n2n, medallion, floor, facts, command, args,
                  time.monotonic() - started, foreign.summary(), profiler)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
