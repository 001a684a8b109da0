"""`taxii-exchange collections list|add|check`: the collection files, for operators.

`add` writes a new file with a fresh UUIDv4 id (nobody types one by hand), checked before it
is written, atomically, so a running server never reads half a file; it serves the new
collection from its next request (see collections_watch.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml

from .collections import Collections, collection_files, load_collections, read_definition
from .config import Settings
from .errors import ConfigError
from .schemas import validate


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "list":
        _list(load_collections(settings))
        return 0
    if args.action == "check":
        return check(settings)
    path, document = add(settings, alias=args.alias, title=args.title, api_root=args.api_root,
                         read=args.read, write=args.write,
                         default_marking=args.default_marking, description=args.description)
    _record(settings)
    print(f"id:       {document['id']}")
    print(f"alias:    {document['api_root']}/{document['alias']}")
    print(f"file:     {path}")
    return 0


def _list(collections: Collections) -> None:
    print("id\talias\tapi root\ttitle\tread\twrite")
    for c in sorted(collections, key=lambda c: (c.api_root, c.alias or "", c.id)):
        print(f"{c.id}\t{c.alias or '-'}\t{c.api_root}\t{c.title}\t"
              f"{','.join(sorted(c.readers)) or '-'}\t{','.join(sorted(c.writers)) or '-'}")


def check(settings: Settings) -> int:
    """Every file checked on its own (all problems named, not only the first), then what
    files must agree on: ids and aliases used once."""
    directory = settings.collections_dir
    if not directory.is_dir():
        raise ConfigError(f"collections_dir {directory} is not a directory")
    roots = {r.name for r in settings.api_roots}
    problems: list[str] = []
    ids: dict[str, Path] = {}
    aliases: dict[tuple[str, str], Path] = {}
    files = collection_files(directory)
    for path in files:
        try:
            document = read_definition(path, roots)
        except ConfigError as exc:
            problems.append(exc.description)
            continue
        if document["id"] in ids:
            problems.append(f"{path}: id: {document['id']} is also the id in "
                            f"{ids[document['id']]}")
        ids.setdefault(document["id"], path)
        alias = document.get("alias")
        if alias:
            key = (document["api_root"], alias)
            if key in aliases:
                problems.append(f"{path}: alias: {alias!r} is also used in API root "
                                f"{key[0]!r} by {aliases[key]}")
            aliases.setdefault(key, path)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {directory}", file=sys.stderr)
        return 1
    print(f"{len(files)} collection file(s) in {directory}: OK")
    return 0


def add(settings: Settings, *, alias: str, title: str, api_root: str | None = None,
        read: list[str] | None = None, write: list[str] | None = None,
        default_marking: str = "amber",
        description: str | None = None) -> tuple[Path, dict[str, Any]]:
    root = api_root or settings.default_api_root or settings.api_roots[0].name
    document: dict[str, Any] = {"id": str(uuid.uuid4()), "api_root": root, "alias": alias,
                                "title": title}
    if description:
        document["description"] = description
    document.update(read=list(dict.fromkeys(read or ())),
                    write=list(dict.fromkeys(write or ())), default_marking=default_marking)
    validate("collection", document, f"collection {alias!r}")
    if settings.api_root(root) is None:
        raise ConfigError(f"api root {root!r} is not configured (configured: "
                          f"{', '.join(r.name for r in settings.api_roots)})")
    # The others must load: a server that cannot read the whole set keeps its old one.
    existing = load_collections(settings)
    if existing.find(root, alias) is not None:
        raise ConfigError(f"alias {alias!r} is taken in API root {root!r}")
    directory = settings.collections_dir
    path = next((p for p in (directory / f"{alias}.yaml", directory / f"{root}.{alias}.yaml")
                 if not p.exists()), None)
    if path is None:
        raise ConfigError(f"{directory / f'{alias}.yaml'} exists: name the collection "
                          "otherwise")
    _write(path, document)
    return path, document


def _write(path: Path, document: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".collection-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("# Written by `taxii-exchange collections add`; edit freely.\n")
            yaml.safe_dump(document, out, sort_keys=False, allow_unicode=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _record(settings: Settings) -> None:
    """The new collection leaves an audit record in the server's store, when it has one (a
    server starting over a new store records what it finds)."""
    from . import audit
    from .store.factory import existing_store

    store = existing_store(settings)
    if store is None:
        return
    store.open()
    try:
        audit.reconcile(store, "collection", {c.id: c for c in load_collections(settings)},
                        "collections command")
    finally:
        store.close()
