"""`taxii-exchange demo`: a populated server with fresh partner credentials, for a first look.

The sample data is synthetic: documentation address ranges and `.example` domains only.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

import orjson
import yaml

from .collections import load_collections
from .config import load_settings
from .ingest import Ingest
from .policy import partners
from .store.sqlite import SQLiteStore

NAMESPACE = uuid.UUID("5d3c7a1e-8f0b-4b6a-9e2d-1c4f7a9b3e60")  # demo objects' UUIDv5 space
TLP_GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
TLP_AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"

DEMO_PARTNERS = [
    ("europol-ec3", "Europol EC3 (demo)", ("eu-le",)),
    ("us-agency", "US agency (demo)", ("us-le",)),
    ("cert-eu", "National CERT (demo)", ("cert",)),
    ("analyst", "Exchange analyst (demo)", ("analysts",)),
    ("feed-provider", "Feed provider (demo)", ("feed-providers",)),
]


def _id(kind: str, key: str) -> str:
    return f"{kind}--{uuid.uuid5(NAMESPACE, f'{kind}:{key}')}"


def sample_objects(seed: int = 7, count: int = 60) -> dict[str, list[dict[str, Any]]]:
    """Indicators for the indicators collection, sightings for victim notifications."""
    rng = random.Random(seed)
    day = "2026-11-20T"
    source = {"type": "identity", "spec_version": "2.1", "id": _id("identity", "demo-sinkhole"),
              "created": day + "00:00:00.000Z", "modified": day + "00:00:00.000Z",
              "name": "Demo Sinkhole Operator", "identity_class": "organization"}
    families = ["emotet", "qakbot", "icedid", "pikabot"]
    malware = [{"type": "malware", "spec_version": "2.1", "id": _id("malware", f),
                "created": day + "00:00:00.000Z", "modified": day + "00:00:00.000Z",
                "name": f, "is_family": True, "created_by_ref": source["id"],
                "object_marking_refs": [TLP_GREEN]} for f in families]
    indicators: list[dict[str, Any]] = [source, *malware]
    for n in range(count):
        ip = f"198.51.100.{n % 254 + 1}" if n % 2 else f"203.0.113.{n % 254 + 1}"
        family = malware[rng.randrange(len(malware))]
        seen = f"{day}{rng.randrange(24):02d}:{rng.randrange(60):02d}:00.000Z"
        indicator = {
            "type": "indicator", "spec_version": "2.1", "id": _id("indicator", ip),
            "created": seen, "modified": seen, "name": f"{family['name']} C2 {ip}",
            "pattern": f"[ipv4-addr:value = '{ip}']", "pattern_type": "stix",
            "valid_from": seen, "indicator_types": ["malicious-activity"],
            "created_by_ref": source["id"], "object_marking_refs": [TLP_AMBER],
            "confidence": rng.choice([50, 70, 90]),
        }
        relation = {
            "type": "relationship", "spec_version": "2.1",
            "id": _id("relationship", f"{ip}-{family['name']}"), "created": seen,
            "modified": seen, "relationship_type": "indicates", "source_ref": indicator["id"],
            "target_ref": family["id"], "created_by_ref": source["id"],
            "object_marking_refs": [TLP_AMBER],
        }
        indicators += [indicator, relation]
    sightings: list[dict[str, Any]] = [source]
    for n in range(count):
        victim = f"192.0.2.{n % 254 + 1}"
        seen = f"{day}{rng.randrange(24):02d}:{rng.randrange(60):02d}:00.000Z"
        address = {"type": "ipv4-addr", "spec_version": "2.1",
                   "id": _id("ipv4-addr", victim), "value": victim}
        observed = {"type": "observed-data", "spec_version": "2.1",
                    "id": _id("observed-data", f"{victim}-{seen}"), "created": seen,
                    "modified": seen, "first_observed": seen, "last_observed": seen,
                    "number_observed": rng.randrange(1, 20), "object_refs": [address["id"]],
                    "created_by_ref": source["id"], "object_marking_refs": [TLP_AMBER]}
        family = malware[rng.randrange(len(malware))]
        sighting = {"type": "sighting", "spec_version": "2.1",
                    "id": _id("sighting", f"{victim}-{seen}"), "created": seen, "modified": seen,
                    "sighting_of_ref": family["id"], "observed_data_refs": [observed["id"]],
                    "where_sighted_refs": [source["id"]], "created_by_ref": source["id"],
                    "object_marking_refs": [TLP_AMBER]}
        sightings += [address, observed, sighting]
    return {"indicators": indicators, "victim-notifications": sightings}


def run_demo(directory: Path, *, port: int, serve_after: bool) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({
        "store_path": "demo.sqlite3", "partners_file": "partners.yaml", "port": port,
        "collections_dir": str(Path(__file__).resolve().parent.parent / "collections"),
    }))
    settings = load_settings(config)
    settings.partners_file.unlink(missing_ok=True)  # fresh credentials on every demo start
    created = [partners.add(settings.partners_file, pid, name, groups)
               for pid, name, groups in DEMO_PARTNERS]

    store = SQLiteStore(settings.store_path)
    store.open()
    ingest = Ingest(store)
    by_alias = {c.alias: c for c in load_collections(settings).values()}
    loaded = 0
    for alias, objects in sample_objects().items():
        target = by_alias[alias]
        status = ingest.accept(api_root=target.api_root, collection=target.id,
                               partner="analyst", body=orjson.dumps({"objects": objects}))
        done = ingest.process(status.id) or status
        loaded += len(done.successes)
    store.close()

    base = f"http://127.0.0.1:{port}"
    print(f"\ntaxii-exchange demo: {loaded} sample objects in {settings.store_path}")
    print("Demo partners (fresh secrets, shown once):\n")
    print(f"  {'partner':<15} {'groups':<16} {'password':<26} token")
    for (pid, _, groups), cred in zip(DEMO_PARTNERS, created, strict=True):
        print(f"  {pid:<15} {','.join(groups):<16} {cred.password:<26} {cred.token}")
    analyst = created[3]
    print("\nTry:\n"
          f"  curl -u analyst:{analyst.password} -H 'Accept: application/taxii+json;version=2.1' "
          f"{base}/taxii2/\n"
          f"  curl -H 'Authorization: Bearer {analyst.token}' -H 'Accept: "
          f"application/taxii+json;version=2.1' "
          f"'{base}/cybercrime/collections/indicators/objects/?limit=5'\n")
    if serve_after:
        from .cli import serve

        serve(settings)
    return 0
