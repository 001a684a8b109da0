"""The HTTP/1.1 connection: uvicorn's httptools protocol with a bound on the request head and a
request timeout, answering what it refuses with TAXII error bodies.

Why not uvicorn as it is: with httptools (uvicorn's choice whenever it is installed, as
`uvicorn[standard]` installs it) nothing bounds the headers: httptools gathers a header by
appending chunks until it ends, so one endless header grows the process without limit and costs
quadratic time. Its URL parser keeps offsets in 16 bits, so a request target of 64 KiB or more
fails with uvicorn's `text/plain` "Invalid HTTP request received.". And a connection that sends
nothing, or a head a byte at a time, is held open for ever. (`h11_max_incomplete_event_size`
bounds the head only for the slower h11 protocol, about 0.1 ms more per request here.)

The bound is on the bytes received while a head is incomplete, counted per read from the socket,
so it holds to within one read (at most 256 KiB).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .config import DEFAULTS, Settings
from .taxii import responses

URL_CEILING = 65535  # httptools.parse_url keeps offsets in 16 bits


class _Refused(Exception):
    """Raised from a parser callback: httptools stops parsing and uvicorn answers 400."""


def _settings(app: Any) -> Settings | None:
    """The app's settings, under the middleware uvicorn wraps around it (proxy headers...)."""
    for _ in range(8):
        services = getattr(getattr(app, "state", None), "services", None)
        if services is not None:
            settings: Settings = services.settings
            return settings
        app = getattr(app, "app", None)
    return None


def _answer(status_code: int, title: str, description: str) -> bytes:
    response = responses.error(status_code, title, description)
    head = [f"HTTP/1.1 {status_code} {title}",
            f"content-type: {response.media_type}",
            f"content-length: {len(response.body)}",
            "connection: close", "", ""]
    return "\r\n".join(head).encode("ascii") + bytes(response.body)


class BoundedHttpTools(HttpToolsProtocol):
    """One connection. A head over `max_request_head_bytes` is answered 431 (414 while it is
    still the request line); a request whose head and body take longer than
    `request_timeout_seconds` to arrive is answered 408; idle keep-alive is uvicorn's."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = _settings(self.app)
        self.head_limit: int = settings.max_request_head_bytes if settings \
            else DEFAULTS["max_request_head_bytes"]
        self.request_timeout: float = settings.request_timeout_seconds if settings \
            else DEFAULTS["request_timeout_seconds"]
        self.url_limit = min(self.head_limit, URL_CEILING)
        self.reading_head = True  # until a message's headers are complete
        self.head_bytes = 0
        self.refusal: bytes | None = None
        self.request_timer: asyncio.TimerHandle | None = None

    # The request timer runs from a connection's start, or a request's first byte, until the
    # request has fully arrived; between requests uvicorn's keep-alive timer runs instead.
    def _arm(self) -> None:
        if self.request_timer is None:
            self.request_timer = self.loop.call_later(self.request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self.request_timer is not None:
            self.request_timer.cancel()
            self.request_timer = None

    def _timed_out(self) -> None:
        self.request_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self.reading_head or cycle is None or not cycle.response_started:
            self.transport.write(_answer(
                408, "Request Timeout", f"the request did not arrive within "
                f"{self.request_timeout:g} seconds (request_timeout_seconds)"))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refusal is not None:
            return  # the answer is out and the connection closing: read nothing more
        if self.reading_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.refusal is None and self.reading_head and self.head_bytes > self.head_limit:
            self._refuse(self._oversized())
            self.transport.write(self.refusal or b"")
            self.transport.close()

    def _oversized(self) -> bytes:
        if not self.headers:  # no header has ended yet: the request line is what is long
            return self._url_too_long()
        return _answer(431, "Request Header Fields Too Large", "the request's headers exceed "
                       f"the server's bound of {self.head_limit} bytes (max_request_head_bytes)")

    def _refuse(self, answer: bytes) -> None:
        self.refusal = answer
        self._disarm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.url_limit:
            self._refuse(self._url_too_long())
            raise _Refused

    def _url_too_long(self) -> bytes:
        return _answer(414, "URI Too Long", "the request line exceeds the server's bound of "
                       f"{self.url_limit} bytes (max_request_head_bytes)")

    def on_headers_complete(self) -> None:
        self.reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self.reading_head, self.head_bytes = True, 0
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """What the parser refuses is answered as TAXII, not uvicorn's text/plain."""
        answer = self.refusal or _answer(400, "Bad Request", "the request is not valid "
                                         "HTTP/1.1")
        self._refuse(answer)
        self.transport.write(answer)
        self.transport.close()
