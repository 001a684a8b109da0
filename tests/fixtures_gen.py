"""Seeded generator of synthetic input files for every format, with hostile rows.

Synthetic only: documentation address ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
2001:db8::/32) and `.example` domains. Run it to write samples:
`python -m tests.fixtures_gen DIR`.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

SINKHOLE_HEADER = (
    "timestamp,protocol,src_ip,src_port,src_asn,src_geo,src_region,src_city,src_hostname,"
    "src_naics,src_sector,device_vendor,device_type,device_model,dst_ip,dst_port,dst_asn,"
    "dst_geo,dst_region,dst_city,dst_hostname,dst_naics,dst_sector,public_source,infection,"
    "family,tag,application,version,event_id"
)
FAMILIES = ("emotet", "qakbot", "icedid", "pikabot", "andromeda")


@dataclass(frozen=True)
class Sample:
    path: Path
    good: int  # rows that must be accepted
    bad: int  # rows that must be rejected


def victim(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return f"2001:db8::{rng.randrange(1, 0xffff):x}"
    return f"{rng.choice(('192.0.2', '198.51.100'))}.{rng.randrange(1, 255)}"


def sinkhole_rows(rng: random.Random, count: int, *, extra: bool = False) -> list[str]:
    rows = []
    for n in range(count):
        hour, minute, second = n // 3600 % 24, n // 60 % 60, n % 60
        family = rng.choice(FAMILIES)
        fields = [
            f"2026-11-20 {hour:02d}:{minute:02d}:{second:02d}", rng.choice(("tcp", "udp")),
            victim(rng), str(rng.randrange(1024, 65536)), str(rng.choice((64496, 64511))),
            "XX", "Region", "City", f"host{n}.victim.example", "517311", "Communications",
            "", "", "", f"203.0.113.{rng.randrange(1, 255)}", rng.choice(("80", "443")),
            "64500", "XX", "", "", "sinkhole.example", "", "", "SinkholeSim", f"{family}-bot",
            family, "", rng.choice(("http", "tls")), "", f"ev{n}",
        ]
        if extra:
            fields.append(f"extra-{n}")
        rows.append(",".join(fields))
    return rows


HOSTILE_SINKHOLE = [
    # (reason fragment, raw bytes of the line)
    ("not an IP address", b"2026-11-20 01:00:00,tcp,999.1.1.1,1234,,,,,,,,,,,203.0.113.9,80"
                          b",,,,,,,,,emotet-bot,emotet,,http,,"),
    ("not a UTC date", b"2026-13-45 99:00:00,tcp,192.0.2.7,1234,,,,,,,,,,,203.0.113.9,80"
                       b",,,,,,,,,emotet-bot,emotet,,http,,"),
    ("NUL byte", b"2026-11-20 01:00:00,tcp,192.0.2.8,12\x0034,,,,,,,,,,,203.0.113.9,80"
                 b",,,,,,,,,emotet-bot,emotet,,http,,"),
    ("not UTF-8", "2026-11-20 01:00:00,tcp,192.0.2.9,1234,,,,,,,,,,,203.0.113.9,80"
                  ",,,,Zürich,,,,,emotet-bot,emotet,,http,,".encode("latin-1")),
    ("field longer", b"2026-11-20 01:00:00,tcp,192.0.2.10,1234,,,,,,," + b"A" * 5000 +
                     b",,,,203.0.113.9,80,,,,,,,,,emotet-bot,emotet,,http,,"),
    ("port", b"2026-11-20 01:00:00,tcp,192.0.2.11,99999,,,,,,,,,,,203.0.113.9,80"
             b",,,,,,,,,emotet-bot,emotet,,http,,"),
    ("neither a malware family", b"2026-11-20 01:00:00,tcp,192.0.2.12,1234,,,,,,,,,,,"
                                 b"203.0.113.9,80,,,,,,,,,,,,http,,"),
    ("not a CSV row", b'2026-11-20 01:00:00,tcp,"192.0.2.13,1234'),
    ("fields, the header has", b"2026-11-20 01:00:00,tcp,192.0.2.14" + b",x" * 40),
]


def write_sinkhole(path: Path, *, seed: int = 4, count: int = 50, hostile: bool = True,
                   bom: bool = True, extra: bool = False) -> Sample:
    rng = random.Random(seed)
    header = SINKHOLE_HEADER + (",x_custom_note" if extra else "")
    lines = [line.encode() for line in sinkhole_rows(rng, count, extra=extra)]
    bad = 0
    if hostile:
        for offset, (_, raw) in enumerate(HOSTILE_SINKHOLE):
            lines.insert(3 + offset * 4, raw)
        bad = len(HOSTILE_SINKHOLE)
    body = (b"\xef\xbb\xbf" if bom else b"") + header.encode() + b"\r\n" + \
        b"\r\n".join(lines) + b"\r\n"
    path.write_bytes(body)
    return Sample(path, count, bad)


def write_sinkhole_minimal(path: Path, *, seed: int = 5, count: int = 10) -> Sample:
    """Only the required columns and a family: optional columns are missing."""
    rng = random.Random(seed)
    lines = ["timestamp,src_ip,family"] + [
        f"2026-11-21T{n % 24:02d}:00:00Z,{victim(rng)},{rng.choice(FAMILIES)}"
        for n in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return Sample(path, count, 0)


def stix_objects(rng: random.Random, count: int) -> list[dict[str, object]]:
    objects: list[dict[str, object]] = []
    for n in range(count):
        seen = f"2026-11-20T{n % 24:02d}:{rng.randrange(60):02d}:00.000Z"
        domain = f"c2-{n}.bad.example"
        objects.append({
            "type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{rng.randbytes(16).hex()[:8]}-0000-4000-8000-{n:012d}",
            "created": seen, "modified": seen, "name": f"C2 domain {domain}",
            "pattern": f"[domain-name:value = '{domain}']", "pattern_type": "stix",
            "valid_from": seen, "indicator_types": ["malicious-activity"],
        })
    return objects


HOSTILE_STIX: list[tuple[str, object]] = [
    ("spec_version", {"type": "indicator", "id": "indicator--00000000-0000-4000-8000-00000000"
                      "0001", "created": "2026-11-20T00:00:00Z"}),
    ("'id' is missing", {"type": "malware", "spec_version": "2.1", "id": "malware--x",
                               "created": "2026-11-20T00:00:00Z"}),
    ("not a real date", {"type": "malware", "spec_version": "2.1",
                   "id": "malware--00000000-0000-4000-8000-000000000002",
                   "created": "2026-02-30T00:00:00Z", "modified": "2026-02-30T00:00:00Z",
                   "is_family": True, "name": "x"}),
    ("JSON object", "a string, not an object"),
]


def write_bundle(path: Path, *, seed: int = 6, count: int = 20, hostile: bool = True,
                 envelope: bool = False) -> Sample:
    rng = random.Random(seed)
    objects: list[object] = list(stix_objects(rng, count))
    if hostile:
        objects += [obj for _, obj in HOSTILE_STIX]
    document: dict[str, object] = {"objects": objects}
    if not envelope:
        document = {"type": "bundle", "id": "bundle--6f0b5c44-4b5e-4c0e-9a46-1c2f3e4d5a6b",
                    **document}
    path.write_bytes(orjson.dumps(document))
    return Sample(path, count, len(HOSTILE_STIX) if hostile else 0)


def write_all(directory: Path) -> dict[str, list[Sample]]:
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "shadowserver-event4-sinkhole": [
            write_sinkhole(directory / "2026-11-20-event4_sinkhole.csv", extra=True),
            write_sinkhole_minimal(directory / "2026-11-21-event4_sinkhole.csv"),
        ],
        "stix-bundle": [
            write_bundle(directory / "bundle.json"),
            write_bundle(directory / "envelope.json", seed=8, envelope=True),
        ],
    }


if __name__ == "__main__":
    for name, samples in write_all(Path(sys.argv[1])).items():
        for sample in samples:
            print(name, sample)
