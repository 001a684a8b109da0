"""URL filtering parameters (TAXII 2.1 section 3.4), parsed into Filters."""

from __future__ import annotations

import re

from starlette.datastructures import QueryParams

from ..config import ApiRootSettings
from ..errors import Invalid
from ..model import ALL, FIRST, LAST, Filters
from ..stix import IDENTIFIER_RE, timestamp_micros, version_key
from ..store import cursor

_TYPE_RE = re.compile(r"^[a-z0-9-]{3,250}$")
_SPEC_RE = re.compile(r"^\d+\.\d+$")

# Which filters each endpoint takes (section 3.4.2 table); others are ignored.
OBJECTS = frozenset({"id", "type", "version", "spec_version"})
OBJECT = frozenset({"version", "spec_version"})
VERSIONS = frozenset({"spec_version"})


# A filter list is served by one index scan per value (per TLP rank for a reader who may not
# see everything): bound the work one request can ask for.
MAX_VALUES = 100
MAX_TYPES = 50  # STIX 2.1 defines 42 types


def _values(params: QueryParams, name: str, most: int = MAX_VALUES) -> tuple[str, ...]:
    """Comma-separated values; a repeated parameter adds to the list."""
    values = [v.strip() for raw in params.getlist(name) for v in raw.split(",")]
    if any(not v for v in values):
        raise Invalid(f"{name} has an empty value")
    unique = tuple(dict.fromkeys(values))
    if len(unique) > most:
        raise Invalid(f"{name} lists {len(unique)} values; at most {most} per request")
    return unique


def limit(params: QueryParams, root: ApiRootSettings) -> int:
    raw = params.get("limit")
    if raw is None:
        return root.default_page_size
    # ASCII digits only: str.isdigit() and int() also take '١٠' and full-width digits.
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise Invalid("limit must be a positive integer")
    return min(int(raw), root.max_page_size)


def build_filters(params: QueryParams, root: ApiRootSettings, allowed: frozenset[str], *,
                  object_id: str | None = None, all_versions: bool = False) -> Filters:
    after = None
    if "added_after" in params:
        try:
            after = timestamp_micros(params["added_after"], "added_after")
        except Invalid as exc:
            raise Invalid(exc.description) from None
    if "next" in params:
        resume = cursor.decode(params["next"])
        after = resume if after is None else max(after, resume)
    ids: tuple[str, ...] = (object_id,) if object_id else ()
    if "id" in allowed and "match[id]" in params:
        ids = _values(params, "match[id]")
        bad = next((i for i in ids if not IDENTIFIER_RE.match(i)), None)
        if bad:
            raise Invalid(f"match[id]: {bad!r} is not a STIX identifier")
    types: tuple[str, ...] = ()
    if "type" in allowed and "match[type]" in params:
        types = _values(params, "match[type]", MAX_TYPES)
        bad = next((t for t in types if not _TYPE_RE.match(t)), None)
        if bad:
            raise Invalid(f"match[type]: {bad!r} is not a STIX type")
    versions: tuple[str, ...] = (ALL,) if all_versions else (LAST,)
    if "version" in allowed and "match[version]" in params:
        versions = tuple(_version(v) for v in _values(params, "match[version]"))
    spec_versions: tuple[str, ...] = ()
    if "spec_version" in allowed and "match[spec_version]" in params:
        spec_versions = _values(params, "match[spec_version]")
        bad = next((s for s in spec_versions if not _SPEC_RE.match(s)), None)
        if bad:
            raise Invalid(f"match[spec_version]: {bad!r} is not a version such as 2.1")
    return Filters(limit=limit(params, root), ids=ids, types=types, versions=versions,
                   spec_versions=spec_versions, after=after)


def _version(value: str) -> str:
    if value in (LAST, FIRST, ALL):
        return value
    try:
        return version_key(value)
    except Invalid:
        raise Invalid(f"match[version]: {value!r} is not first, last, all or a timestamp") \
            from None
