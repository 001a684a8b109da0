"""The `ingest` and `formats` subcommands (wired in exchange/cli.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import yaml

from ..collections import load_collections
from ..config import Settings
from ..errors import ConfigError
from ..ingest import Ingest
from . import PARSERS
from .base import Context
from .run import Run, progress_stream
from .values import BadValue


def formats() -> int:
    for parser in PARSERS.values():
        print(f"{parser.name}: {parser.description}")
        for field in parser.fields:
            flag = " (required)" if field.required else ""
            target = f" -> {field.stix}" if field.stix else ""
            print(f"    {field.name}{flag}: {field.description}{target}")
        for option in parser.options:
            print(f"    --option {option.name}=...: {option.description}")
    return 0


def _settings(args: argparse.Namespace) -> dict[str, str]:
    """Format settings: the --options YAML file, then each --option NAME=VALUE over it."""
    settings: dict[str, str] = {}
    if args.options:
        try:
            loaded = yaml.safe_load(Path(args.options).read_text(encoding="utf-8"))
        except (OSError, UnicodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read options file {args.options}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"options file {args.options} must be a mapping of NAME: VALUE")
        settings.update({str(k): str(v) for k, v in loaded.items()})
    for option in args.option:
        name, sep, value = option.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--option takes NAME=VALUE, not {option!r}")
        settings[name.strip()] = value.strip()
    return settings


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
        if parser_class.reads_directories and not path.is_dir():
            raise ConfigError(f"{parser_class.name} reads directories: no directory {path}")
        if not parser_class.reads_directories and not path.is_file():
            raise ConfigError(f"no input file {path}")
    if args.confidence is not None and not 0 <= args.confidence <= 100:
        raise ConfigError("--confidence must be between 0 and 100")
    try:
        parser = parser_class(_settings(args))
    except BadValue as exc:
        raise ConfigError(str(exc)) from None
    confidence = args.confidence if args.confidence is not None else parser.default_confidence
    context = Context(args.source or parser.default_source, args.tlp or parser.default_tlp,
                      handling=args.handling, confidence=confidence)
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
            # The progress line shares standard error only when rejects go to a file.
            show = not args.no_progress and args.rejects
            run = Run(Ingest(store), collection=target.id, rejects=write,
                      progress=progress_stream() if show else None)
            tally = run.files(parser, paths, context)
    finally:
        store.close()
    print(tally.line())
    return 1 if tally.rejected else 0
