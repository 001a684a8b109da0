"""Load the JSON Schemas in the top-level schemas/ folder and validate documents against them."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from .errors import ConfigError

SCHEMAS_DIR = Path(os.environ.get("EXCHANGE_SCHEMAS_DIR",
                                  Path(__file__).resolve().parent.parent / "schemas"))


@functools.cache
def validator(name: str) -> Draft202012Validator:
    path = SCHEMAS_DIR / f"{name}.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def problem(name: str, document: Any) -> str | None:
    """The first way `document` breaks schema `name`, with its location; None when it fits."""
    errors = sorted(validator(name).iter_errors(document), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    first = errors[0]
    location = "/".join(str(p) for p in first.absolute_path) or "(top level)"
    return f"{location}: {first.message}"[:500]


def validate(name: str, document: Any, where: str) -> None:
    """Raise ConfigError naming the file and the first problem's location."""
    found = problem(name, document)
    if found is not None:
        raise ConfigError(f"{where}: {found}")
