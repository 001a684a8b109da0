#!/usr/bin/env python
"""Server time of the analyst pages' browse and search at scale.

    .venv/bin/python tests/bench/bench_web.py [--n 1000000] [--requests 60] [--out FILE]

A store of N synthetic objects is built through the store's own `write` in large batches
(not over HTTP: building it is not what is measured): indicators whose patterns name an
address and a domain, ipv4-addr, domain-name and url observables, malware families; one in
ten AMBER, the rest GREEN; addresses from 198.18.0.0/15 (the benchmarking range), `.example`
domains only. A real server then runs on loopback (uvicorn in a thread, as the tests run it)
and two analysts sign in: one who sees everything (RED) and one cleared only for GREEN. Each
shape is asked `--requests` times with varying values; the time is the wall time of each
request on loopback (server time plus well under a millisecond of loopback HTTP), reported as
p50 and p95:

- browse: the newest page (50 rows), and the same with a type filter;
- search by an exact address, by a /24 CIDR range;
- prefix (`shop12*`) and substring (`*host12345*`, `*12345.php*`) search on domains and URLs.

Targets at 1,000,000: browse and exact search under 100 ms, prefix and substring under 300 ms.
Everything runs in a temporary folder, removed at the end; a Markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exchange.markings import TLP  # noqa: E402
from exchange.model import AMBER, COMPLETE, GREEN, Candidate, Status  # noqa: E402
from exchange.store.sqlite import SQLiteStore  # noqa: E402
from tests.conftest import start_server  # noqa: E402
from tests.test_web import SHARED, WRITER, csrf, write_web_env  # noqa: E402

T0 = "2024-01-01T00:00:00.000Z"
BASE = ipaddress.IPv4Address("198.18.0.0")


def address(i: int) -> str:
    return str(BASE + (i * 7919) % 131072)


def obj(i: int) -> tuple[dict[str, Any], int]:
    rank = AMBER if i % 10 == 3 else GREEN
    marking = [TLP["amber" if rank == AMBER else "green"]]
    uid = f"{i:08x}-0000-4000-8000-{i:012x}"
    kind = i % 5
    if kind == 0:
        body = {"type": "indicator", "id": f"indicator--{uid}", "created_by_ref": WRITER,
                "created": T0, "modified": T0, "name": f"C2 {address(i)}",
                "pattern_type": "stix", "valid_from": "2024-01-01T00:00:00Z",
                "pattern": f"[ipv4-addr:value = '{address(i)}'] OR "
                           f"[domain-name:value = 'host{i}.shop{i % 997}.example']"}
    elif kind == 1:
        body = {"type": "ipv4-addr", "id": f"ipv4-addr--{uid}", "value": address(i)}
    elif kind == 2:
        body = {"type": "domain-name", "id": f"domain-name--{uid}",
                "value": f"host{i}.shop{i % 997}.example"}
    elif kind == 3:
        body = {"type": "url", "id": f"url--{uid}",
                "value": f"http://host{i}.shop{i % 997}.example/pay/{i}.php"}
    else:
        body = {"type": "malware", "id": f"malware--{uid}", "created_by_ref": WRITER,
                "created": T0, "modified": T0, "name": f"family-{i % 5000}",
                "is_family": True}
    return {"spec_version": "2.1", **body, "object_marking_refs": marking}, rank


def build(store: SQLiteStore, n: int, batch: int = 20000) -> float:
    started = time.perf_counter()
    for start in range(0, n, batch):
        candidates = []
        for i in range(start, min(n, start + batch)):
            body, rank = obj(i)
            candidates.append(Candidate(id=body["id"], type=body["type"], spec_version="2.1",
                                        version=body.get("modified"),
                                        body=orjson.dumps(body), rank=rank))
        store.write(SHARED, candidates, None, lambda outcomes: Status(
            id="bench", api_root="", collection=SHARED, partner="", request_timestamp=0,
            total_count=len(outcomes), status=COMPLETE))
        print(f"  built {min(n, start + batch):,}", file=sys.stderr, end="\r")
    return time.perf_counter() - started


def shapes(n: int, rng: random.Random) -> dict[str, Any]:
    """Each shape: a function of the request number giving its query parameters."""
    def some(kind: int) -> int:
        return rng.randrange(n // 5) * 5 + kind

    def domain(i: int) -> dict[str, str]:
        return {"q": f"host{i}.shop{i % 997}.example"}

    return {
        "browse (newest page)": lambda: {},
        "browse, type filter": lambda: {"type": rng.choice(["indicator", "url", "malware"])},
        "search exact address": lambda: {"q": address(some(1))},
        "search exact domain": lambda: domain(some(2)),
        "search CIDR /24": lambda: {"q": f"{address(some(1)).rsplit('.', 1)[0]}.0/24"},
        "prefix of domains and URLs": lambda: {"q": f"host{rng.randrange(10, 99)}*"},
        "substring of domains": lambda: {"q": f"*shop{rng.randrange(100, 997)}.ex*"},
        "substring of URLs": lambda: {"q": f"*/{some(3)}.php*"},
    }


def sign_in(client: httpx.Client, who: str, password: str) -> None:
    form = client.get("ui/sign-in/")
    answer = client.post("ui/sign-in/", data={"csrf": csrf(form.text), "partner": who,
                                              "password": password})
    assert answer.status_code == 303, answer.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--out", help="also write the Markdown table here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        env = write_web_env(Path(folder))
        store = SQLiteStore(env.settings.store_path, bulk=True)
        store.open()
        took = build(store, args.n)
        store.close()
        lines = [f"analyst pages at {args.n:,} objects (built in {took:.0f} s, "
                 f"{args.n / took:,.0f} objects/s through the store's write)", "",
                 "| shape | reader | p50 ms | p95 ms | rows on first page |",
                 "|---|---|---:|---:|---:|"]
        live = start_server(env)
        try:
            for who in ("writer", "green"):
                rng = random.Random(7)
                with httpx.Client(base_url=live.url, timeout=120,
                                  follow_redirects=False) as client:
                    sign_in(client, who, env.credentials[who].password)
                    url = f"ui/collections/{env.settings.default_api_root}/{SHARED}/"
                    client.get(url)  # warm the connection and the caches a little
                    for name, params in shapes(args.n, rng).items():
                        times, rows = [], 0
                        for _ in range(args.requests):
                            asked = params()
                            started = time.perf_counter()
                            answer = client.get(url, params=asked)
                            times.append((time.perf_counter() - started) * 1000)
                            assert answer.status_code == 200, (asked, answer.text[:500])
                            rows += answer.text.count('<td class="id">')
                        times.sort()
                        p95 = times[int(len(times) * 0.95) - 1]
                        reader = "sees everything" if who == "writer" else "GREEN only"
                        lines.append(f"| {name} | {reader} | {statistics.median(times):.1f} "
                                     f"| {p95:.1f} | {rows / args.requests:.0f} |")
                        print(lines[-1], file=sys.stderr)
        finally:
            live.stop()
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
