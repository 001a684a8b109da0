#!/usr/bin/env python
"""What the sharing policy costs a reader: page times of a reader who may see everything and
of one cleared to TLP:GREEN, in one collection of N objects, at several N.

    .venv/bin/python tests/bench/bench_policy.py [--sizes 10000,100000,1000000] [--out FILE]

For each size N the real server (this checkout or --tree PATH, `python -m exchange --config
CFG serve`, as in bench_taxii.py) runs as a subprocess over a fresh store, with one collection
(`default_marking: amber`) and three partners made with `taxii-exchange partners add`:

- feed: may write, not read; pushes the N objects through the API (TAXII POST, 1,000 objects
  per request, every status polled until complete). Its SDOs and SROs carry
  `created_by_ref` = its fixed identity, as the server requires of a push;
- full: may read, clearance red, named in `red_recipients`: sees everything;
- green: may read, clearance green.

The objects are bench_taxii.py's synthetic mix (indicators, ipv4-addr observables and
relationships, 4:3:3, about 1 KB; documentation address ranges, `.example` domains). Object i
is TLP:GREEN when i % 10 == 0 and TLP:AMBER otherwise (TLP 2.0 marking definitions): 10% green,
spread evenly through the collection's date_added order. Object i % 10 == 0 is always an
indicator, which references nothing, so exactly N/10 objects are visible to the green reader
(a GREEN relationship to an AMBER indicator would be AMBER for it). Those are indicators only,
larger than the average object: pages are compared per page and per byte received.

Measured for each reader:

- full pull: limit=1000 following `next`, each page parsed with orjson as a client would. In
  rounds, each reader pulls once per round, in alternating order (ABBA), until each has at
  least --min-pages timed pages (and --pull-repeats pulls): drift hits both readers alike, and
  no page is read again straight from the cache (at 10k the green reader's pull is one page).
  Median page time over every timed page; first and last page time (median over the pulls);
  objects/s of the median pull; bytes per page;
- green / full: the ratio of median page times, and of median page times per byte received;
- match[id] p50 / p95 (bearer token) of random ids of GREEN objects, for both readers, and of
  AMBER objects for the green reader (answered with an empty envelope).

Targets (reported, never asserted): the green reader's median page costs at most 2x a full
reader's at every N, and is flat in N: at the largest N within 1.2x of the smallest.
Every server listens on 127.0.0.1 only and is stopped on exit. The result is a Markdown table
on stdout (and in --out).
"""

from __future__ import annotations

import argparse
import atexit
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

try:
    from . import bench_taxii as bt
except ImportError:  # run as a script: tests/bench is on sys.path
    import bench_taxii as bt  # type: ignore[no-redef]

# TLP 2.0 marking definitions (exchange/markings.py has them; the bench keeps its own copy).
TLP2_GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
TLP2_AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
FEED, FULL, GREEN = "feed", "full", "green"
FEED_IDENTITY = "identity--0c4e2f7a-9b1d-4e3a-8f65-2d7c1a9b4e10"
FULL_IDENTITY = "identity--3f8a1c6e-5d2b-4a97-b0e4-7c9d2e1f6a35"
GREEN_IDENTITY = "identity--9d2b7e4c-1a6f-4c38-a5d0-6e3f8b2c1d47"
READERS = "readers"
GREEN_EVERY = 10  # object i is TLP:GREEN when i % GREEN_EVERY == 0


def marking(i: int) -> str:
    return TLP2_GREEN if i % GREEN_EVERY == 0 else TLP2_AMBER


@dataclass
class Reader:
    """One reader's pulls, pooled."""

    name: str
    authorization: str
    expect: int
    pulls: list[bt.Pull] = field(default_factory=list)

    @property
    def pages(self) -> list[float]:
        return [t for run in self.pulls for t in run.page_times]

    @property
    def median_page(self) -> float:
        return statistics.median(self.pages)

    @property
    def bytes_per_page(self) -> float:
        return sum(r.body_bytes for r in self.pulls) / len(self.pages)

    def median_pull(self) -> bt.Pull:
        return sorted(self.pulls, key=lambda r: r.elapsed)[len(self.pulls) // 2]


def start_server(target: bt.Target) -> dict[str, str]:
    """The collection and the three partners; the server started. Bearer tokens by name."""
    assert target.tree is not None and target.tree.policy
    config = bt.write_exchange_config(
        target, {"read": [f"group:{READERS}"], "write": [f"partner:{FEED}"]},
        {"default_marking": "amber", "red_recipients": [f"partner:{FULL}"]})
    tokens = {}
    for name, groups, identity, clearance in (
            (FEED, (), FEED_IDENTITY, "clear"),
            (FULL, (READERS,), FULL_IDENTITY, "red"),
            (GREEN, (READERS,), GREEN_IDENTITY, "green")):
        token, _ = bt.add_partner(target.tree, config, name, groups, identity, clearance)
        tokens[name] = f"Bearer {token}"
    target.bearer = tokens[FEED]  # measure_ingest pushes with it
    target.read_auth = tokens[FULL]
    bt.serve_exchange(target, config)
    return tokens


def measure_pulls(target: bt.Target, readers: list[Reader], min_pages: int,
                  min_pulls: int) -> None:
    """Rounds of one full pull per reader, in alternating order (ABBA), until each reader has
    enough timed pages. Every reader pulls in every round, even one that has enough: at 10k
    the green reader's pull is a single page, and pulling it back to back would serve it from
    the SQLite page cache, which no larger N allows (that made 10k look 25% faster)."""
    rounds = 0
    while any(len(r.pulls) < min_pulls or len(r.pages) < min_pages for r in readers):
        order = readers if rounds % 2 == 0 else readers[::-1]
        rounds += 1
        for reader in order:
            target.alive()
            client = target.client(reader.authorization)
            try:
                run = bt.pull(client, target.objects_path, bt.Deadline(target.op_timeout),
                              reader.expect)
            finally:
                client.close()
            if run.count != reader.expect:
                raise bt.BenchError(f"{reader.name} pulled {run.count} objects, "
                                    f"expected {reader.expect}")
            reader.pulls.append(run)


def run_size(target: bt.Target, workload: bt.Workload, args: argparse.Namespace) -> None:
    n = workload.n
    green_ids = [ident for i, ident in enumerate(workload.ids) if i % GREEN_EVERY == 0]
    amber_ids = random.Random(bt.SEED + 2).sample(
        [ident for i, ident in enumerate(workload.ids) if i % GREEN_EVERY],
        min(args.match_samples, n - len(green_ids)))
    results, raw = target.results, target.raw
    results.update(objects=f"{n:,}", visible=f"{len(green_ids):,}",
                   avg_size=f"{workload.avg_size:,.0f}")
    started = time.monotonic()
    try:
        tokens = start_server(target)
        bt.measure_ingest(target, workload)
        rss = [bt._rss_now(target)]
        full = Reader(FULL, tokens[FULL], n)
        green = Reader(GREEN, tokens[GREEN], len(green_ids))
        measure_pulls(target, [full, green], args.min_pages, args.pull_repeats)
        rss.append(bt._rss_now(target))
        for reader in (full, green):
            middle = reader.median_pull()
            first = statistics.median(r.page_times[0] for r in reader.pulls)
            last = statistics.median(r.page_times[-1] for r in reader.pulls)
            rate = reader.expect / middle.elapsed
            raw[f"{reader.name}_page"] = reader.median_page
            raw[f"{reader.name}_bytes"] = reader.bytes_per_page
            results[f"{reader.name}_rate"] = f"{rate:,.0f}"
            results[f"{reader.name}_pages"] = (f"{len(middle.page_times)} per pull; "
                                               f"{len(reader.pulls)} pulls")
            results[f"{reader.name}_page"] = (f"{bt._ms(reader.median_page)} / {bt._ms(first)}"
                                              f" / {bt._ms(last)}")
            results[f"{reader.name}_kb"] = f"{reader.bytes_per_page / 1024:,.0f}"
        ratio = green.median_page / full.median_page
        per_byte = ratio / (green.bytes_per_page / full.bytes_per_page)
        raw["ratio"] = ratio
        results["ratio"] = f"{ratio:.2f}x"
        results["ratio_bytes"] = f"{per_byte:.2f}x"
        bt.measure_match(target, green_ids, tokens[GREEN], "match_green")
        bt.measure_match(target, green_ids, tokens[FULL], "match_full")
        bt.measure_match(target, amber_ids, tokens[GREEN], "match_withheld", visible=False)
        rss.append(bt._rss_now(target))
        results["rss_phases"] = " / ".join(rss)
    except Exception as exc:  # reported in its column; the other sizes still run
        results.setdefault("ingest", f"error: {str(exc).splitlines()[0][:80]}")
        print(f"[bench] {target.label}: {exc!r}", file=sys.stderr)
    finally:
        if target.sampler is not None:
            target.sampler.stop()
            results["rss"] = f"{target.sampler.peak / bt.MIB:,.0f}"
        if target.proc is not None:
            bt._stop(target.proc)
        results["store"] = bt.store_size(target)
        results["wall"] = f"{time.monotonic() - started:.0f} s"


ROWS = [
    ("objects", "Objects (N)"),
    ("visible", "Visible to the green reader (TLP:GREEN, i % 10 == 0)"),
    ("avg_size", "Average object size, bytes (as posted)"),
    ("ingest", "Ingest, objects/s (POST until every status complete)"),
    ("ingest_detail", "Ingest wall time; batches answered pending; POST time early/late"),
    ("full_rate", "Full reader: full pull, objects/s (median pull)"),
    ("full_pages", "Full reader: pages"),
    ("full_page", "Full reader: page time median / first / last, ms"),
    ("full_kb", "Full reader: KB per page"),
    ("full_vs_base", "Full reader: median page vs the smallest N"),
    ("green_rate", "Green reader: full pull, objects/s (median pull)"),
    ("green_pages", "Green reader: pages"),
    ("green_page", "Green reader: page time median / first / last, ms"),
    ("green_kb", "Green reader: KB per page"),
    ("green_vs_base", "Green reader: median page vs the smallest N"),
    ("ratio", "Green / full median page time"),
    ("ratio_bytes", "Green / full median page time per byte received"),
    ("match_green", "match[id] of a GREEN id, green reader: p50 / p95, ms"),
    ("match_full", "match[id] of a GREEN id, full reader: p50 / p95, ms"),
    ("match_withheld", "match[id] of an AMBER id, green reader (empty answer): p50 / p95, ms"),
    ("rss_phases", "Server RSS after ingest / pulls / the end, MB"),
    ("rss", "Server peak RSS, MB"),
    ("store", "Store on disk, MB"),
    ("wall", "Time spent on this column"),
]


def check_targets(targets: list[bt.Target]) -> list[str]:
    lines = []

    def check(ok: bool | None, text: str) -> None:
        lines.append(f"- {'n/a' if ok is None else ('met' if ok else 'MISSED')}: {text}")

    for target in targets:
        ratio = target.raw.get("ratio")
        check(None if ratio is None else ratio <= 2,
              f"green reader's median page <= 2x the full reader's at N={target.n:,}: "
              f"{ratio or 0:.2f}x")
    done = [t for t in targets if t.raw.get("green_page")]
    if len(done) > 1:
        small, big = done[0], done[-1]
        for reader, target_ratio in (("green", 1.2), ("full", None)):
            a, b = small.raw.get(f"{reader}_page"), big.raw.get(f"{reader}_page")
            if not (a and b):
                continue
            text = (f"{reader} reader's median page at N={big.n:,} vs N={small.n:,}: "
                    f"{bt._ms(b)} vs {bt._ms(a)} ms ({b / a:.2f}x)")
            if target_ratio is None:
                lines.append(f"- (for reference) {text}")
            else:
                check(b / a <= target_ratio, text + f", target {target_ratio}x")
    return lines


def report(targets: list[bt.Target], facts: list[str], command: str, elapsed: float,
           neighbours: str) -> str:
    done = [t for t in targets if t.raw.get("green_page")]
    if done:
        for target in done:
            for reader in ("full", "green"):
                base = done[0].raw[f"{reader}_page"]
                target.results[f"{reader}_vs_base"] = \
                    f"{target.raw[f'{reader}_page'] / base:.2f}x (vs N={done[0].n:,})"
    lines = [f"## Sharing policy: page cost by clearance "
             f"({datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')})", "",
             f"Command: `{command}`", "", *facts, "",
             "| Measurement | " + " | ".join(t.label for t in targets) + " |",
             "|---|" + "---|" * len(targets)]
    for key, label in ROWS:
        lines.append(f"| {label} | " + " | ".join(t.results.get(key, "") for t in targets)
                     + " |")
    lines += ["", "Targets:", *check_targets(targets), "",
              f"Total run time: {elapsed:.0f} s", neighbours]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="collection sizes, comma-separated")
    parser.add_argument("--out", help="also write the Markdown report here")
    parser.add_argument("--batch", type=int, default=1000, help="objects per POST")
    parser.add_argument("--min-pages", type=int, default=30,
                        help="timed pages per reader at least (pulls repeat to reach it)")
    parser.add_argument("--pull-repeats", type=int, default=3,
                        help="full pulls per reader at least")
    parser.add_argument("--match-samples", type=int, default=500,
                        help="random ids looked up with match[id], per measurement")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="per-operation limit, seconds (the 1M ingest is one operation)")
    parser.add_argument("--tree", type=Path, default=bt.REPO,
                        help="the checkout whose server is measured (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args(argv)
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    if any(n < 10 * GREEN_EVERY for n in sizes):
        parser.error(f"sizes must be at least {10 * GREEN_EVERY}")
    tree = bt.server_tree(args.tree)
    if not tree.policy:
        parser.error(f"{tree.path} has no sharing policy to measure")

    signal.signal(signal.SIGTERM, bt._on_signal)
    signal.signal(signal.SIGHUP, bt._on_signal)
    atexit.register(bt._stop_all)
    started = time.monotonic()
    facts = bt.machine_facts({"Server": tree})
    foreign = bt.ForeignCpu()
    workdir = Path(tempfile.mkdtemp(prefix="taxii-policy-bench-"))
    command = " ".join(["tests/bench/bench_policy.py", *(argv or sys.argv[1:])])
    targets = []
    try:
        for n in sizes:
            directory = workdir / f"policy-{n}"
            directory.mkdir()
            target = bt.Target(label=f"N={n:,}", kind="exchange", n=n,
                               op_timeout=args.timeout, match_samples=args.match_samples,
                               pull_repeats=args.pull_repeats, directory=directory, tree=tree)
            targets.append(target)
            t0 = time.perf_counter()
            workload = bt.make_workload(n, args.batch, objects=bt.synthetic_objects(
                n, bt.SEED, author=FEED_IDENTITY, marking=marking))
            print(f"[bench] generated {n:,} objects in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
            run_size(target, workload, args)
            del workload
            print(f"[bench] N={n:,}: done in {target.results.get('wall')}", file=sys.stderr,
                  flush=True)
    finally:
        bt._stop_all()
        if args.keep:
            print(f"[bench] kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    facts += bt.code_changes({"Server": tree})
    text = report(targets, facts, command, time.monotonic() - started, foreign.summary())
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
