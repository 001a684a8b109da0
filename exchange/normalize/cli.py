"""The `ingest` and `formats` subcommands (wired in exchange/cli.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from ..collections import load_collections
from ..config import Settings
from ..errors import ConfigError
from ..ingest import Ingest
from . import PARSERS
from .base import TLP, Context
from .run import Run

PARTNER = "cli"  # the status records who pushed: the local command line


def formats() -> int:
    for parser in PARSERS.values():
        print(f"{parser.name}: {parser.description}")
        for field in parser.fields:
            flag = " (required)" if field.required else ""
            target = f" -> {field.stix}" if field.stix else ""
            print(f"    {field.name}{flag}: {field.description}{target}")
    return 0


def ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ..store.sqlite import SQLiteStore

    parser_class = PARSERS.get(args.format)
    if parser_class is None:
        raise ConfigError(f"unknown format {args.format!r}; known: {', '.join(PARSERS)}")
    collections = load_collections(settings).values()
    target = next((c for c in collections if args.collection in (c.id, c.alias)), None)
    if target is None:
        raise ConfigError(f"no collection with id or alias {args.collection!r}")
    paths = [Path(p) for p in args.paths]
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"no input file {path}")
    parser = parser_class()
    context = Context(args.source or parser.default_source, (TLP[args.tlp],))
    store = SQLiteStore(settings.store_path)
    store.open()
    try:
        with ExitStack() as stack:
            if args.rejects:
                write: Callable[[bytes], object] = stack.enter_context(
                    open(args.rejects, "ab")).write
            else:
                def write(line: bytes) -> object:
                    return sys.stderr.write(line.decode())
            run = Run(Ingest(store), api_root=target.api_root, collection=target.id,
                      partner=PARTNER, rejects=write)
            tally = run.files(parser, paths, context)
    finally:
        store.close()
    print(tally.line())
    return 1 if tally.rejected else 0
