"""TAXII responses: every one, errors included, is application/taxii+json;version=2.1."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from .. import errors
from ..model import Entry, Page, Status
from ..stix import format_micros
from ..store import cursor
from .media import TAXII_21

HTTP_STATUS: dict[type[errors.ExchangeError], int] = {
    errors.Invalid: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.NotAcceptable: 406,
    errors.TooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.Unprocessable: 422,
    errors.RateLimited: 429,
    errors.Throttled: 429,
    errors.Unavailable: 503,
}
CHALLENGE = 'Basic realm="taxii-exchange", charset="UTF-8", Bearer realm="taxii-exchange"'


def taxii(document: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return raw(orjson.dumps(document), status_code, headers)


def raw(body: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status_code, headers=headers, media_type=TAXII_21)


def error(status_code: int, title: str, description: str = "",
          headers: dict[str, str] | None = None) -> Response:
    """The TAXII error message resource (section 3.6.1)."""
    document = {"title": title, "http_status": str(status_code)}
    if description:
        document["description"] = description
    if status_code == 401:
        headers = {**(headers or {}), "WWW-Authenticate": CHALLENGE}
    return taxii(document, status_code, headers)


def http_status(exc: errors.ExchangeError) -> int:
    return next((c for kind, c in HTTP_STATUS.items() if isinstance(exc, kind)), 500)


def domain_error(exc: errors.ExchangeError) -> Response:
    headers = None
    if isinstance(exc, errors.RateLimited | errors.Throttled | errors.Unavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    return error(http_status(exc), exc.title, exc.description, headers)


def date_headers(page: Page) -> dict[str, str]:
    if not page.entries:
        return {}
    return {"X-TAXII-Date-Added-First": format_micros(page.entries[0].date_added),
            "X-TAXII-Date-Added-Last": format_micros(page.entries[-1].date_added)}


def _paging(page: Page) -> bytes:
    if page.more and page.last_added is not None:
        return b'{"more":true,"next":' + orjson.dumps(cursor.encode(page.last_added))
    return b'{"more":false'


def envelope(page: Page) -> Response:
    """Objects as stored: the page is joined from stored bytes, never re-serialized."""
    body = _paging(page)
    if page.entries:
        body += b',"objects":[' + b",".join(e.body for e in page.entries) + b"]"
    return raw(body + b"}", headers=date_headers(page))


def manifest(page: Page) -> Response:
    objects = [_manifest_record(e) for e in page.entries]
    body = _paging(page) + (b',"objects":' + orjson.dumps(objects) if objects else b"")
    return raw(body + b"}", headers=date_headers(page))


def _manifest_record(entry: Entry) -> dict[str, str]:
    return {"id": entry.id, "date_added": format_micros(entry.date_added),
            "version": entry.version, "media_type": entry.media_type}


def versions(page: Page) -> Response:
    body = _paging(page)
    if page.entries:
        body += b',"versions":' + orjson.dumps([e.version for e in page.entries])
    return raw(body + b"}", headers=date_headers(page))


def status(record: Status, status_code: int = 200) -> Response:
    """The status resource (section 4.3.1); the counts always add up to total_count."""
    successes, failures, pendings = record.counts
    document: dict[str, Any] = {
        "id": record.id, "status": record.status,
        "request_timestamp": format_micros(record.request_timestamp),
        "total_count": record.total_count,
        "success_count": successes, "failure_count": failures, "pending_count": pendings,
    }
    if record.successes:
        document["successes"] = record.successes
    if record.failures:
        document["failures"] = record.failures
    if record.pendings:
        document["pendings"] = record.pendings
    return taxii(document, status_code)
