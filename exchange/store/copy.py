"""Copying a whole store to another, through `Store.dump` and `Store.restore` only, so any
backend copies to any other."""

from __future__ import annotations

from typing import Any

PARTS = ("objects", "statuses", "audit", "state")


def key(part: str, record: dict[str, Any]) -> Any:
    """The key of a dumped record: what `dump` takes as `after` to go on past it."""
    if part == "objects":
        return [record["collection"], record["added"]]
    return record[{"statuses": "id", "audit": "seq", "state": "name"}[part]]
