"""JSON input documents, read whole with a size cap (bundles, feed exports, MISP events), and
the check that keeps one bad record from costing its neighbours.

orjson refuses a whole document for one string it cannot hold (a lone UTF-16 surrogate escape
such as "\\ud800", bytes that are not UTF-8): one bad comment would lose a MISP event's forty
good attributes. Such a document is read again with Python's parser, which keeps those strings
(invalid bytes as U+DC80-U+DCFF, as `surrogateescape` reads them); `Document.check` then finds
them, and strings over `MAX_FIELD`, in the one record that holds them, which is rejected alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .values import BadValue

MAX_FILE = 256 * 1024 * 1024  # bytes: larger documents are refused, not read
# Characters of any one string of a record: the default max_string_bytes of a TAXII push.
MAX_FIELD = 1024 * 1024
_INT64 = 2**63  # orjson's integer range: beyond it, it reads a float, and so does the fallback


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed document; `clean` when orjson read it (every string is valid Unicode)."""

    value: Any
    clean: bool = True
    invalid_utf8: bool = False  # the file has bytes that are not UTF-8

    def check(self, record: Any) -> tuple[str, str | None]:
        """(the record as JSON text, for a Record or Reject; why it must be rejected, or None).

        The text is ASCII-safe whatever the record holds: a lone surrogate is written as its
        escape, so the rejects file stays valid UTF-8."""
        try:
            raw = orjson.dumps(record).decode()
        except orjson.JSONEncodeError:  # a string orjson cannot write: find which one
            text = json.dumps(record, ensure_ascii=False)
            return (text.encode("utf-8", "backslashreplace").decode("utf-8"),
                    _flaw(record, self.invalid_utf8) or "a value cannot be written as JSON")
        if len(raw) <= MAX_FIELD:  # no string in it can be longer
            return raw, None
        return raw, _flaw(record, self.invalid_utf8)


def load_json(path: Path) -> Document:
    """The document in `path` (a UTF-8 byte-order mark allowed); BadValue saying why not."""
    try:
        if path.stat().st_size > MAX_FILE:
            raise BadValue(f"file larger than {MAX_FILE} bytes")
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadValue("file missing") from None
    except OSError as exc:
        raise BadValue(f"cannot read file: {exc.strerror or exc}") from None
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return Document(orjson.loads(data))
    except orjson.JSONDecodeError as exc:
        refused = exc
    try:
        data.decode("utf-8")
        invalid_utf8 = False
    except UnicodeDecodeError:
        invalid_utf8 = True
    try:
        value = json.loads(data.decode("utf-8", "surrogateescape"),
                           parse_constant=_no_constant, parse_int=_int64)
    except (ValueError, RecursionError):  # not JSON for a reason besides its strings
        raise BadValue(f"not valid JSON: {refused}") from None
    return Document(value, clean=False, invalid_utf8=invalid_utf8)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _int64(text: str) -> int | float:
    if len(text) > 20:  # never convert thousands of digits (Python refuses, slowly)
        return float(text)
    number = int(text)
    return number if -_INT64 <= number < 2 * _INT64 else float(number)


def _flaw(record: Any, invalid_utf8: bool) -> str | None:
    """Why a record cannot be kept: the first string (key or value) that is not valid Unicode
    or is longer than MAX_FIELD, named by its place in the record."""
    stack: list[tuple[str, Any]] = [("", record)]
    while stack:
        place, value = stack.pop()
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                inner = f"{place}.{key}" if place else str(key)
                found = _text_flaw(key, invalid_utf8)
                if found:
                    return f"field name {_printable(inner)} {found}"
                stack.append((inner, item))
        elif isinstance(value, list):
            stack.extend((f"{place}[{i}]", item) for i, item in reversed(list(enumerate(value))))
        elif isinstance(value, str):
            found = _text_flaw(value, invalid_utf8)
            if found:
                where = _printable(place) if place else "the record"
                return f"field {where} {found}"
    return None


def _text_flaw(text: str, invalid_utf8: bool) -> str | None:
    if len(text) > MAX_FIELD:
        return f"is longer than {MAX_FIELD} characters"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        if invalid_utf8 and 0xDC80 <= code <= 0xDCFF:
            return f"holds a byte that is not UTF-8 (0x{code - 0xDC00:02X})"
        return f"holds a lone UTF-16 surrogate (\\u{code:04x})"
    return None


def _printable(place: str) -> str:
    """A field's place for a reason: its bad characters escaped, at most 80 of them."""
    return repr(place.encode("utf-8", "backslashreplace").decode("utf-8")[:80])


def excerpt(path: Path) -> str:
    """The start of a file, for the raw column of a whole-file reject."""
    with path.open("rb") as handle:
        return handle.read(200).decode("utf-8", "backslashreplace") or "(empty file)"
