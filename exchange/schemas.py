"""Load the JSON Schemas in the top-level schemas/ folder and validate documents against them."""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from .errors import ConfigError

SCHEMAS_DIR = Path(os.environ.get("EXCHANGE_SCHEMAS_DIR",
                                  Path(__file__).resolve().parent.parent / "schemas"))


@functools.cache
def validator(name: str) -> Draft202012Validator:
    path = SCHEMAS_DIR / f"{name}.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def problem(name: str, document: Any, *, keys: bool = False) -> str | None:
    """The first way `document` breaks schema `name`, with its location (`a/b/0/c`, or with
    `keys` as one writes it in YAML: `a.b[0].c`); None when it fits. An unknown key comes
    first and is named itself: a typo (`max_page_sise`) also makes its object miss the key it
    meant, and "title is required" would hide it."""
    errors = sorted(validator(name).iter_errors(document),
                    key=lambda e: (not _unknown_keys(e), list(e.absolute_path)))
    if not errors:
        return None
    first = errors[0]
    unknown = _unknown_keys(first)
    if unknown:
        known = sorted(first.schema.get("properties", {}))
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
        where = location([*first.absolute_path, unknown[0]], keys=keys)
        return f"{where}: unknown key ({hint})"[:500]
    return f"{location(list(first.absolute_path), keys=keys)}: {first.message}"[:500]


def location(path: list[str | int], *, keys: bool = False) -> str:
    """A path into a document: `Event/Object/0` (reject reasons of input records), or with
    `keys` as an operator writes it in a settings file: `api_roots.api1.title`, `read[0]`."""
    if not keys:
        return "/".join(str(part) for part in path) or "(top level)"
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    return text.removeprefix(".") or "(top level)"


def _unknown_keys(error: ValidationError) -> list[str]:
    """The keys an `additionalProperties: false` error is about (jsonschema names them only
    inside its message)."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict) \
            or not isinstance(error.schema, dict):
        return []
    known = error.schema.get("properties", {})
    patterns = error.schema.get("patternProperties", {})
    return sorted(key for key in error.instance if key not in known
                  and not any(re.search(pattern, key) for pattern in patterns))


def validate(name: str, document: Any, where: str) -> None:
    """Raise ConfigError naming the file and the first problem's location."""
    found = problem(name, document, keys=True)
    if found is not None:
        raise ConfigError(f"{where}: {found}")
