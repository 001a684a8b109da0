"""The `ingest` and `formats` subcommands (wired in exchange/cli.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

import yaml

from .. import audit
from ..collections import CollectionDef, load_collections
from ..config import Settings
from ..errors import ConfigError
from ..ingest import Ingest, Writer
from ..model import AuditEntry, Outcome
from . import PARSERS
from .base import Context, Parser, Tally
from .run import Run, progress_stream
from .values import BadValue


def formats() -> int:
    # The mapping names the project's property extensions briefly; say once what they are.
    print("ext[SOURCE].NAME: field NAME of the SOURCE fields extension; ext[data-subject]: the "
          "data subject extension (definitions at /extensions/)")
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
    codes = tuple(c.strip().upper() for item in args.handling for c in item.split(",")
                  if c.strip())
    tally = load(settings, args.format, args.collection, args.paths, options=_settings(args),
                 source=args.source, tlp=args.tlp, handling=codes,
                 handling_conditions=args.handling_conditions, reliability=args.reliability,
                 accuracy=args.accuracy, confidence=args.confidence, rejects=args.rejects,
                 progress=not args.no_progress)
    print(tally.line())
    return 1 if tally.rejected else 0


def load(settings: Settings, format_name: str, collection: str,
         paths: Sequence[str | Path], *, options: Mapping[str, str] | None = None,
         source: str | None = None, tlp: str | None = None, handling: Sequence[str] = (),
         handling_conditions: str | None = None, reliability: str | None = None,
         accuracy: str | None = None, confidence: int | None = None,
         rejects: str | Path | None = None, progress: bool = False) -> Tally:
    """Normalise `paths` in one format into one collection (id or alias): what `ingest` does,
    for any caller (the demo loads its inbox this way). Rejected rows are appended to the
    `rejects` file as JSON lines, else written to standard error; the progress line shows
    only when they go to a file. A bad format, collection, path, confidence or option is a
    ConfigError, raised before anything is read or stored. `collection` is an id, an alias
    used in one API root, or ROOT/ALIAS."""
    from ..store.factory import open_store

    parser_class = PARSERS.get(format_name)
    if parser_class is None:
        raise ConfigError(f"unknown format {format_name!r}; known: {', '.join(PARSERS)}")
    target = load_collections(settings).named(collection)
    inputs = [Path(p) for p in paths]
    for path in inputs:
        if parser_class.reads_directories and not path.is_dir():
            raise ConfigError(f"{parser_class.name} reads directories: no directory {path}")
        if not parser_class.reads_directories and not path.is_file():
            raise ConfigError(f"no input file {path}")
    if confidence is not None and not 0 <= confidence <= 100:
        raise ConfigError("--confidence must be between 0 and 100")
    parser = make_parser(format_name, options)
    if confidence is None:
        confidence = parser.default_confidence
    try:
        context = Context(source or parser.default_source, tlp or parser.default_tlp,
                          handling=tuple(handling), handling_conditions=handling_conditions,
                          reliability=reliability, accuracy=accuracy, confidence=confidence)
    except BadValue as exc:
        raise ConfigError(str(exc)) from None
    # An operator's load: the command sets the source identity and the TLP, so there is no
    # provenance check, and what it leaves unmarked takes the collection's default marking.
    writer = Writer(default_rank=target.default_rank)
    store = open_store(settings, bulk=True)
    store.open()
    try:
        with ExitStack() as stack:
            if rejects:
                write: Callable[[bytes], object] = stack.enter_context(
                    open(rejects, "ab")).write
            else:
                def write(line: bytes) -> object:
                    return sys.stderr.write(line.decode())
            # The progress line shares standard error only when rejects go to a file.
            show = progress and rejects
            return feed(Ingest(store), target, parser, inputs, context, writer, write,
                        progress=progress_stream() if show else None)
    finally:
        store.close()


def make_parser(format_name: str, options: Mapping[str, str] | None = None) -> Parser:
    """A format's parser with its settings; ConfigError for an unknown format or option."""
    parser_class = PARSERS.get(format_name)
    if parser_class is None:
        raise ConfigError(f"unknown format {format_name!r}; known: {', '.join(PARSERS)}")
    try:
        return parser_class(dict(options or {}))
    except BadValue as exc:
        raise ConfigError(str(exc)) from None


def feed(ingest: Ingest, target: CollectionDef, parser: Parser, inputs: Sequence[Path],
         context: Context, writer: Writer, rejects: Callable[[bytes], object], *,
         progress: TextIO | None = None, parallel: bool | None = None,
         names: Sequence[str] | None = None, face: str | None = None) -> Tally:
    """The one way input files enter a collection, for the `ingest` command and for an upload
    on the pages: normalised by `parser`, checked as `writer` (an operator's load, or a
    partner with its identity, relays and the collection's rules) and stored through
    `ingest`, each batch with its audit record (made by the writer's partner; `names` are the
    files as the record names them, `face` where the load came from)."""
    def stored(done: list[Outcome]) -> AuditEntry:
        return audit.entry("ingest", writer.pusher, collection=target.id, format=parser.name,
                           files=list(names) if names is not None else [str(p) for p in inputs],
                           face=face, **audit.outcomes(done))

    run = Run(ingest, collection=target.id, writer=writer, rejects=rejects, progress=progress,
              record=stored)
    return run.files(parser, inputs, context, parallel=parallel)
