"""The client certificate of a TLS connection, in the ASGI scope.

uvicorn terminates TLS but does not pass the peer certificate to the application. This
protocol (uvicorn's httptools one, with wire.py's bounds) reads it once per
connection, right after the handshake, from the transport's `ssl_object`, and adds it to every
request's scope in the form of the ASGI TLS extension (`scope["extensions"]["tls"]
["client_cert_chain"]`, PEM, the client's certificate first). The application reads only that
extension, so a server that fills it in itself needs nothing from here.

Python's ssl module verified the certificate against the client CA during the handshake (with
CERT_OPTIONAL a certificate that fails is refused as with CERT_REQUIRED), so whatever is here
is verified.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from .wire import BoundedHttpTools


class TLSClientCertProtocol(BoundedHttpTools):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return
        tls: dict[str, Any] = {"client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)],
                               "client_cert_name": None, "client_cert_error": None,
                               "server_cert": None, "tls_version": None, "cipher_suite": None}
        app = self.app

        async def with_certificate(scope: Any, receive: Any, send: Any) -> None:
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": tls}
            await app(scope, receive, send)

        self.app = with_certificate
