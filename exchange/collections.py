"""Collection definitions: one YAML file each in collections/, schema-checked at load time."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from .config import Settings
from .errors import ConfigError
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


def load_collections(settings: Settings) -> dict[str, CollectionDef]:
    """All collections by id, checked against the configured API roots."""
    directory = settings.collections_dir
    if not directory.is_dir():
        raise ConfigError(f"collections_dir {directory} is not a directory")
    roots = {r.name for r in settings.api_roots}
    found: dict[str, CollectionDef] = {}
    aliases: set[tuple[str, str]] = set()
    files = [*directory.glob("*.yaml"), *directory.glob("*.yml")]
    for path in sorted(files):
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        validate("collection", document, str(path))
        if document["api_root"] not in roots:
            raise ConfigError(f"{path}: api_root {document['api_root']!r} is not configured")
        if document["id"] in found:
            raise ConfigError(f"{path}: collection id {document['id']} is used twice")
        alias = document.get("alias")
        if alias and (document["api_root"], alias) in aliases:
            raise ConfigError(f"{path}: alias {alias!r} is used twice in its API root")
        if alias:
            aliases.add((document["api_root"], alias))
        found[document["id"]] = CollectionDef(
            id=document["id"], api_root=document["api_root"], title=document["title"],
            description=document.get("description", ""), alias=alias,
            media_types=tuple(document.get("media_types", [STIX_21])),
            readers=frozenset(document["read"]), writers=frozenset(document["write"]),
        )
    return found
