#!/usr/bin/env python
"""Cost of the write path's object check (`exchange.stix.check_object`) per object.

    .venv/bin/python -m tests.bench.bench_check [--rows 20000] [--rounds 5]

Builds a feed-like mix of distinct objects (every row: an address observable, a domain, a
URL, a file with hashes, an indicator with a simple pattern, a sighting and a relationship;
every 50th row an indicator with a pattern only the full STIX grammar decides) and times the
check over all of them in one process, best of the rounds. Values are unique per row, so no
per-value cache hides the cost. Prints microseconds per object, per kind and overall.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections import defaultdict
from typing import Any

from exchange.stix import check_object

NS = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
WHEN = "2026-11-20T10:00:00.000Z"
LATER = "2026-11-21T10:00:00.000Z"
AUTHOR = "identity--0b5e2bd4-6f4b-4b6a-9d0c-3b3f4d6b1e01"
TLP_GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"


def _id(kind: str, key: str) -> str:
    return f"{kind}--{uuid.uuid5(NS, kind + key)}"


def _sdo(kind: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1", "id": _id(kind, key), "created": WHEN,
            "modified": WHEN, "created_by_ref": AUTHOR, "object_marking_refs": [TLP_GREEN],
            **fields}


def row(i: int) -> list[tuple[str, dict[str, Any]]]:
    address = f"198.51.{(i >> 8) & 255}.{i & 255}" if i % 2 else f"2001:db8::{i:x}"
    kind = "ipv4-addr" if i % 2 else "ipv6-addr"
    host = f"host{i}.bench.example"
    md5 = f"{i:032x}"
    sha256 = f"{i:064x}"
    ip = {"type": kind, "spec_version": "2.1", "id": _id(kind, address), "value": address}
    domain = {"type": "domain-name", "spec_version": "2.1", "id": _id("domain-name", host),
              "value": host}
    url = {"type": "url", "spec_version": "2.1", "id": _id("url", host),
           "value": f"http://{host}/path/{i}?q=1"}
    file = {"type": "file", "spec_version": "2.1", "id": _id("file", md5),
            "hashes": {"MD5": md5, "SHA-256": sha256}, "name": f"sample{i}.exe"}
    pattern = f"[{kind}:value = '{address}']"
    if i % 3 == 0:
        pattern = f"[file:hashes.MD5 = '{md5}' OR file:hashes.'SHA-256' = '{sha256}']"
    grammar = i % 50 == 1
    if grammar:
        pattern = (f"[network-traffic:dst_ref.value = '{address}' AND "
                   f"network-traffic:dst_port = {i % 65535}] WITHIN 600 SECONDS")
    indicator = _sdo("indicator", str(i), pattern=pattern, pattern_type="stix",
                     valid_from=WHEN, valid_until=LATER, confidence=70,
                     indicator_types=["malicious-activity"])
    sighting = _sdo("sighting", str(i), sighting_of_ref=indicator["id"], first_seen=WHEN,
                    last_seen=LATER, count=3, observed_data_refs=[
                        _id("observed-data", str(i))])
    relationship = _sdo("relationship", str(i), relationship_type="based-on",
                        source_ref=indicator["id"], target_ref=ip["id"])
    return [("address", ip), ("domain-name", domain), ("url", url), ("file", file),
            ("indicator (grammar)" if grammar else "indicator", indicator),
            ("sighting", sighting), ("relationship", relationship)]


def _cold() -> None:
    """Forget the patterns already parsed: a feed's patterns are new to the server."""
    patterns = sys.modules.get("exchange.patterns")  # absent before patterns were checked
    if patterns is not None:
        patterns._grammar_problem.cache_clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    objects = [item for i in range(args.rows) for item in row(i)]
    by_kind: dict[str, float] = defaultdict(lambda: float("inf"))
    best = float("inf")
    for _ in range(args.rounds):
        spent: dict[str, float] = defaultdict(float)
        _cold()
        start = time.perf_counter()
        for kind, obj in objects:
            began = time.perf_counter()
            check_object(obj)
            spent[kind] += time.perf_counter() - began
        best = min(best, time.perf_counter() - start)
        for kind, seconds in spent.items():
            by_kind[kind] = min(by_kind[kind], seconds)
    counts: dict[str, int] = defaultdict(int)
    for kind, _obj in objects:
        counts[kind] += 1
    print(f"{len(objects)} objects, best of {args.rounds} rounds")
    for kind in sorted(by_kind):
        print(f"  {kind:<14} {by_kind[kind] / counts[kind] * 1e6:8.1f} µs per object")
    print(f"  {'all':<14} {best / len(objects) * 1e6:8.1f} µs per object "
          f"({len(objects) / best:,.0f} objects/s on one core)")


if __name__ == "__main__":
    main()
