"""`taxii-exchange sync`: run the configured peers once, or show how their syncs went."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from ..collections import load_collections
from ..config import Settings
from ..ingest import Ingest
from ..policy import partners
from ..policy.gate import Gate
from ..store.factory import open_store
from .peers import PULL, PUSH, load_peers
from .sync import Federation


def sync(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    store.open()
    try:
        collections = load_collections(settings)
        known = partners.load(settings.partners_file)
        federation = Federation(store, Gate(settings, collections, store), Ingest(store),
                                collections, known.get, load_peers(settings.peers_file))
        if args.what == "status":
            for record in federation.status():
                print(_status_line(record))
            return 0
        if not federation.peers:
            print(f"no peers in {settings.peers_file}")
            return 0
        directions = (args.direction,) if args.direction else (PULL, PUSH)
        names = args.peer or list(federation.peers)
        if args.restart:
            for name in names:
                for direction in directions:
                    federation.forget(name, direction)
        failed = False
        for run in federation.run(names, directions):
            print(run.line())
            # Skipped (another process holds it) is not done either: say so to cron.
            failed = failed or bool(run.error or run.failed or run.skipped)
        return 1 if failed else 0
    finally:
        store.close()


def _status_line(record: dict[str, Any]) -> str:
    last = record.get("last", {})
    totals = record.get("totals", {})
    error = record.get("last_error", {})
    parts = [f"{record['peer']} {record['direction']}:",
             f"last success {_when(record.get('last_success'))},",
             f"last run moved {last.get('objects', 0)} (unchanged {last.get('unchanged', 0)}, "
             f"failed {last.get('failed', 0)}),",
             f"in all {totals.get('objects', 0)},",
             f"bookmark {record.get('bookmark')}"]
    if error:
        parts.append(f"; last error {_when(error.get('at'))}: {error.get('error')}")
    return " ".join(parts)


def _when(moment: float | None) -> str:
    if not moment:
        return "never"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
