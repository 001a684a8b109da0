"""`taxii-exchange audit` and `taxii-exchange purge`: checking and exporting the audit trail,
and deleting what is past retention."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from datetime import UTC, datetime

import orjson

from . import audit as trail
from .collections import load_collections
from .config import Settings
from .errors import ConfigError
from .retention import purge as purge_store
from .stix import to_micros
from .store.factory import open_store


def audit(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    store.open()
    try:
        if args.action == "verify":
            verdict = trail.verify(store, _anchor(args.anchor) if args.anchor else None)
            for problem in verdict.problems:
                print(problem)
            seq, digest = verdict.head
            state = "BROKEN" if verdict.problems else "intact"
            print(f"audit trail {state}: {verdict.records} records; last {seq}:{digest}")
            return 1 if verdict.problems else 0
        if args.action == "prune":
            count, through = trail.prune(store, _moment(args.before), dry_run=args.dry_run,
                                         by="audit prune command")
            verb = "would delete" if args.dry_run else "deleted"
            print(f"{verb} {count} records, through record {through}")
            return 0
        since = _moment(args.since) if args.since else None
        with ExitStack() as stack:
            out = stack.enter_context(open(args.out, "wb")) if args.out else sys.stdout.buffer
            for record in trail.export(store, since, args.partner):
                out.write(orjson.dumps(record) + b"\n")
        return 0
    finally:
        store.close()


def purge(args: argparse.Namespace, settings: Settings) -> int:
    collections = load_collections(settings)
    chosen = [collections.named(key) for key in args.collection] if args.collection \
        else list(collections)
    store = open_store(settings)
    store.open()
    try:
        done = purge_store(store, chosen, dry_run=args.dry_run, by="purge command")
    finally:
        store.close()
    for item in done:
        print(item.line(args.dry_run))
    if not done:
        print("no collection has a retention period (retention_days)")
    return 0


def _anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise ConfigError(f"--anchor takes SEQ:HASH as `audit verify` prints it, not {text!r}")
    return int(seq), digest.lower()


def _moment(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since takes an ISO 8601 time, not {text!r}") from None
    return to_micros(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
