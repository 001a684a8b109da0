"""/healthz, /readyz and /metrics: for probes and scrapers, outside the TAXII API's
authentication and rate limit, answering plain JSON (and Prometheus text)."""

from __future__ import annotations

import hashlib
import hmac
import logging

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from ..errors import ExchangeError
from ..store import Store
from ..taxii import responses
from .metrics import Metrics

log = logging.getLogger(__name__)

JSON = "application/json"
NO_STORE = {"Cache-Control": "no-store"}
METRICS_MEDIA_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _json(document: dict[str, str], status_code: int = 200,
          headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(document), status_code=status_code, media_type=JSON,
                    headers={**NO_STORE, **(headers or {})})


def install(app: FastAPI, store: Store, metrics: Metrics, metrics_token: str = "") -> None:
    """Before the TAXII routes, which would take /healthz/ as an API root (the names are
    reserved: see config.RESERVED_PATHS)."""
    wanted = hashlib.sha256(metrics_token.encode()).digest() if metrics_token else None

    async def healthz() -> Response:
        """The process is up and answers: nothing else is looked at."""
        return _json({"status": "ok"})

    def readyz() -> Response:
        """The store answers a read. Nothing about the store goes in the body; the reason is
        logged."""
        try:
            store.ping()
        except ExchangeError as exc:
            log.warning("not ready: %s", exc.description or exc.title)
            return _json({"status": "unavailable"}, 503, {"Retry-After": "5"})
        except Exception:  # a probe answers; it never fails with a 500
            log.exception("not ready: the store check failed")
            return _json({"status": "unavailable"}, 503, {"Retry-After": "5"})
        return _json({"status": "ready"})

    def scrape(request: Request) -> Response:
        """Prometheus text exposition; with `metrics_token`, only for its bearer."""
        if wanted is not None:
            scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
            presented = hashlib.sha256(given.strip().encode()).digest()
            # Digests of equal length: the comparison's time says nothing about the token.
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented, wanted):
                answer = responses.error(401, "Authentication required",
                                         "/metrics needs `Authorization: Bearer` with the "
                                         "metrics token")
                answer.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
                return answer
        return Response(metrics.scrape(), media_type=METRICS_MEDIA_TYPE, headers=NO_STORE)

    for path, endpoint in (("/healthz/", healthz), ("/readyz/", readyz),
                           ("/metrics/", scrape)):
        app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)
