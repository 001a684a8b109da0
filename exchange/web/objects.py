"""What a page shows of a stored STIX object: a one-line summary for lists, readable fields,
TLP badges and handling codes. Plain data for the templates, which escape every string."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..markings import RANK_OF_MARKING, handling_codes, marking_rank
from ..model import TLP_NAMES, Entry
from ..stix import format_micros

_LABELS = ("name", "value", "pattern", "path", "key", "number", "user_id", "relationship_type")


@dataclass(frozen=True, slots=True)
class Summary:
    id: str
    type: str
    label: str
    tlp: str  # lower-case TLP name: the badge's text and CSS class
    tlp_default: bool  # unmarked: the collection's default marking applies
    version: str
    date_added: str


def parse(entry: Entry) -> dict[str, Any]:
    found = orjson.loads(entry.body)
    return found if isinstance(found, dict) else {}


def summary(entry: Entry, default_rank: int) -> Summary:
    obj = parse(entry)
    label = next((str(obj[k]) for k in _LABELS if isinstance(obj.get(k), str | int)), "")
    rank = marking_rank(obj)
    return Summary(entry.id, str(obj.get("type", "")), label[:200],
                   TLP_NAMES[default_rank if rank is None else rank], rank is None,
                   entry.version, format_micros(entry.date_added))


def markings(obj: dict[str, Any]) -> list[str]:
    """TLP names of the object's markings (object and granular), highest last; other
    marking definitions by id."""
    refs = obj.get("object_marking_refs")
    found = [r for r in refs if isinstance(r, str)] if isinstance(refs, list) else []
    granular = obj.get("granular_markings")
    for item in granular if isinstance(granular, list) else ():
        if isinstance(item, dict) and isinstance(item.get("marking_ref"), str):
            found.append(item["marking_ref"])
    named = sorted({TLP_NAMES[RANK_OF_MARKING[r]] for r in found if r in RANK_OF_MARKING},
                   key=lambda name: list(TLP_NAMES.values()).index(name))
    return named + sorted({r for r in found if r not in RANK_OF_MARKING})


def handling(obj: dict[str, Any]) -> list[str]:
    return [str(code) for code in handling_codes(obj)]


def fields(obj: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(name, text, structured) per top-level property; lists and objects as indented JSON."""
    shown = []
    for name, value in obj.items():
        if isinstance(value, dict | list):
            shown.append((name, orjson.dumps(value, option=orjson.OPT_INDENT_2).decode(), True))
        else:
            shown.append((name, value if isinstance(value, str) else orjson.dumps(value).decode(),
                          False))
    return shown


def raw(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode()
