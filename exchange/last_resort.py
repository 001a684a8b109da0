"""The answer to an unhandled error, as ASGI middleware each face wraps itself in with its own
answer (the TAXII API's error body, the pages' HTML page)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class LastResort:
    """An unhandled error answers `answer(scope)`, is logged once, and the connection stays
    open.

    Starlette's own 500 handler re-raises after answering, so uvicorn logs the error again and
    drops the keep-alive connection: the client's next request on it fails as well.
    """

    def __init__(self, app: ASGIApp, answer: Callable[[Scope], Response]) -> None:
        self.app = app
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except ClientDisconnect:
            return  # the client left (or its request timed out): nobody to answer
        except Exception:
            if started:  # half an answer is out: only dropping the connection can tell
                raise
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await self.answer(scope)(scope, receive, send)
