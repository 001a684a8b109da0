"""The pages' errors are HTML pages: domain errors and HTTP errors by their status, and an
unhandled error as a 500 page. The TAXII API's error bodies are not used under /ui/."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ExchangeError, Forbidden, Invalid, NotFound, Throttled, Unauthenticated
from . import render

log = logging.getLogger(__name__)

_STATUS = ((Throttled, 429), (Unauthenticated, 401), (Forbidden, 403), (NotFound, 404),
           (Invalid, 400))


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def status(exc: ExchangeError) -> int:
    return next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)


async def domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ExchangeError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
    return render.error(status(exc), exc.description or exc.title, base=_base(request),
                        headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    description = {404: "There is no page at this address.",
                   405: "This page does not take that method."}.get(exc.status_code,
                                                                   str(exc.detail))
    return render.error(exc.status_code, description, base=_base(request))


class Failure:
    """An unhandled error under /ui/ answers an HTML 500 page and is logged once, here: the
    server's own middleware (a TAXII 500) never sees it, and the connection stays open."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if started:
                raise
            log.exception("unhandled error on %s %s",
                                                  scope["method"], scope["path"])
            base = str(scope.get("root_path", "")).rstrip("/")
            await render.error(500, "The server failed; try again.", base=base)(
                scope, receive, send)
