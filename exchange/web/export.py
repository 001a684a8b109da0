"""Exports of what a browse or search page shows: a STIX 2.1 bundle (JSON) or CSV, of every
matching object, not only the page on screen.

The export reads exactly as the page does (same form, same `Gate.read`, newest first) one
keyset page at a time and streams each as it comes, so a large export holds one page in
memory, never the whole result. It is audited like a page read (face "ui"), with what was
handed over recorded as a count, a digest and the date_added range once the stream ends.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..audit import LISTED
from ..errors import ExchangeError
from ..model import Entry, Filters
from ..policy.gate import Gate, Target
from ..policy.partners import Partner
from ..stix import format_micros
from . import filters, objects, render
from .errors import status
from .pages import _address, _pages, _to_sign_in, _visitor

EXPORT_PAGE = 1000  # objects read per keyset page while streaming
CSV_COLUMNS = ("id", "type", "label", "tlp", "created_by_ref", "date_added", "valid_from",
               "valid_until")


class _Handed:
    """What an export handed over, as an audit record names a large page: count, digest of
    "id version" lines and date_added range (the versions themselves when few)."""

    def __init__(self) -> None:
        self.count, self.digest = 0, hashlib.sha256()
        self.versions: list[list[str]] = []
        self.first = self.last = 0

    def add(self, entries: list[Entry]) -> None:
        for e in entries:
            self.digest.update(f"{chr(10) if self.count else ''}{e.id} {e.version}".encode())
            if self.count < LISTED + 1:
                self.versions.append([e.id, e.version])
            self.first = self.first or e.date_added
            self.last = e.date_added
            self.count += 1

    def record(self) -> dict[str, Any]:
        if self.count <= LISTED:
            return {"count": self.count, "versions": self.versions}
        return {"count": self.count, "sha256": self.digest.hexdigest(),
                "added": [format_micros(self.first), format_micros(self.last)]}


async def _pages_of(gate: Gate, partner: Partner, target: Target, wanted: Filters,
                    handed: _Handed) -> AsyncIterator[list[Entry]]:
    """Every matching entry, one keyset page at a time, newest first."""
    query = dataclasses.replace(wanted, limit=min(EXPORT_PAGE, target.root.max_page_size))
    while True:
        page = await run_in_threadpool(gate.read, partner, target, query, with_body=True)
        handed.add(page.entries)
        yield page.entries
        if not page.more or page.last_added is None:
            return
        query = dataclasses.replace(query, before=page.last_added)


def _bundle(entries: list[Entry], started: bool) -> bytes:
    """Stored bytes joined into the bundle's `objects` list, as served, never re-serialized."""
    joined = b",".join(e.body for e in entries)
    return (b"," if started and joined else b"") + joined


def _csv(entries: list[Entry], default_rank: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for entry in entries:
        obj = objects.parse(entry)
        row = objects.summary(entry, default_rank)
        writer.writerow([row.id, row.type, row.label, f"TLP:{row.tlp.upper()}",
                         _text(obj.get("created_by_ref")), row.date_added,
                         _text(obj.get("valid_from")), _text(obj.get("valid_until"))])
    return out.getvalue().encode()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


async def export(request: Request) -> Response:
    visitor = _visitor(request)
    if visitor is None:
        return _to_sign_in(request)
    # The server takes every path with a trailing slash (app.TrailingSlash).
    kind = "json" if request.url.path.rstrip("/").endswith(".json") else "csv"
    root, key = request.path_params["root"], request.path_params["collection"]
    pages = _pages(request)
    scope = request.scope
    record = {"endpoint": f"GET {scope['path']}", "address": _address(request) or None,
              "query": scope["query_string"][:2000].decode("latin-1") or None, "face": "ui",
              "export": kind}
    try:
        target = pages.gate.target(visitor.partner, root, key, read=True)
        form = filters.read(request.query_params, target.access.max_rank,
                            target.root.max_page_size)
    except ExchangeError as exc:  # refused before anything was sent: a read record, a page
        pages.trail.later("read", visitor.partner.id, result=status(exc), error=exc.title,
                          **record)
        raise
    handed = _Handed()

    async def stream() -> AsyncIterator[bytes]:
        result = 500  # unless the stream ends as it should
        try:
            if kind == "json":
                yield b'{"type":"bundle","id":"bundle--' + str(uuid.uuid4()).encode() + \
                    b'","objects":['
            else:
                yield ",".join(CSV_COLUMNS).encode() + b"\r\n"
            async for entries in _pages_of(pages.gate, visitor.partner, target, form.filters,
                                           handed):
                if kind == "json":
                    yield _bundle(entries, handed.count > len(entries))
                else:
                    yield _csv(entries, target.collection.default_rank)
            if kind == "json":
                yield b"]}"
            result = 200
        finally:  # also when the client leaves halfway: what went is recorded
            pages.trail.later("read", visitor.partner.id, result=result,
                              collection=target.collection.id, objects=handed.record(),
                              **record)

    name = f"{target.collection.alias or target.collection.id}.{kind}"
    media = "application/json" if kind == "json" else "text/csv; charset=utf-8"
    return StreamingResponse(stream(), media_type=media, headers={
        **render.HEADERS, "Content-Disposition": f"attachment; filename=\"{quote(name)}\""})
