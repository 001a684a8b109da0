"""Who is on the other end of a request: the credentials it sent, taken in one place."""

from __future__ import annotations

from starlette.requests import Request

from ..policy.auth import Authenticator
from ..policy.partners import Partner


def authenticate(request: Request, auth: Authenticator) -> Partner:
    """The partner a request's credentials name (see policy/auth.py for what is accepted)."""
    headers = request.headers
    return auth.authenticate(headers.get("authorization"), api_key=headers.get("x-api-key"))
