"""create_app(settings, store): the one wiring point. Nothing is built at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import audit
from .audit import Trail
from .collections_watch import WatchedCollections
from .config import Settings
from .errors import ExchangeError
from .federation.peers import load_peers
from .federation.sync import Federation, Syncer
from .ingest import Ingest, Worker, Writer
from .last_resort import LastResort
from .ops import routes as ops_routes
from .ops.metrics import Metrics
from .ops.requests import NoteRoute, Observer
from .policy.auth import Authenticator
from .policy.gate import Gate
from .policy.throttle import Throttle, log_throttled
from .policy.usage import TokenUsage
from .retention import Purger
from .store import Store
from .taxii import extensions, openapi, responses, views
from .taxii.client import ClientAddress
from .taxii.context import Services
from .taxii.ratelimit import RateLimiter
from .web import pages

log = logging.getLogger(__name__)


def create_app(settings: Settings, store: Store) -> FastAPI:
    metrics = Metrics(store.ping)
    collections = WatchedCollections(settings)  # a changed file is seen within a second
    gate = Gate(settings, collections, store)
    usage = TokenUsage(store)  # when each API token was last used, off the request path
    throttle = Throttle(per_address=settings.login_failures_per_address,
                        per_partner_and_address=settings.login_failures_per_partner_and_address,
                        window_seconds=settings.login_failure_window_seconds,
                        on_failed=metrics.failed_login)
    auth = Authenticator(settings.partners_file, on_token=usage.seen, throttle=throttle)

    def writer(partner_id: str, collection_id: str) -> Writer | None:
        partner, collection = auth.partner(partner_id), collections.get(collection_id)
        return gate.writer(partner, collection) if partner and collection else None

    ingest = Ingest(store, writer, on_stored=metrics.objects_ingested)
    trail = Trail(store)

    def on_throttled(address: str, partner_id: str | None) -> None:
        log_throttled(address, partner_id)
        trail.later("throttled", partner_id or "", address=address)

    throttle.on_throttled = on_throttled
    services = Services(settings=settings, gate=gate, auth=auth, ingest=ingest,
                        worker=Worker(ingest), trail=trail,
                        limiter=RateLimiter(settings.rate_limit_per_second,
                                            settings.rate_limit_burst),
                        metrics=metrics)
    purger = Purger(store, collections, settings.purge_interval_seconds)
    federation = Federation(store, gate, ingest, collections, auth.partner,
                            load_peers(settings.peers_file))
    syncer = Syncer(federation)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.open()  # in the serving process, after any fork
        # Changes to the definitions while no server ran (file edits) are recorded now.
        audit.reconcile(store, "collection", {c.id: c for c in collections}, "serve")
        audit.reconcile(store, "partner", auth.partners(), "serve")
        auth.on_load = lambda found: audit.reconcile(store, "partner", found, "serve")
        collections.on_load = lambda found: audit.reconcile(
            store, "collection", {c.id: c for c in found}, "serve")
        trail.start()
        services.worker.start()  # also resumes requests a crash left pending
        syncer.start()  # peers at their intervals, when there are any
        purger.start()  # what is past retention, when a collection has one
        usage.start()
        try:
            yield
        finally:
            usage.stop()
            purger.stop()
            syncer.stop()
            services.worker.stop()
            trail.stop()  # what waits is appended before the store closes
            store.close()

    app = FastAPI(title=settings.title, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, redirect_slashes=False)
    app.state.services = services
    # Probes and the scrape, outside the TAXII API's authentication; before /{root}/.
    ops_routes.install(app, store, metrics, settings.metrics_token)
    extensions.install(app)  # before the TAXII routes: /{root}/ would take /extensions/
    openapi.install(app)  # likewise /openapi.json/
    # The analyst pages, with HTML error pages of their own; before the TAXII routes, which
    # would take /ui/collections/ as an API root's collections.
    app.mount("/ui", pages.build(settings, gate, auth, trail, store, ingest=ingest,
                                 sync_status=federation.status))
    views.install(app)

    @app.exception_handler(ExchangeError)
    async def domain_error(request: Request, exc: ExchangeError) -> Response:
        return responses.domain_error(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        titles = {404: "Not found", 405: "Method not allowed"}
        headers = None
        if exc.status_code == 405:  # RFC 9110: name every method the URL takes
            headers = {"Allow": ", ".join(_allowed_methods(app, request.scope))}
        return responses.error(exc.status_code, titles.get(exc.status_code, "Error"),
                               str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return responses.error(400, "Bad request", "the request does not fit this endpoint")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # Only for errors outside LastResort below: Starlette re-raises after this answer.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _failure()

    app.add_middleware(NoteRoute)  # innermost: where the router leaves the matched route
    app.add_middleware(TrailingSlash)
    app.add_middleware(LastResort, answer=lambda scope: _failure())
    app.add_middleware(RequestBounds, max_url=settings.max_url_bytes,
                       max_headers=settings.max_header_bytes)
    # Every request measured (and, in JSON, logged), whoever answers it.
    app.add_middleware(Observer, metrics=metrics, log_json=settings.log_format == "json")
    app.add_middleware(ClientAddress, trusted=settings.trusted_proxies)  # outermost
    return app


def _failure() -> Response:
    return responses.error(500, "Internal server error",
                           "the server failed; the request can be retried")


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods of every route on this path (one route per method: see views.install)."""
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


class RequestBounds:
    """A request target over max_url_bytes is answered 414, headers over max_header_bytes 431,
    before any endpoint parses them (the HTTP parser's own, larger bound is in wire.py)."""

    def __init__(self, app: ASGIApp, max_url: int, max_headers: int) -> None:
        self.app, self.max_url, self.max_headers = app, max_url, max_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"")
            target = len(scope.get("raw_path") or scope["path"].encode()) + \
                (len(query) + 1 if query else 0)
            headers = sum(len(name) + len(value) for name, value in scope["headers"])
            if target > self.max_url:
                await responses.error(414, "URI too long", f"the request target is {target} "
                                      f"bytes; this server takes at most {self.max_url} "
                                      "(max_url_bytes)")(scope, receive, send)
                return
            if headers > self.max_headers:
                await responses.error(431, "Request header fields too large",
                                      f"the headers are {headers} bytes; this server takes at "
                                      f"most {self.max_headers} (max_header_bytes)")(
                                          scope, receive, send)
                return
        await self.app(scope, receive, send)


class TrailingSlash:
    """TAXII URLs end in '/'; take them without it too, rather than redirect a client.
    The pages' static files (/ui/static/...) are named without one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else "/"
        if not path.endswith("/") and not path.startswith("/ui/static/"):
            scope = dict(scope, path=scope["path"] + "/")
        await self.app(scope, receive, send)

