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
import logging
from collections.abc import Sequence
from urllib.parse import unquote

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..ops.facts import note_partner
from ..policy.auth import Authenticator
from ..policy.partners import Partner

log = logging.getLogger(__name__)

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


def certificate(request: Request, header: str = "") -> str | None:
    """The client certificate (PEM) the server verified in the TLS handshake (the ASGI TLS
    extension, see exchange/tls.py), or that a trusted proxy verified and passed in `header`
    (URL-encoded PEM, as nginx's $ssl_client_escaped_cert)."""
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain")
    if chain:
        return str(chain[0])
    value = request.headers.get(header) if header else None
    if not value:
        return None
    if request.scope.get(VIA_PROXY):
        return unquote(value)
    # Anyone can send the header: only a proxy that sets it after verifying is believed.
    peer = request.client.host if request.client else "?"
    log.warning("ignored the %s header from %s: not a trusted proxy", header, peer)
    return None


def authenticate(request: Request, auth: Authenticator, cert_header: str = "") -> Partner:
    """The partner a request's credentials name (see policy/auth.py for what is accepted)."""
    headers = request.headers
    partner = auth.authenticate(headers.get("authorization"), api_key=headers.get("x-api-key"),
                                certificate=certificate(request, cert_header),
                                address=address(request))
    note_partner(request.scope, partner.id)  # for the request log
    return partner
