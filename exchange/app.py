"""create_app(settings, store): the one wiring point. Nothing is built at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .collections import load_collections
from .config import Settings
from .errors import ExchangeError
from .ingest import Ingest, Worker
from .policy.auth import Authenticator
from .store import Store
from .taxii import responses, views
from .taxii.context import Context

log = logging.getLogger(__name__)


def create_app(settings: Settings, store: Store) -> FastAPI:
    collections = load_collections(settings)
    ingest = Ingest(store)
    context = Context(settings=settings, store=store, collections=collections,
                      auth=Authenticator(settings.partners_file), ingest=ingest,
                      worker=Worker(ingest))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.open()  # in the serving process, after any fork
        context.worker.start()  # also resumes requests a crash left pending
        try:
            yield
        finally:
            context.worker.stop()
            store.close()

    app = FastAPI(title=settings.title, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, redirect_slashes=False)
    app.state.context = context
    views.install(app)

    @app.exception_handler(ExchangeError)
    async def domain_error(request: Request, exc: ExchangeError) -> Response:
        return responses.domain_error(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        titles = {404: "Not found", 405: "Method not allowed"}
        return responses.error(exc.status_code, titles.get(exc.status_code, "Error"),
                               str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return responses.error(400, "Bad request", "the request does not fit this endpoint")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return responses.error(500, "Internal server error",
                               "the server failed; the request can be retried")

    app.add_middleware(TrailingSlash)
    return app


class TrailingSlash:
    """TAXII URLs end in '/'; take them without it too, rather than redirect a client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].endswith("/"):
            scope = dict(scope, path=scope["path"] + "/")
        await self.app(scope, receive, send)

