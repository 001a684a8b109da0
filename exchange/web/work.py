"""Work pages: upload a feed file into a collection, and, for administrators, the federation
status and the audit trail.

An upload goes through the one ingest path (`normalize.cli.feed`, what `taxii-exchange ingest`
runs) with the partner as the writer: its own identity as the source, the identities it relays
for, and the collection's rules, exactly as its TAXII pushes are checked.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from .. import audit
from ..errors import ConfigError, ExchangeError, Forbidden, Invalid, TooLarge
from ..ingest import Ingest
from ..markings import TLP
from ..normalize import PARSERS
from ..normalize.base import Context, Tally
from ..normalize.cli import feed, make_parser
from ..stix import to_micros
from . import pages
from .errors import status
from .session import same

MAX_REJECTS_SHOWN = 500
AUDIT_PAGE = 50
_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Work:
    """What the work pages need besides the gate: the one ingest path into the store, and
    the federation's status records."""

    ingest: Ingest
    sync_status: Callable[[], list[dict[str, Any]]]


def formats() -> list[tuple[str, str]]:
    """The formats an upload takes: every one `taxii-exchange formats` lists that reads a
    file (a MISP feed is a directory: load it with `ingest`)."""
    return [(p.name, p.description) for p in PARSERS.values() if not p.reads_directories]


def _work(request: Request) -> Work:
    work: Work = request.app.state.work
    return work


# -- upload ------------------------------------------------------------------------------------


class _Oversized(Exception):
    pass


async def _bounded_form(request: Request, limit: int) -> dict[str, Any]:
    """The multipart form, refused past `limit` bytes of body (counted as it arrives, so a
    client that states no length, or a false one, is held to it too)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _Oversized
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise Invalid("send the upload page's form")
    seen = 0

    async def receive() -> Message:
        nonlocal seen
        message = await request.receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _Oversized
        return message

    try:
        form = await Request(request.scope, receive).form(max_files=1, max_fields=20)
    except _Oversized:
        raise
    except Exception as exc:  # a malformed multipart body is the client's mistake
        if isinstance(exc, ExchangeError):
            raise
        raise Invalid("the upload form could not be read") from None
    return dict(form.items())


def _choices(request: Request, visitor: pages.Visitor) -> list[tuple[str, str, str]]:
    """(value, collection title, API root title) of every collection the partner may write."""
    gate = pages._pages(request).gate
    return [(f"{root.name}/{collection.id}", collection.title, root.title)
            for root in pages._pages(request).settings.api_roots
            for collection, access in gate.granted(visitor.partner, root.name) if access.write]


def _form_page(request: Request, visitor: pages.Visitor, error: str = "",
               status_code: int = 200, chosen: dict[str, str] | None = None) -> Response:
    limit = pages._pages(request).settings.ui_upload_max_bytes
    return pages._page(request, visitor, "upload.html", choices=_choices(request, visitor),
                       formats=formats(), tlps=list(TLP), error=error, chosen=chosen or {},
                       limit=limit, limit_text=_size(limit), status_code=status_code)


def _size(count: int) -> str:
    return f"{count / 1048576:g} MiB" if count >= 1048576 else f"{count / 1024:g} KiB"


def _options(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise Invalid(f"an option is NAME=VALUE, one a line, not {line.strip()!r}")
        found[name.strip()] = value.strip()
    return found


async def upload(request: Request) -> Response:
    visitor = pages._visitor(request)
    if visitor is None:
        return pages._to_sign_in(request)
    if request.method == "GET":
        return _form_page(request, visitor)
    settings = pages._pages(request).settings
    trail = pages._pages(request).trail
    facts: dict[str, Any] = {"face": "ui", "address": pages._address(request) or None}
    try:
        try:
            form = await _bounded_form(request, settings.ui_upload_max_bytes)
        except _Oversized:
            raise TooLarge(f"the file is larger than this server takes from the upload page "
                           f"({_size(settings.ui_upload_max_bytes)}, ui_upload_max_bytes): "
                           "load it with `taxii-exchange ingest`, or split it") from None
        try:
            text = {k: v for k, v in form.items() if isinstance(v, str)}
            if not same(visitor.csrf, text.get("csrf")):
                raise Forbidden("the form expired or did not come from this site: reload the "
                                "page")
            tally, rejects, name, target_id = await _upload(request, visitor, form, text,
                                                            facts)
        finally:
            for value in form.values():
                if isinstance(value, UploadFile):
                    await value.close()
    except ExchangeError as exc:
        trail.later("upload", visitor.partner.id, result=status(exc), error=exc.title, **facts)
        raise
    trail.later("upload", visitor.partner.id, result=200, read=tally.read,
                stored=tally.stored, rejected=tally.rejected, **facts)
    return pages._page(request, visitor, "uploaded.html", tally=tally, rejects=rejects,
                       shown=rejects[:MAX_REJECTS_SHOWN], name=name, collection=target_id,
                       format=text.get("format", ""),
                       browse=f"{pages._base(request)}/collections/{text['collection']}/")


async def _upload(request: Request, visitor: pages.Visitor, form: dict[str, Any],
                  text: dict[str, str], facts: dict[str, Any]
                  ) -> tuple[Tally, list[dict[str, Any]], str, str]:
    gate = pages._pages(request).gate
    root, _, key = text.get("collection", "").partition("/")
    if not key:
        raise Invalid("choose a collection")
    target = gate.target(visitor.partner, root, key, write=True)  # 404 or 403 for this partner
    facts["collection"] = target.collection.id
    format_name = text.get("format", "")
    facts["format"] = format_name
    if format_name not in dict(formats()):
        raise Invalid(f"choose one of the formats listed, not {format_name!r}")
    tlp = text.get("tlp", "")
    if tlp and tlp not in TLP:
        raise Invalid(f"TLP is one of {', '.join(TLP)}, not {tlp!r}")
    try:
        parser = make_parser(format_name, _options(text.get("options", "")))
        context = Context(visitor.partner.name, tlp or parser.default_tlp,
                          confidence=parser.default_confidence,
                          source_ref=visitor.partner.identity)
    except ConfigError as exc:
        raise Invalid(exc.description) from None
    upload_file = form.get("file")
    if not isinstance(upload_file, UploadFile) or not upload_file.filename:
        raise Invalid("choose a file to upload")
    name = _NAME_RE.sub("_", Path(upload_file.filename).name)[-100:].strip("._") or "upload"
    facts["file"] = name
    writer = gate.writer(visitor.partner, target.collection)
    rejects: list[dict[str, Any]] = []

    def reject(line: bytes) -> None:
        found = orjson.loads(line)
        found["source"] = Path(str(found.get("source", ""))).name
        rejects.append(found)

    def run() -> Tally:
        with tempfile.TemporaryDirectory(prefix="txe-upload-") as directory:
            path = Path(directory) / name
            with path.open("wb") as out:
                shutil.copyfileobj(upload_file.file, out)
            # In this process (never a forked reader: the server has threads) and with the
            # file's own name in the records, not the temporary path.
            return feed(_work(request).ingest, target.collection, parser, [path], context,
                        writer, reject, parallel=False, names=[name], face="ui")

    tally = await run_in_threadpool(run)
    return tally, rejects, name, target.collection.id


# -- administrators ------------------------------------------------------------------------------


def _admin(visitor: pages.Visitor) -> None:
    if not visitor.partner.admin:
        raise Forbidden("this page is for administrators (partners add --admin)")


def _when(moment: float | None) -> str:
    if not moment:
        return "never"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def federation(request: Request) -> Response:
    visitor = pages._visitor(request)
    if visitor is None:
        return pages._to_sign_in(request)
    with pages._audited(request, visitor, {}):
        _admin(visitor)
        records = await run_in_threadpool(_work(request).sync_status)
    rows = [{"peer": r["peer"], "direction": r["direction"],
             "last_success": _when(r.get("last_success")), "last": r.get("last", {}),
             "totals": r.get("totals", {}), "bookmark": r.get("bookmark"),
             "error_at": _when(r.get("last_error", {}).get("at")) if r.get("last_error")
             else "", "error": r.get("last_error", {}).get("error", "")}
            for r in records]
    return pages._page(request, visitor, "federation.html", rows=rows)


def _moment(name: str, raw: str) -> int | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid(f"{name} is a date or time such as 2026-12-01 or 2026-12-01T08:00, "
                      f"not {raw!r}") from None
    return to_micros(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


_SHOWN = ("at", "kind", "partner", "face", "collection", "result", "seq")


async def audit_page(request: Request) -> Response:
    visitor = pages._visitor(request)
    if visitor is None:
        return pages._to_sign_in(request)
    params = request.query_params
    chosen = {name: params.get(name, "").strip()[:200]
              for name in ("partner", "face", "kind", "collection", "since", "until")}
    before_text = params.get("before", "")
    with pages._audited(request, visitor, {}):
        _admin(visitor)
        if before_text and not (before_text.isascii() and before_text.isdigit()
                                and len(before_text) <= 18):
            raise Invalid("before is a record number")
        wanted = audit.Wanted(partner=chosen["partner"], face=chosen["face"],
                              kind=chosen["kind"], collection=chosen["collection"],
                              since=_moment("since", chosen["since"]),
                              until=_moment("until", chosen["until"]))
        store = _work(request).ingest.store
        records, more = await run_in_threadpool(audit.newest, store, wanted,
                                                int(before_text) if before_text else None,
                                                AUDIT_PAGE)
    rows = [{"seq": r["seq"], "at": r.get("at", ""), "kind": r.get("kind", ""),
             "partner": r.get("partner", ""), "face": r.get("face", "api"),
             "collection": r.get("collection", ""), "result": r.get("result", ""),
             "rest": orjson.dumps({k: v for k, v in r.items() if k not in _SHOWN}).decode()[:400]}
            for r in records]
    older = "?" + urlencode({**{k: v for k, v in chosen.items() if v}, "before": more}) \
        if more is not None else ""
    return pages._page(request, visitor, "audit.html", rows=rows, chosen=chosen, older=older)
