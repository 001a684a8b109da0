"""STIX 2.1 bundles and TAXII envelopes: validated pass-through.

Each object is checked with the same validation as a TAXII push and passed on unchanged (its
producer's content and markings are kept as they are); an invalid one is rejected with the
reason. The file's report is authored by the source given on the command line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InvalidObject
from ..stix import check_object
from . import values as v
from .base import Context, Field, Parser, Record, Reject
from .jsondoc import excerpt, load_json


class StixBundle(Parser):
    name = "stix-bundle"
    description = "STIX 2.1 bundle or TAXII 2.1 envelope (JSON with an 'objects' list)"
    fields = (
        Field("objects[]", "STIX 2.1 objects, each validated and passed through unchanged",
              "(the object itself)", required=True),
        Field("type", "'bundle' for a bundle; absent for an envelope"),
    )
    default_source = "STIX bundle import"
    authors_objects = False

    def records(self, path: Path) -> Iterator[Record | Reject]:
        source = str(path)
        try:
            loaded = load_json(path)
        except v.BadValue as exc:
            yield Reject(source, 0, str(exc), excerpt(path))
            return
        document = loaded.value
        if not isinstance(document, dict) or not isinstance(document.get("objects"), list):
            yield Reject(source, 0, "not a STIX bundle or TAXII envelope: no 'objects' list",
                         excerpt(path))
            return
        if "type" in document and document["type"] != "bundle":
            yield Reject(source, 0, f"a document with a 'type' must be a bundle, not "
                         f"{document['type']!r}", excerpt(path))
            return
        for index, obj in enumerate(document["objects"], start=1):
            raw, flaw = loaded.check(obj)
            if flaw is not None:
                yield Reject(source, index, flaw, raw)
                continue
            try:
                check_object(obj)
            except InvalidObject as exc:
                yield Reject(source, index, exc.description, raw)
                continue
            yield Record(source, index, raw, {"object": obj}, _time(obj))

    def to_stix(self, record: Record, context: Context) -> list[dict[str, Any]]:
        return [record.values["object"]]


def _time(obj: dict[str, Any]) -> str | None:
    value = obj.get("modified", obj.get("created"))
    if not isinstance(value, str):
        return None
    try:
        return v.timestamp(value)
    except v.BadValue:
        return None  # more than microsecond precision: valid STIX, no report time from it


FORMATS: tuple[type[Parser], ...] = (StixBundle,)
