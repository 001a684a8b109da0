"""Collection definitions: one YAML file each in collections/, schema-checked at load time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import Settings
from .errors import ConfigError
from .model import TLP_RANKS
from .schemas import validate

STIX_21 = "application/stix+json;version=2.1"


@dataclass(frozen=True, slots=True)
class CollectionDef:
    id: str
    api_root: str
    title: str
    description: str
    alias: str | None
    media_types: tuple[str, ...]
    readers: frozenset[str]  # 'group:NAME' / 'partner:ID'
    writers: frozenset[str]
    default_rank: int  # TLP rank an unmarked object is stored with (`default_marking`)
    require_marking: bool = False  # refuse pushed objects without a TLP marking
    custom_properties: bool = True  # accept custom properties and object types (x_, x-)
    # Clearance for this collection, overriding the partner's own: principal -> TLP rank.
    clearances: dict[str, int] = field(default_factory=dict)
    red_recipients: frozenset[str] = frozenset()  # who may receive TLP:RED here
    # Days a version is kept after its date_added, per its own TLP rank (None: for ever).
    retention_days: tuple[int | None, ...] = (None,) * len(TLP_RANKS)

    def __hash__(self) -> int:
        return hash(self.id)


class Collections:
    """Every configured collection; aliases resolve within their own API root only."""

    def __init__(self, found: dict[str, CollectionDef]) -> None:
        self._by_id = found

    def _current(self) -> dict[str, CollectionDef]:
        """The set in force (collections_watch.py re-reads a changed folder here)."""
        return self._by_id

    def __iter__(self) -> Iterator[CollectionDef]:
        return iter(list(self._current().values()))

    def __len__(self) -> int:
        return len(self._current())

    def get(self, collection_id: str) -> CollectionDef | None:
        return self._current().get(collection_id)

    def in_root(self, api_root: str) -> list[CollectionDef]:
        return [c for c in self._current().values() if c.api_root == api_root]

    def find(self, api_root: str, key: str) -> CollectionDef | None:
        """A collection of this API root by id or alias."""
        return next((c for c in self.in_root(api_root) if key in (c.id, c.alias)), None)

    def named(self, key: str) -> CollectionDef:
        """For operators' commands: an id, `ROOT/ALIAS`, or an alias used in one root only."""
        root, sep, alias = key.partition("/")
        if sep:
            found = self.find(root, alias)
            if found is None:
                raise ConfigError(f"no collection {alias!r} in API root {root!r}")
            return found
        current = self._current()
        if key in current:
            return current[key]
        matches = [c for c in current.values() if c.alias == key]
        if len(matches) > 1:
            roots = ", ".join(f"{c.api_root}/{key}" for c in matches)
            raise ConfigError(f"alias {key!r} is used in several API roots: name one of {roots}")
        if not matches:
            raise ConfigError(f"no collection with id or alias {key!r}")
        return matches[0]


def _retention(document: dict[str, Any]) -> tuple[int | None, ...]:
    by_tlp = document.get("retention_days_by_tlp", {})
    default = document.get("retention_days")
    return tuple(by_tlp.get(name, default) for name in TLP_RANKS)


def collection_files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def read_definition(path: Path, roots: set[str]) -> dict[str, Any]:
    """One collection file, schema-checked; ConfigError names the file and the bad key."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    validate("collection", document, str(path))
    if document["api_root"] not in roots:
        raise ConfigError(f"{path}: api_root {document['api_root']!r} is not configured")
    return dict(document)


def load_collections(settings: Settings) -> Collections:
    """All collections, checked against the configured API roots."""
    directory = settings.collections_dir
    if not directory.is_dir():
        raise ConfigError(f"collections_dir {directory} is not a directory")
    roots = {r.name for r in settings.api_roots}
    found: dict[str, CollectionDef] = {}
    aliases: set[tuple[str, str]] = set()
    for path in collection_files(directory):
        document = read_definition(path, roots)
        if document["id"] in found:
            raise ConfigError(f"{path}: collection id {document['id']} is used twice")
        alias = document.get("alias")
        if alias and (document["api_root"], alias) in aliases:
            raise ConfigError(f"{path}: alias {alias!r} is used twice in its API root")
        if alias:
            aliases.add((document["api_root"], alias))
        found[document["id"]] = _definition(document)
    return Collections(found)


def _definition(document: dict[str, Any]) -> CollectionDef:
    return CollectionDef(
        id=document["id"], api_root=document["api_root"], title=document["title"],
        description=document.get("description", ""), alias=document.get("alias"),
        media_types=tuple(document.get("media_types", [STIX_21])),
        readers=frozenset(document["read"]), writers=frozenset(document["write"]),
        default_rank=TLP_RANKS[document["default_marking"]],
        require_marking=document.get("require_marking", False),
        custom_properties=document.get("custom_properties", True),
        clearances={who: TLP_RANKS[tlp] for who, tlp in document.get("clearance", {}).items()},
        red_recipients=frozenset(document.get("red_recipients", ())),
        retention_days=_retention(document),
    )
