"""Hostile-input-safe CSV reading: one physical line is one row, each kept raw.

Lines are read as bytes so one badly encoded, NUL-bearing or oversized line becomes a row
reject and never stops the file. A UTF-8 byte-order mark on the header is dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from .base import Reject

MAX_LINE = 64 * 1024  # bytes
MAX_FIELD = 4096  # characters


@dataclass(frozen=True, slots=True)
class Row:
    source: str
    number: int  # 1-based line number in the file (the header is line 1)
    raw: str
    values: dict[str, str]  # header name -> value, for the columns this row has
    missing: tuple[str, ...]  # header columns this row lacks


def _decode(line: bytes) -> str:
    return line.decode("utf-8", "backslashreplace")


def read_rows(path: Path, *, delimiter: str = ",", comment: bytes | None = None,
              header_comment: Collection[str] = (), skip_initial_space: bool = False,
              ) -> Iterator[tuple[list[str], int] | Row | Reject]:
    """First the header (as a tuple with its line number), then each data row as a Row or a
    Reject.

    Lines starting with `comment` (e.g. b"#") are skipped, before and after the header,
    except that a comment line before the data naming every column in `header_comment` is the
    header (abuse.ch exports comment out their header). `skip_initial_space` drops spaces
    after each delimiter (`"a", "b"`).
    """
    source = str(path)
    header: list[str] | None = None
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            text_line = line.rstrip(b"\r\n")
            if not text_line.strip():
                continue
            if comment and text_line.lstrip().startswith(comment):
                if header is not None or not header_comment:
                    continue
                text_line = text_line.lstrip()[len(comment):].strip()
                reason, fields = _split(text_line, delimiter, skip_initial_space)
                named = {name.strip().lower() for name in fields or ()}
                if reason is not None or not named >= {n.lower() for n in header_comment}:
                    continue
            else:
                reason, fields = _split(text_line, delimiter, skip_initial_space)
            raw = _decode(text_line)
            if header is None:
                if reason is not None or fields is None:
                    yield Reject(source, number, f"unreadable header: {reason}", raw)
                    return
                header = [name.strip().lower() for name in fields]
                yield header, number
                continue
            if reason is not None or fields is None:
                yield Reject(source, number, reason or "unreadable row", raw)
                continue
            if len(fields) > len(header):
                yield Reject(source, number,
                             f"{len(fields)} fields, the header has {len(header)}", raw)
                continue
            values = dict(zip(header, fields, strict=False))
            yield Row(source, number, raw, values, tuple(header[len(fields):]))
    if header is None:
        yield Reject(source, 0, "empty file: no header", "")


def _split(line: bytes, delimiter: str, skip_initial_space: bool = False,
           ) -> tuple[str | None, list[str] | None]:
    if len(line) > MAX_LINE:
        return f"line longer than {MAX_LINE} bytes", None
    if b"\x00" in line:
        return "NUL byte in line", None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 ({exc.reason} at byte {exc.start})", None
    try:
        fields = next(csv.reader([text], delimiter=delimiter, strict=True,
                                 skipinitialspace=skip_initial_space))
    except (csv.Error, StopIteration) as exc:
        return f"not a CSV row: {exc}", None
    for value in fields:
        if len(value) > MAX_FIELD:
            return f"field longer than {MAX_FIELD} characters", None
    return None, fields
