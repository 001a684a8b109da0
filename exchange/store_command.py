"""`taxii-exchange store copy` and `taxii-exchange store backup`: moving a store to another
(another file, another backend) and backing up a SQLite store while it serves."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import Settings
from .errors import ConfigError, Unavailable
from .store import copy as copying
from .store.factory import MONGODB, describe, open_store, open_url, sqlite_path

MONGODUMP = ("a MongoDB store is backed up with mongodump (e.g. `mongodump --uri URI --oplog "
             "--archive=FILE`), not with this command")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return copy(args) if args.action == "copy" else backup(args, settings)
    except Unavailable as exc:  # a store that cannot answer: a message, not a traceback
        print(f"taxii-exchange: {exc}", file=sys.stderr)
        return 1


def copy(args: argparse.Namespace) -> int:
    if args.page_size < 1:
        raise ConfigError("--page-size must be at least 1")
    source_name, target_name = describe(args.source), describe(args.target)
    if source_name == target_name:
        raise ConfigError("--from and --to name the same store")
    _exists(args.source)
    # The target as a bulk load: the source stays the durable copy until the copy is done.
    source, target = open_url(args.source), open_url(args.target, bulk=True)
    source.open()
    target.open()
    started, shown = time.monotonic(), [0.0]

    def progress(part: str, copied: int, done: bool) -> None:
        now = time.monotonic()
        if done or now - shown[0] >= 1.0:  # a line a second: pages may be small
            shown[0] = now
            state = "copied" if done else "copying"
            print(f"{part}: {copied} {state} ({now - started:.1f} s)", flush=True)

    try:
        print(f"copying {source_name} to {target_name}", flush=True)
        objects = copying.copy(source, target, source_name, page=args.page_size,
                               progress=progress)["objects"]
        elapsed = time.monotonic() - started
        print(f"this run copied {objects} object versions in {elapsed:.1f} s "
              f"({objects / elapsed:.0f} objects/s); verifying", flush=True)
        differences = copying.summarize(source).differences(copying.summarize(target))
    finally:
        source.close()
        target.close()
    for line in differences:
        print(f"DIFFERENT: {line}")
    if differences:
        print("the copy differs from the source (was the source written to during the "
              "copy? stop its servers, or copy a backup)")
        return 1
    print("verified: every collection's versions and digest, and the number of statuses, "
          "audit records and state documents, are the same in both stores")
    return 0


def backup(args: argparse.Namespace, settings: Settings) -> int:
    if args.source and args.source.startswith(MONGODB):
        raise ConfigError(MONGODUMP)
    if args.source:
        _exists(args.source)
    store = open_url(args.source) if args.source else open_store(settings)
    from .store.sqlite import SQLiteStore

    if not isinstance(store, SQLiteStore):
        raise ConfigError(MONGODUMP)
    if not Path(store.path).exists():
        raise ConfigError(f"no store file at {store.path}")
    started = time.monotonic()
    store.open()
    try:
        size = store.backup(args.path)
    except OSError as exc:  # no such folder, no permission, a full disk
        raise ConfigError(f"cannot write the backup to {args.path}: {exc.strerror}") from None
    finally:
        store.close()
    print(f"backed up {store.path} to {args.path}: {size} bytes, integrity ok, "
          f"{time.monotonic() - started:.1f} s", file=sys.stdout)
    return 0


def _exists(url: str) -> None:
    """A SQLite file must be there to be read: opening one creates it, and a mistyped path
    would otherwise copy an empty store and call the copy verified."""
    if url.startswith("sqlite:///") and not sqlite_path(url).exists():
        raise ConfigError(f"no store file at {sqlite_path(url)}")
