"""Serving: uvicorn over create_app, in one process or several forked ones (each builds its
own app after the fork: prefork.py)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import tempfile
from typing import Any

from .config import Settings
from .errors import ConfigError

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"  # as ops/metrics.py reads it


def _forked(settings: Settings, workers: int, common: dict[str, Any]) -> int:
    """`workers` processes forked over one socket (prefork.py); their exit status."""
    import uvicorn

    from . import prefork
    from .app import create_app
    from .store.factory import open_store

    sock = uvicorn.Config(app="", **common).bind_socket()  # the socket only: no app here

    def serve_one(listening: socket.socket) -> bool:
        server = uvicorn.Server(uvicorn.Config(create_app(settings, open_store(settings)),
                                               **common))
        server.run(sockets=[listening])
        return server.started

    try:
        return prefork.run(workers, sock, serve_one)
    finally:
        sock.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn is started for these settings (tests start it the same way).

    uvicorn's own proxy handling is off: it would believe X-Forwarded-For from 127.0.0.1 by
    default and drop the connection's peer. The app decides from `trusted_proxies` instead
    (taxii/client.py)."""
    from .wire import BoundedHttpTools

    # The parser's bound and the request timeout reach each worker through its app's settings
    # (see wire.py); idle keep-alive is uvicorn's own.
    options: dict[str, Any] = {"host": settings.host, "port": settings.port,
                               "proxy_headers": False, "http": BoundedHttpTools,
                               "timeout_keep_alive": settings.keep_alive_seconds}
    if settings.tls_certificate:
        from .tls import TLSClientCertProtocol

        options.update(ssl_certfile=str(settings.tls_certificate),
                       ssl_keyfile=str(settings.tls_key) if settings.tls_key else None)
        if settings.tls_client_ca:
            required = settings.tls_client_certificate == "required"
            options.update(ssl_ca_certs=str(settings.tls_client_ca),
                           ssl_cert_reqs=ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL,
                           http=TLSClientCertProtocol)
    return options


def serve(settings: Settings, *, workers: int = 1, access_log: bool = True,
          sock: socket.socket | None = None) -> None:
    """Serve until stopped. `sock`: a socket already listening (the demo takes its port
    before loading data, so the URLs it prints are the ones served); one process only."""
    if not settings.partners_file.exists():
        raise ConfigError(f"no partners file at {settings.partners_file}: add a partner with "
                          "`taxii-exchange partners add` (there are no default credentials)")
    # Set before prometheus-client is first imported (it decides its mode then): with several
    # processes each writes its metrics into a fresh folder that any of them reads on a
    # scrape (ops/metrics.py); left over from an earlier run, its counts would be added in.
    metrics_dir = None
    os.environ.pop(MULTIPROCESS, None)
    if workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="taxii-exchange-metrics-")
        os.environ[MULTIPROCESS] = metrics_dir
    import uvicorn

    from .app import create_app
    from .ops.logs import uvicorn_log_config
    from .store.factory import open_store

    common = {**uvicorn_options(settings), "access_log": access_log}
    log_config = uvicorn_log_config(settings.log_format, requests=access_log)
    if log_config is not None:  # JSON request lines come from the app (ops/requests.py)
        common.update(log_config=log_config, access_log=False)
    try:
        if workers > 1:
            code = _forked(settings, workers, common)
            if code:
                raise SystemExit(code)
        elif sock is not None:
            config = uvicorn.Config(create_app(settings, open_store(settings)), **common)
            uvicorn.Server(config).run(sockets=[sock])
        else:
            uvicorn.run(create_app(settings, open_store(settings)), **common)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
