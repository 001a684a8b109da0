"""JSON input documents, read whole with a size cap (bundles, feed exports, MISP events)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from .values import BadValue

MAX_FILE = 256 * 1024 * 1024  # bytes: larger documents are refused, not read


def load_json(path: Path) -> Any:
    """The document in `path` (a UTF-8 byte-order mark allowed); BadValue saying why not."""
    try:
        if path.stat().st_size > MAX_FILE:
            raise BadValue(f"file larger than {MAX_FILE} bytes")
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadValue("file missing") from None
    except OSError as exc:
        raise BadValue(f"cannot read file: {exc.strerror or exc}") from None
    try:
        return orjson.loads(data.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError as exc:
        raise BadValue(f"not valid JSON: {exc}") from None


def excerpt(path: Path) -> str:
    """The start of a file, for the raw column of a whole-file reject."""
    with path.open("rb") as handle:
        return handle.read(200).decode("utf-8", "backslashreplace") or "(empty file)"
