"""The analyst pages under /ui/: sign-in, collections, one object; browse and search
(web/search.py) and exports (web/export.py) are routed here.

A Starlette application of its own, mounted by create_app, so its errors are HTML pages and
the TAXII API's error handling stays as it is. Every read goes through the policy `Gate`
(the API's read path) and every sign-in through the API's `Authenticator` and its failed-login
throttle: the pages can show nothing the API would withhold.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..audit import Trail
from ..config import Settings
from ..errors import ExchangeError, Forbidden, Invalid, Throttled, Unauthenticated
from ..ingest import Ingest
from ..last_resort import LastResort
from ..policy.auth import Authenticator
from ..policy.gate import Gate
from ..policy.partners import Partner
from ..store import Store
from . import render
from .errors import domain_error, failure, http_error, status
from .session import SESSION_COOKIE, SIGN_IN_COOKIE, Session, Sessions, nonce, same

MAX_FORM_BYTES = 16384  # a sign-in form is a few hundred bytes


@dataclass(frozen=True)
class Pages:
    settings: Settings
    gate: Gate
    auth: Authenticator
    trail: Trail
    sessions: Sessions


@dataclass(frozen=True)
class Visitor:
    """A signed-in analyst: the session and the partner it signed in as."""

    session: Session
    partner: Partner
    csrf: str


def _pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


def _base(request: Request) -> str:
    """Where the pages are mounted (/ui, under any root path the server runs at)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


def _secure(request: Request) -> bool:
    """Secure cookies when the browser reached us over TLS: directly, or through the TLS proxy
    `public_url` names."""
    return request.url.scheme == "https" or _pages(request).settings.public_url.startswith(
        "https://")


def _visitor(request: Request) -> Visitor | None:
    pages = _pages(request)
    session = pages.sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    partner = pages.auth.partner(session.partner)
    if partner is None:  # removed from the partners file since signing in
        pages.sessions.end(session.id)
        return None
    return Visitor(session, partner, session.csrf)


def _to_sign_in(request: Request) -> Response:
    return RedirectResponse(f"{_base(request)}/sign-in/", status_code=303,
                            headers=render.HEADERS)


def _page(request: Request, visitor: Visitor, template: str, **context: Any) -> Response:
    return render.page(template, base=_base(request), signed_in=True,
                       partner=visitor.partner, csrf=visitor.csrf, **context)


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form, read with a bound (the pages send no other kind)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise Invalid("send the page's form")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Invalid("the form is too large")
    try:
        parsed = parse_qs(body.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise Invalid("the form could not be read") from None
    return {name: values[0] for name, values in parsed.items()}


@contextmanager
def _audited(request: Request, visitor: Visitor, facts: dict[str, Any]
             ) -> Iterator[dict[str, Any]]:
    """Page reads are recorded as API reads are, marked as the pages' (`face`)."""
    scope = request.scope
    record = {"endpoint": f"GET {scope['path']}", "address": _address(request) or None,
              "query": scope["query_string"][:2000].decode("latin-1") or None, "face": "ui"}
    trail = _pages(request).trail
    try:
        yield facts  # the handler adds what it handed over
    except ExchangeError as exc:
        trail.later("read", visitor.partner.id, result=status(exc), error=exc.title,
                    **record, **facts)
        raise
    trail.later("read", visitor.partner.id, result=200, **record, **facts)


# -- sign-in and sign-out ----------------------------------------------------------------


def _sign_in_form(request: Request, error: str = "", status_code: int = 200,
                  partner_id: str = "", headers: dict[str, str] | None = None) -> Response:
    bound = nonce()  # the form's CSRF token and the cookie it must match
    response = render.page("sign_in.html", status_code, headers, base=_base(request),
                           signed_in=False, csrf=bound, error=error,
                           partner_id=partner_id)
    response.set_cookie(SIGN_IN_COOKIE, bound, httponly=True, samesite="strict",
                        secure=_secure(request), path=f"{_base(request)}/")
    return response


async def sign_in(request: Request) -> Response:
    if request.method == "GET":
        if _visitor(request) is not None:
            return RedirectResponse(f"{_base(request)}/collections/", status_code=303)
        return _sign_in_form(request)
    pages = _pages(request)
    form = await _form(request)
    if not same(request.cookies.get(SIGN_IN_COOKIE), form.get("csrf")):
        raise Forbidden("the sign-in form expired or did not come from this site: "
                        "open the sign-in page again")
    partner_id, token = form.get("partner", "").strip(), form.get("token", "").strip()
    if token:
        authorization = f"Bearer {token}"
    else:
        pair = f"{partner_id}:{form.get('password', '')}".encode()
        authorization = f"Basic {base64.b64encode(pair).decode('ascii')}"
    try:
        partner = await run_in_threadpool(pages.auth.authenticate, authorization,
                                          address=_address(request))
    except Throttled as exc:
        return _sign_in_form(request, exc.description, 429, partner_id,
                             {"Retry-After": str(exc.retry_after)})
    except Unauthenticated as exc:
        return _sign_in_form(request, exc.description, 200, partner_id)
    session = pages.sessions.start(partner.id)
    pages.trail.later("ui-sign-in", partner.id, address=_address(request) or None,
                      method="token" if token else "password")
    response = RedirectResponse(f"{_base(request)}/collections/", status_code=303,
                                headers=render.HEADERS)
    response.set_cookie(SESSION_COOKIE, session.id, max_age=pages.sessions.lifetime,
                        httponly=True, samesite="strict", secure=_secure(request),
                        path=f"{_base(request)}/")
    response.delete_cookie(SIGN_IN_COOKIE, path=f"{_base(request)}/")
    return response


async def sign_out(request: Request) -> Response:
    form = await _form(request)
    visitor = _visitor(request)
    if visitor is None:
        return _to_sign_in(request)
    if not same(visitor.session.csrf, form.get("csrf")):
        raise Forbidden("the form expired or did not come from this site: reload the page")
    _pages(request).sessions.end(visitor.session.id)
    response = _to_sign_in(request)
    response.delete_cookie(SESSION_COOKIE, path=f"{_base(request)}/")
    return response


# -- reading ---------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    if _visitor(request) is None:
        return _to_sign_in(request)
    return RedirectResponse(f"{_base(request)}/collections/", status_code=303)


async def collections(request: Request) -> Response:
    visitor = _visitor(request)
    if visitor is None:
        return _to_sign_in(request)
    pages = _pages(request)
    rows = [(root, collection, access) for root in pages.settings.api_roots
            for collection, access in pages.gate.granted(visitor.partner, root.name)]
    return _page(request, visitor, "collections.html", rows=rows)


def build(settings: Settings, gate: Gate, auth: Authenticator, trail: Trail,
          store: Store, *, ingest: Ingest | None = None,
          sync_status: Callable[[], list[dict[str, Any]]] = list) -> Starlette:
    """The pages' application, for create_app to mount at /ui. Objects are read through
    `gate` only; `store` keeps the sessions; uploads go through `ingest` (the app's, else one
    over `store`); `sync_status` gives the federation's status records."""
    # The views of these modules use this one's helpers: imported here, once it is loaded.
    from . import export, object_view, search, work

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/sign-in/", sign_in, methods=["GET", "POST"]),
        Route("/sign-out/", sign_out, methods=["POST"]),
        Route("/collections/", collections, methods=["GET"]),
        Route("/collections/{root}/{collection}/", search.browse, methods=["GET"]),
        Route("/collections/{root}/{collection}/export.json/", export.export,
              methods=["GET"]),
        Route("/collections/{root}/{collection}/export.csv/", export.export,
              methods=["GET"]),
        Route("/search/", search.search_all, methods=["GET"]),
        Route("/collections/{root}/{collection}/objects/{object_id}/", object_view.object_page,
              methods=["GET"]),
        Route("/upload/", work.upload, methods=["GET", "POST"]),
        Route("/federation/", work.federation, methods=["GET"]),
        Route("/audit/", work.audit_page, methods=["GET"]),
        Mount("/static", StaticFiles(packages=[("exchange.web", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(LastResort, answer=failure)],
                    exception_handlers={ExchangeError: domain_error,
                                        HTTPException: http_error})
    app.state.pages = Pages(settings, gate, auth, trail,
                            Sessions(store, settings.ui_session_seconds))
    app.state.work = work.Work(ingest or Ingest(store), sync_status)
    return app
