#!/usr/bin/env python
"""Shadowserver event4_sinkhole CSV to stored STIX: rows/s and peak memory of `ingest`.

    .venv/bin/python -m tests.bench.bench_normalize [--sizes 100000,1000000] [--out FILE]

For each size N a synthetic event4_sinkhole report of N rows is written (documentation
address ranges and `.example` names only: half the victims from the three IPv4 documentation
ranges, so they repeat as real victims do, half unique IPv6 addresses in 2001:db8::/32), and
the real command runs as a subprocess over a fresh store:

    taxii-exchange --config CFG ingest --format shadowserver-event4-sinkhole \
        --collection bench --rejects R report.csv

- first load: rows/s and objects/s = N (or objects stored) / wall time of the command;
- re-load of the same file (every object already stored, nothing changes): rows/s;
- peak RSS of the command and its child process together, sampled every 50 ms;
- load: the machine's 1-minute load average when the first load ends (other work on the
  machine slows the command down: compare figures taken under similar load).

The result is a Markdown table on stdout (and in --out).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.bench.bench_taxii import RssSampler

HEADER = ("timestamp,protocol,src_ip,src_port,src_asn,src_geo,src_region,src_city,"
          "src_hostname,src_naics,src_sector,device_vendor,device_type,device_model,dst_ip,"
          "dst_port,dst_asn,dst_geo,dst_region,dst_city,dst_hostname,dst_naics,dst_sector,"
          "public_source,infection,family,tag,application,version,event_id")
FAMILIES = ("emotet", "qakbot", "icedid", "pikabot", "andromeda", "necurs", "conficker")
FORMAT = "shadowserver-event4-sinkhole"
CHECKOUT = Path(__file__).resolve().parents[2]


def write_report(path: Path, rows: int, seed: int = 20261120) -> None:
    """A synthetic day of sinkhole connections, written in chunks (memory stays small)."""
    rng = random.Random(seed)
    nets = ("192.0.2", "198.51.100", "203.0.113")
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER + "\n")
        chunk = []
        for n in range(rows):
            second = n * 86_400 // max(rows, 1)
            when = f"2026-11-20 {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
            if rng.random() < 0.5:
                victim = f"{rng.choice(nets)}.{rng.randrange(1, 255)}"
            else:
                victim = f"2001:db8:{rng.randrange(1 << 16):x}::{rng.randrange(1, 1 << 16):x}"
            family = rng.choice(FAMILIES)
            chunk.append(
                f"{when},tcp,{victim},{rng.randrange(1024, 65536)},{rng.choice((64496, 64511))},"
                f"XX,Region,City,host{n % 9973}.victim.example,517311,Communications,,,,"
                f"203.0.113.{rng.randrange(1, 20)},{rng.choice((80, 443))},64500,XX,,,"
                f"sinkhole.example,,,SinkholeSim,{family}-bot,{family},,"
                f"{rng.choice(('http', 'tls'))},,ev{n}\n")
            if len(chunk) == 10_000:
                out.writelines(chunk)
                chunk = []
        out.writelines(chunk)


def write_config(directory: Path) -> Path:
    (directory / "collections").mkdir()
    (directory / "collections" / "bench.yaml").write_text(yaml.safe_dump({
        "id": "3b8c8f3e-4a8e-4f52-9b6e-0c8d7f6a5b41", "api_root": "bench", "alias": "bench",
        "title": "Benchmark", "read": ["group:bench"], "write": ["group:bench"],
        "default_marking": "amber",
    }))
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({
        "store_path": "store.sqlite3", "partners_file": "partners.yaml",
        "collections_dir": "collections", "default_api_root": "bench",
        "api_roots": {"bench": {"title": "Benchmark root"}},
    }))
    return config


def run_ingest(config: Path, report: Path, rejects: Path) -> tuple[float, int, dict[str, int]]:
    """Wall seconds, peak RSS bytes and the summary line's counts of one ingest command."""
    # `python -m exchange` from this checkout: an installed console script may run another
    # copy of the code.
    command = [sys.executable, "-m", "exchange", "--config", str(config), "ingest", "--format",
               FORMAT, "--collection", "bench", "--rejects", str(rejects), "--no-progress",
               str(report)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=CHECKOUT)
    sampler = RssSampler(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - started
    sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed ({proc.returncode}): {err.decode()[-2000:]}")
    line = out.decode().strip().splitlines()[-1]
    counts = {part.split()[0]: int(part.split()[1]) for part in line.split(", ")}
    return elapsed, sampler.peak, counts


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--sizes", default="100000,1000000")
    options.add_argument("--out")
    args = options.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    lines = [
        f"event4_sinkhole ingest; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "| rows | objects stored | first load s | rows/s | objects/s | re-load rows/s "
        "| peak RSS MB | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-normalize-") as temp:
            directory = Path(temp)
            config = write_config(directory)
            report = directory / "2026-11-20-event4_sinkhole.csv"
            write_report(report, size)
            first, peak1, counts = run_ingest(config, report, directory / "rejects.jsonl")
            load = os.getloadavg()[0]
            again, peak2, recount = run_ingest(config, report, directory / "rejects.jsonl")
            if counts["rejected"] or recount["stored"] or counts["read"] != size:
                raise SystemExit(f"unexpected counts: {counts} then {recount}")
            row = (f"| {size:,} | {counts['stored']:,} | {first:.1f} | {size / first:,.0f} "
                   f"| {counts['stored'] / first:,.0f} | {size / again:,.0f} "
                   f"| {max(peak1, peak2) / 2**20:.0f} | {load:.1f} |")
            lines.append(row)
            print(row, file=sys.stderr, flush=True)
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
