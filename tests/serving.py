"""A real server on loopback for the credential tests: uvicorn started with the options `serve`
uses (exchange.server.uvicorn_options), so TLS and proxy handling are the ones in production."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from exchange.app import create_app
from exchange.server import uvicorn_options
from exchange.store import Store
from exchange.store.sqlite import SQLiteStore
from tests.conftest import Env, LiveServer, free_port


def start(env: Env, store: Store | None = None, **overrides: Any) -> LiveServer:
    """Serve create_app over `env` on a free loopback port, as `serve` would."""
    settings = env.settings
    app = create_app(settings, store or SQLiteStore(settings.store_path))
    options = {**uvicorn_options(settings), "host": "127.0.0.1", "port": free_port(),
               "log_level": "warning", "access_log": False, **overrides}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    scheme = "https" if "ssl_certfile" in options else "http"
    return LiveServer(f"{scheme}://127.0.0.1:{options['port']}/", env, server, thread)


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait for a change a running server applies by itself (the partners file is re-read
    within a second); fail if it never comes."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the change was not applied in time")
        time.sleep(0.05)
