"""Who is on the other end of a request: its address and the credentials it sent, taken in
one place.

The address is the connection's peer, or, when that peer is a configured trusted proxy, the
client the proxy names in `X-Forwarded-For` (the right-most address that is not itself a
trusted proxy: proxies append, so anything to its left was written by the client). From any
other peer the header is ignored. uvicorn's own proxy handling is off (see server.py): this
keeps the peer, which the client certificate header needs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..policy.auth import Authenticator
from ..policy.partners import Partner

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
VIA_PROXY = "exchange.via_proxy"  # scope key: the connection came from a trusted proxy


def _trusted(host: str, trusted: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in trusted)


class ClientAddress:
    """ASGI middleware: scope["client"] becomes the real client's address."""

    def __init__(self, app: ASGIApp, trusted: Sequence[Network] = ()) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.trusted:
            peer = scope.get("client")
            if peer and _trusted(peer[0], self.trusted):
                scope[VIA_PROXY] = True
                forwarded = [part.strip() for name, value in scope["headers"]
                             if name == b"x-forwarded-for"
                             for part in value.decode("latin-1").split(",")]
                for hop in reversed(forwarded):
                    if hop and not _trusted(hop, self.trusted):
                        scope["client"] = (hop, 0)  # in place: the access log shows it too
                        break
        await self.app(scope, receive, send)


def address(request: Request) -> str:
    return request.client.host if request.client else ""


def authenticate(request: Request, auth: Authenticator) -> Partner:
    """The partner a request's credentials name (see policy/auth.py for what is accepted)."""
    headers = request.headers
    return auth.authenticate(headers.get("authorization"), api_key=headers.get("x-api-key"),
                             address=address(request))
