"""Signed-in analysts: sessions kept in the store, and CSRF tokens.

A session is a random id in an HttpOnly cookie; what it stands for (the partner, when it ends,
its CSRF token) is kept in the store's named state under the SHA-256 of the id (the id itself
is never stored), so every server process knows every session and a restart keeps them:
`serve --workers N` needs no sticky sessions. Nothing a browser holds can be edited into
another partner.

Every form carries a CSRF token. Signed in, it is the session's own random token, kept with the
session. Before sign-in, it is the value of a random nonce cookie the form was shown with (a
double submit): a forged cross-site form can read neither.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from ..store import Store

SESSION_COOKIE = "txe_session"
SIGN_IN_COOKIE = "txe_sign_in"  # the nonce the sign-in form's CSRF token is bound to


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    partner: str
    expires: float  # unix time
    csrf: str  # the token every form of this session carries

    @property
    def remaining(self) -> int:
        return max(0, int(self.expires - time.time()))


def _key(session_id: str) -> str:
    return "ui-session:" + hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    def __init__(self, store: Store, lifetime_seconds: int) -> None:
        self.store = store
        self.lifetime = lifetime_seconds

    def start(self, partner_id: str) -> Session:
        """A new session (a new id at every sign-in: a planted id is never promoted)."""
        session = Session(secrets.token_urlsafe(32), partner_id, time.time() + self.lifetime,
                          secrets.token_urlsafe(32))
        self.store.put_state(_key(session.id), {"partner": partner_id,
                                                "expires": session.expires,
                                                "csrf": session.csrf})
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        doc = self.store.get_state(_key(session_id))
        if not doc or "partner" not in doc or doc["expires"] <= time.time():
            return None
        return Session(session_id, doc["partner"], doc["expires"], doc["csrf"])

    def end(self, session_id: str) -> None:
        self.store.put_state(_key(session_id), {"ended": time.time()})


def same(expected: str | None, token: str | None) -> bool:
    """Whether a form's CSRF token is the one it was shown with (constant time)."""
    if not expected or not token:
        return False
    return hmac.compare_digest(expected.encode(), token.encode())


def nonce() -> str:
    return secrets.token_urlsafe(32)
