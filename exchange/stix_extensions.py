"""The STIX property extensions this project adds to the objects it produces from feeds.

STIX 2.1 deprecates custom `x_` properties, and `stix2.parse` (strict by default) refuses any
object carrying one. So whatever the project adds to a standard object travels as a property
extension under a fixed `extension-definition` id, authored by the project's identity
(`markings.SERVER_IDENTITY`), published at `/extensions/` with a JSON Schema in `schemas/`,
and stored by an ingest run beside the objects that use it, so a consumer can resolve it:

- the data subject: whether an object describes a victim or suspect infrastructure;
- per source family (Shadowserver, abuse.ch, MISP, an analyst's CSV list), the fields the
  source gave that have no STIX property, under `fields`, kept so nothing the source said is
  lost. They sit one level down because a source's column names (`ip`, `Bad-Key`) are not all
  valid STIX property names, while dictionary keys only need to be made safe (values.extra_key).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from .markings import SERVER_IDENTITY, TLP, handling_extension_definition, server_identity

PROPERTY_EXTENSION = "property-extension"
_DEFINED = "2026-12-05T00:00:00.000Z"
_SCHEMA_BASE = "https://taxii-exchange.example/schemas/"

DATA_SUBJECT = "extension-definition--e9e57ccc-8296-4b01-8f70-a8416660c335"
VICTIM, SUSPECT, UNKNOWN = "victim", "suspect-infrastructure", "unknown"
SUBJECTS = (VICTIM, SUSPECT, UNKNOWN)


@dataclass(frozen=True, slots=True)
class Definition:
    """One extension definition this project publishes."""

    id: str
    key: str  # short name: the schema file is schemas/<key>.schema.json
    name: str
    description: str


_DEFINITIONS = (
    Definition(DATA_SUBJECT, "data-subject-extension", "Data subject",
               "Whom an object is about. data_subject: victim (a machine, site or account "
               "that suffered the activity: never to be blocked or published as an "
               "indicator), suspect-infrastructure (infrastructure the reporting source "
               "believes an attacker uses) or unknown."),
    Definition("extension-definition--3c517148-10d2-4960-962f-72a836f5abc1",
               "shadowserver-fields-extension", "Shadowserver report fields",
               "Columns of a Shadowserver report row that have no STIX property, under "
               "fields, by column name (lower case, non-alphanumerics as underscores)."),
    Definition("extension-definition--8cbd96ca-a5d1-4def-ad40-673ee04df57f",
               "abusech-fields-extension", "abuse.ch entry fields",
               "Fields of an abuse.ch (URLhaus, Feodo Tracker, ThreatFox, MalwareBazaar) "
               "entry that have no STIX property, under fields, by field name."),
    Definition("extension-definition--2fb08c2c-9bde-48d7-9637-2cee33bfd551",
               "misp-fields-extension", "MISP event and attribute fields",
               "Scalar fields of a MISP event or attribute (and its object) that have no STIX "
               "property, and their tags, under fields, by field name."),
    Definition("extension-definition--0ba2892a-37bf-42df-adae-4b11ef9b3951",
               "ioc-csv-fields-extension", "Indicator list columns",
               "Columns of an analyst's indicator list (CSV) that its column mapping does "
               "not name, under fields, by column name."),
)
BY_ID = {d.id: d for d in _DEFINITIONS}
# The per-source field extensions, by the source family key the parsers use.
SOURCE_FIELDS = {d.key.removesuffix("-fields-extension"): d.id for d in _DEFINITIONS
                 if d.key.endswith("-fields-extension")}


def definition(extension_id: str) -> dict[str, Any]:
    """The extension-definition object of one of this project's extensions."""
    found = BY_ID[extension_id]
    return {
        "type": "extension-definition", "spec_version": "2.1", "id": found.id,
        "created_by_ref": SERVER_IDENTITY, "created": _DEFINED, "modified": _DEFINED,
        "name": found.name, "description": found.description,
        "schema": f"{_SCHEMA_BASE}{found.key}.schema.json", "version": "1.0.0",
        "extension_types": [PROPERTY_EXTENSION], "object_marking_refs": [TLP["clear"]],
    }


def schema_name(extension_id: str) -> str | None:
    """The schemas/ name of an extension's JSON Schema; None for an unknown id."""
    found = BY_ID.get(extension_id)
    return found.key if found else None


def published() -> list[dict[str, Any]]:
    """Everything served at /extensions/: the project identity and every definition."""
    return [server_identity(), handling_extension_definition(),
            *(definition(d.id) for d in _DEFINITIONS)]


def subject(value: str) -> dict[str, Any]:
    """The extensions entry saying whom an object is about."""
    if value not in SUBJECTS:
        raise ValueError(f"data subject is one of {', '.join(SUBJECTS)}, not {value!r}")
    return {DATA_SUBJECT: {"extension_type": PROPERTY_EXTENSION, "data_subject": value}}


def source_fields(source: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The extensions entry keeping a source's fields without a STIX property ({} if none)."""
    if not fields:
        return {}
    return {SOURCE_FIELDS[source]: {"extension_type": PROPERTY_EXTENSION,
                                    "fields": fields}}


def extend(obj: dict[str, Any], *entries: dict[str, Any]) -> dict[str, Any]:
    """Add extension entries to an object (keeping those it has); the object, for chaining."""
    merged = {k: v for entry in entries for k, v in entry.items()}
    if merged:
        obj["extensions"] = {**obj.get("extensions", {}), **merged}
    return obj


def data_subject(obj: dict[str, Any]) -> str | None:
    """Whom an object is about, by the data subject extension; None when it does not say."""
    extensions = obj.get("extensions")
    value = extensions.get(DATA_SUBJECT) if isinstance(extensions, dict) else None
    found = value.get("data_subject") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def fields_of(obj: dict[str, Any], source: str) -> dict[str, Any]:
    """A source's kept fields on an object ({} when none)."""
    extensions = obj.get("extensions")
    value = extensions.get(SOURCE_FIELDS[source]) if isinstance(extensions, dict) else None
    found = value.get("fields") if isinstance(value, dict) else None
    return found if isinstance(found, dict) else {}


_FIELD_NAME = re.compile(r"^[A-Za-z0-9_]{1,250}$")  # a STIX dictionary key


# Cached: a feed's rows keep the same few sets of columns, so the names are checked once.
@functools.lru_cache(maxsize=1024)
def _field_names_ok(names: tuple[str, ...]) -> bool:
    return all(isinstance(name, str) and _FIELD_NAME.match(name) for name in names)


def problem(obj: dict[str, Any]) -> str | None:
    """What is wrong with an object's `extensions`: not an object of objects, or one of the
    project's extensions off its JSON Schema (checked directly: this runs on every object
    written); None when they fit."""
    extensions = obj.get("extensions")
    if not isinstance(extensions, dict) or not all(isinstance(v, dict)
                                                   for v in extensions.values()):
        return "extensions must be an object of objects, by extension name or definition id"
    for extension_id, value in extensions.items():
        if extension_id not in BY_ID:
            continue
        if not isinstance(value, dict) or value.get("extension_type") != PROPERTY_EXTENSION:
            return f"extensions[{extension_id}]: extension_type must be {PROPERTY_EXTENSION}"
        if extension_id == DATA_SUBJECT:
            if set(value) != {"extension_type", "data_subject"} or \
                    value["data_subject"] not in SUBJECTS:
                return f"extensions[{extension_id}]: data_subject must be one of " \
                       f"{', '.join(SUBJECTS)}, and nothing else"
            continue
        fields = value.get("fields")
        if set(value) != {"extension_type", "fields"} or not isinstance(fields, dict) or \
                not fields or not _field_names_ok(tuple(fields)):
            return f"extensions[{extension_id}]: fields must be a non-empty object whose " \
                   "names are letters, digits and underscores (at most 250), and nothing else"
    return None
