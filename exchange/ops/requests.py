"""Each request measured once: its route, status and duration into the metrics, and, with
`log_format: json`, one JSON line in the request log.

`Observer` sits outside the app's own answers (bounds, last resort), so every request is
seen, whoever answers it. The route's template is noted by `NoteRoute`, innermost, where the
router has put it in the scope (a middleware between them may have copied the scope).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import UTC, datetime

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..taxii.client import VIA_PROXY
from .facts import FACTS, RequestFacts
from .metrics import Metrics

REQUESTS = logging.getLogger("exchange.requests")
UNMATCHED = "(unmatched)"  # the endpoint label of a request no route took
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A request id a trusted proxy set (nginx's $request_id), kept so both logs name one request.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Observer:
    def __init__(self, app: ASGIApp, metrics: Metrics, *, log_json: bool = False) -> None:
        self.app, self.metrics, self.log_json = app, metrics, log_json

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        facts = scope[FACTS] = RequestFacts()
        path, root = scope["path"], scope.get("root_path", "")
        logging_on = self.log_json and REQUESTS.isEnabledFor(logging.INFO)
        request_id = _request_id(scope) if logging_on else None
        status = 500  # an answer that never started: the connection is dropped

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if request_id is not None:
                    message["headers"] = [*message.get("headers", ()),
                                          (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            route = facts.route or UNMATCHED
            if route != UNMATCHED and root and route.startswith(root):
                route = route[len(root):]
            self.metrics.request(method, route, status, seconds)
            if request_id is not None:
                client = scope.get("client")
                fields = {"time": datetime.now(UTC).isoformat(timespec="milliseconds")
                          .replace("+00:00", "Z"), "method": scope["method"], "path": path,
                          "route": route, "status": status,
                          "duration_ms": round(seconds * 1000, 3),
                          "remote": client[0] if client else None,
                          "request_id": request_id}
                if facts.partner is not None:
                    fields["partner"] = facts.partner
                REQUESTS.info("%s %s %s", scope["method"], path, status,
                              extra={"fields": fields})


def _request_id(scope: Scope) -> str:
    if scope.get(VIA_PROXY):
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                if REQUEST_ID.match(given):
                    return given
    return uuid.uuid4().hex


class NoteRoute:
    """Innermost: after the app answered, the route template the router matched (a mounted
    app's routes with their mount path in front) goes into the request's facts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            facts = scope.get(FACTS)
            route = scope.get("route")
            if facts is not None and route is not None:
                facts.route = template(route, scope.get("root_path", ""))


def template(route: object, root_path: str) -> str | None:
    """A route's path template under its mounts. A mount that routes no further (static
    files) has its path in `root_path` already: the rest is one `{path}`."""
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    if isinstance(route, Mount):
        return f"{root_path.removesuffix(path)}{path}/{{path}}"
    return root_path + path
