"""Authentication: HTTP Basic (partner id + password) and API tokens.

Connectors send a token in different ways; all of them name the same partner with the same
policy: `Authorization: Bearer T`, `Authorization: Token T` (or `Token token="T"`), an
`X-API-Key: T` header, and HTTP Basic with the partner id as the user and the token as the
password (a password that starts with `txe_` is a token: a SHA-256 lookup, never argon2).

A slow password hash must not run on every request (SIEM connectors send Basic on every
poll). A password verified once with argon2 is remembered for a short time, keyed by an HMAC
of the presented credential under a per-process random key (never the plaintext), and only
while the partner's stored hash is unchanged: a rotation or removal forgets it at once.

An API token is a SHA-256 lookup. A partner may hold several; one that expired or was revoked
is refused with a description saying so (only the token's holder can learn that, and it says
nothing about which partner ids exist). Each accepted token is reported to `on_token` (see
usage.py: when it was last used).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import ConfigError, Unauthenticated
from . import partners as partners_file
from .certs import identify
from .partners import TOKEN_PREFIX, Partner, hasher, parse_time, token_digest
from .throttle import Throttle

log = logging.getLogger(__name__)

# argon2 takes 64 MiB per check: at most two at once, so a flood of wrong passwords queues
# instead of growing the process by 64 MiB per request thread.
_VERIFY_SLOTS = threading.BoundedSemaphore(2)

# Verified against when the partner id is unknown, so timing does not reveal which ids exist.
_DUMMY_HASH = hasher.hash(secrets.token_urlsafe(16))

UNKNOWN_TOKEN = "unknown or revoked API token"
WRONG_BASIC = "wrong partner id or password"


@dataclass(frozen=True, slots=True)
class _TokenEntry:
    partner: Partner
    digest: str
    expires: float | None  # epoch seconds
    expires_text: str | None
    revoked: str | None


def _ignore(digest: str, partner_id: str) -> None:
    pass


class Authenticator:
    def __init__(self, path: Path, *, remember_seconds: float = 300.0,
                 reload_seconds: float = 1.0,
                 on_token: Callable[[str, str], None] = _ignore,
                 throttle: Throttle | None = None) -> None:
        self.path = path
        self.throttle = throttle if throttle is not None else Throttle()
        self.remember_seconds = remember_seconds
        self.reload_seconds = reload_seconds
        self.on_token = on_token  # (digest, partner id) of each token accepted
        # Called with the partners after each reload once set (the audit trail's hook).
        self.on_load: Callable[[dict[str, Partner]], object] | None = None
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._partners: dict[str, Partner] = {}
        self._by_token: dict[str, _TokenEntry] = {}
        self._by_certificate: dict[str, Partner] = {}  # subject or fingerprint -> partner
        self._stamp: tuple[int, int, int] | None = None  # (mtime_ns, inode, size) last loaded
        self._checked = 0.0
        self._remembered: dict[bytes, tuple[str, str, float]] = {}
        self._reload()

    def _reload(self) -> None:
        """Re-read the partners file when it changed (checked at most once per interval)."""
        now = time.monotonic()
        self._checked = now
        # Not the mtime alone: it can stay the same across a change (coarse file system
        # timestamps, a copy that keeps it), while `partners` always writes a new inode.
        try:
            info = os.stat(self.path)
            stamp: tuple[int, int, int] | None = (info.st_mtime_ns, info.st_ino, info.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp and self._stamp is not None:
            return
        try:
            loaded = partners_file.load(self.path)
        except ConfigError:
            if self._stamp is None and not self._partners:
                raise  # at start: refuse to serve on a broken file
            # While serving: keep the last good partners rather than fail every request.
            log.exception("partners file %s is invalid; keeping the partners loaded before",
                          self.path)
            self._stamp = stamp
            return
        by_token = {t.sha256: _TokenEntry(
            p, t.sha256, parse_time(t.expires).timestamp() if t.expires else None, t.expires,
            t.revoked) for p in loaded.values() for t in p.tokens}
        by_certificate = {key: p for p in loaded.values()
                          for key in p.cert_subjects + p.cert_fingerprints}
        with self._lock:
            self._partners, self._by_token, self._stamp = loaded, by_token, stamp
            self._by_certificate = by_certificate
        if self.on_load is not None:
            self.on_load(loaded)

    def partners(self) -> dict[str, Partner]:
        return dict(self._partners)

    def partner(self, partner_id: str) -> Partner | None:
        return self._partners.get(partner_id)

    def authenticate(self, authorization: str | None = None, *,
                     api_key: str | None = None, certificate: str | None = None,
                     address: str = "") -> Partner:
        """The partner the request's credentials name: an `Authorization` header (Basic with
        a password or an API token, Bearer, Token), an `X-API-Key` header and a verified TLS
        client certificate (PEM). A request that sends several must name one partner with all
        of them. A certificate that is no partner's is only a failure when nothing else was
        sent: it may come from a CA many organisations share.

        `address` is the client's (see taxii/client.py): failed logins from it are counted,
        and once too many it is refused (Throttled) before any credential is checked."""
        if time.monotonic() - self._checked > self.reload_seconds:
            self._reload()
        if not (authorization or api_key or certificate):  # a first request: no failure
            raise Unauthenticated("send HTTP Basic credentials or an API token")
        claimed = _basic_user(authorization)
        self.throttle.check(address, claimed)
        try:
            found = []
            if certificate:
                subject, fingerprint = identify(certificate)
                by_certificate = (self._by_certificate.get(fingerprint)
                                  or self._by_certificate.get(subject))
                if by_certificate is not None:
                    found.append(by_certificate)
                elif not (authorization or api_key):
                    raise Unauthenticated("this client certificate is not a partner's")
            if authorization:
                found.append(self._authorization(authorization))
            if api_key:
                found.append(self._token(api_key.strip()))
            if any(p.id != found[0].id for p in found):
                raise Unauthenticated("the credentials sent name different partners")
        except Unauthenticated:
            self.throttle.failed(address, claimed)
            raise
        self.throttle.succeeded(address, claimed)
        return found[0]

    def _authorization(self, header: str) -> Partner:
        scheme, _, value = header.strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer":
            return self._token(value)
        if scheme == "token":  # `Token T`, and Rails' `Token token="T"` (other fields ignored)
            if value.lower().startswith("token="):
                value = value[len("token="):].split(",")[0].strip().strip('"')
            return self._token(value)
        if scheme == "basic":
            return self._basic(value)
        raise Unauthenticated("unsupported authorization scheme: use Basic, Bearer or Token")

    def _token(self, token: str, user: str | None = None) -> Partner:
        """An API token; as a Basic password, `user` must be the id of its partner."""
        digest = token_digest(token)
        entry = self._by_token.get(digest)
        # The dict lookup picks the candidate; the comparison that decides is constant-time.
        if entry is None or not hmac.compare_digest(digest, entry.digest):
            raise Unauthenticated(UNKNOWN_TOKEN if user is None else WRONG_BASIC)
        if user is not None and user != entry.partner.id:
            # The same answer as a wrong password: this tells nobody which ids exist.
            raise Unauthenticated(WRONG_BASIC)
        if entry.revoked:
            raise Unauthenticated(f"this API token was revoked at {entry.revoked}; ask the "
                                  "exchange's operator for a new one")
        if entry.expires is not None and time.time() >= entry.expires:
            raise Unauthenticated(f"this API token expired at {entry.expires_text}; ask the "
                                  "exchange's operator for a new one")
        self.on_token(digest, entry.partner.id)
        return entry.partner

    def _basic(self, value: str) -> Partner:
        try:
            decoded = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeError):  # raw 8-bit bytes in the header included
            raise Unauthenticated("malformed Basic credentials") from None
        partner_id, sep, password = decoded.partition(":")
        if not sep:
            raise Unauthenticated("malformed Basic credentials")
        if password.startswith(TOKEN_PREFIX):
            # An API token as the password (SIEM connectors that can only send Basic): a
            # SHA-256 lookup, never argon2. No generated password starts like a token.
            return self._token(password, user=partner_id)
        key = hmac.new(self._key, decoded.encode(), hashlib.sha256).digest()
        partner = self._partners.get(partner_id)
        remembered = self._remembered.get(key)
        now = time.monotonic()
        if (remembered and partner and remembered[0] == partner.id
                and remembered[1] == partner.password_hash and remembered[2] > now):
            return partner
        stored = partner.password_hash if partner and partner.password_hash else _DUMMY_HASH
        try:
            with _VERIFY_SLOTS:
                hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            raise Unauthenticated(WRONG_BASIC) from None
        if partner is None or stored is _DUMMY_HASH:
            raise Unauthenticated(WRONG_BASIC)
        with self._lock:
            if len(self._remembered) > 10_000:
                self._remembered.clear()
            self._remembered[key] = (partner.id, stored, now + self.remember_seconds)
        return partner


def _basic_user(authorization: str | None) -> str | None:
    """The partner id a Basic header claims, unchecked: what a failure is counted against."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip().encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError):
        return None
    user, sep, _ = decoded.partition(":")
    return user if sep else None
