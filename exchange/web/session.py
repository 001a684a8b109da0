"""Signed-in analysts: server-side sessions in this process's memory, and CSRF tokens.

A session is a random id in an HttpOnly cookie; what it stands for (the partner, when it
ends) stays on the server, so nothing a browser holds can be edited into another partner.
Sessions live in memory: a restart signs everyone out, which is the safe direction.

Every form carries a CSRF token: an HMAC, under a per-process random key, of the session id
(signed in) or of a sign-in nonce cookie (before sign-in). A forged cross-site form cannot
read either cookie, so it cannot compute the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

SESSION_COOKIE = "txe_session"
SIGN_IN_COOKIE = "txe_sign_in"  # the nonce the sign-in form's CSRF token is bound to
MAX_SESSIONS = 10_000  # bounds memory: beyond it the oldest sessions end first


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    partner: str
    expires: float  # time.monotonic() deadline

    @property
    def remaining(self) -> int:
        return max(0, int(self.expires - time.monotonic()))


class Sessions:
    def __init__(self, lifetime_seconds: int) -> None:
        self.lifetime = lifetime_seconds
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}  # insertion order: oldest first

    def start(self, partner_id: str) -> Session:
        """A new session (a new id at every sign-in: a planted id is never promoted)."""
        session = Session(secrets.token_urlsafe(32), partner_id,
                          time.monotonic() + self.lifetime)
        with self._lock:
            now = time.monotonic()
            for key in [k for k, s in self._by_id.items() if s.expires <= now]:
                del self._by_id[key]
            while len(self._by_id) >= MAX_SESSIONS:
                del self._by_id[next(iter(self._by_id))]
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._by_id.get(session_id)
            if session is not None and session.expires <= time.monotonic():
                del self._by_id[session_id]
                return None
        return session

    def end(self, session_id: str) -> None:
        with self._lock:
            self._by_id.pop(session_id, None)

    def token(self, bound_to: str) -> str:
        """The CSRF token of forms shown to the holder of `bound_to` (a session id or nonce)."""
        return hmac.new(self._key, f"csrf:{bound_to}".encode(), hashlib.sha256).hexdigest()

    def check(self, bound_to: str | None, token: str | None) -> bool:
        if not bound_to or not token:
            return False
        return hmac.compare_digest(self.token(bound_to), token)


def nonce() -> str:
    return secrets.token_urlsafe(32)
