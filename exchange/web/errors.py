"""The pages' errors are HTML pages: domain errors and HTTP errors by their status, and an
unhandled error as a 500 page. The TAXII API's error bodies are not used under /ui/."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from ..errors import (
    ExchangeError,
    Forbidden,
    Invalid,
    NotFound,
    Throttled,
    TooLarge,
    Unauthenticated,
)
from . import render

log = logging.getLogger(__name__)

_STATUS = ((Throttled, 429), (Unauthenticated, 401), (Forbidden, 403), (NotFound, 404),
           (Invalid, 400), (TooLarge, 413))


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


def failure(scope: Scope) -> Response:
    """The page an unhandled error under /ui/ answers (see last_resort.py)."""
    base = str(scope.get("root_path", "")).rstrip("/")
    return render.error(500, "The server failed; try again.", base=base)
