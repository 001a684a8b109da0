"""The partners file: who may connect, with credentials stored only as hashes.

Passwords are argon2 hashes (checked rarely, see auth.py); API tokens are long random secrets
stored as SHA-256 digests, fast and safe to check on every request. A partner may hold several
tokens (a new one is added before the old one is revoked: rotation without downtime), each with
an optional label and expiry. A partner may also be known by its TLS client certificate.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher

from ..errors import ConfigError
from ..model import CLEAR, TLP_NAMES, TLP_RANKS
from ..schemas import validate

PARTNER_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
TOKEN_PREFIX = "txe_"  # also how a Basic password is told to be an API token (see auth.py)
# How much of a token the file keeps in the clear, so an operator can tell which entry the
# token in a connector's settings is: 8 random characters (48 bits) of 256.
SHOWN_LENGTH = len(TOKEN_PREFIX) + 8
hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class Token:
    sha256: str
    created: str  # RFC 3339, UTC
    label: str | None = None
    shown: str | None = None  # the token's first characters (files from before have none)
    expires: str | None = None  # RFC 3339, UTC; refused from then on
    revoked: str | None = None  # when it was revoked; kept so a refusal can say so

    @property
    def name(self) -> str:
        """How the operator names it: its first characters, or its digest's for old entries."""
        return self.shown or f"sha256:{self.sha256[:12]}"

    def state(self, now: datetime) -> str:
        if self.revoked:
            return "revoked"
        if self.expires and parse_time(self.expires) <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class Partner:
    id: str
    name: str
    identity: str  # the partner's STIX identity id (provenance, created_by_ref)
    groups: tuple[str, ...] = ()
    password_hash: str | None = None
    tokens: tuple[Token, ...] = field(default=())
    clearance: int = CLEAR  # highest TLP rank it may receive (collections may override)
    relay_for: frozenset[str] = frozenset()  # identities it may push objects for
    # TLS client certificates that are this partner: RFC 4514 subjects (normalised) and
    # SHA-256 fingerprints of the DER (lower-case hex, no colons).
    cert_subjects: tuple[str, ...] = ()
    cert_fingerprints: tuple[str, ...] = ()
    admin: bool = False  # may see the audit trail and federation status on the pages

    @property
    def principals(self) -> frozenset[str]:
        """The names access lists may use for this partner."""
        return frozenset({f"partner:{self.id}", *(f"group:{g}" for g in self.groups)})

    @property
    def identities(self) -> frozenset[str]:
        """The `created_by_ref` values its pushes may carry."""
        return self.relay_for | {self.identity}


@dataclass(frozen=True, slots=True)
class Credentials:
    """Fresh secrets, shown once to the operator and never stored in the clear."""

    partner: str
    password: str
    token: str


@dataclass(frozen=True, slots=True)
class NewToken:
    """A fresh API token, shown once."""

    partner: str
    token: str
    entry: Token


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp (a date alone is its midnight, UTC)."""
    found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def parse_expiry(text: str, now: datetime | None = None) -> str:
    """`90d` (days from now), or a date or time (`2027-03-01`: from midnight UTC that day)."""
    now = now or datetime.now(UTC)
    days = re.fullmatch(r"([1-9][0-9]{0,4})d", text.strip())
    try:
        if days:
            when = now + timedelta(days=int(days.group(1)))
        else:
            when = parse_time(date.fromisoformat(text).isoformat()
                              if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else text)
    except ValueError:
        raise ConfigError(f"an expiry is a number of days (90d) or a date (2027-03-01), not "
                          f"{text!r}") from None
    if when <= now:
        raise ConfigError(f"expiry {text!r} is in the past")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalise_subject(subject: str) -> str:
    """An RFC 4514 subject as the certificate check writes it (cryptography's
    `rfc4514_string`), so the file and the certificate compare as strings."""
    from cryptography import x509  # only where certificates are used: it takes time to import

    try:
        return x509.Name.from_rfc4514_string(subject.strip()).rfc4514_string()
    except ValueError:
        raise ConfigError(f"{subject!r} is not an RFC 4514 subject such as "
                          "CN=connector.cert.example,O=CERT Example") from None


def normalise_fingerprint(fingerprint: str) -> str:
    found = fingerprint.strip().lower().replace(":", "")
    if not re.fullmatch(r"[0-9a-f]{64}", found):
        raise ConfigError(f"{fingerprint!r} is not a SHA-256 fingerprint (64 hex digits, colons "
                          "allowed)")
    return found


def load(path: Path) -> dict[str, Partner]:
    if not path.exists():
        return {}
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {"partners": []}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    validate("partners", document, str(path))
    partners: dict[str, Partner] = {}
    for item in document["partners"]:
        if item["id"] in partners:
            raise ConfigError(f"{path}: partner {item['id']!r} is listed twice")
        try:
            subjects = tuple(normalise_subject(c["subject"])
                             for c in item.get("certificates", ()) if "subject" in c)
            fingerprints = tuple(normalise_fingerprint(c["sha256"])
                                 for c in item.get("certificates", ()) if "sha256" in c)
            tokens = tuple(_token(t) for t in item.get("tokens", ()))
        except ConfigError as exc:
            raise ConfigError(f"{path}: partner {item['id']!r}: {exc.description}") from None
        partners[item["id"]] = Partner(
            id=item["id"], name=item["name"], identity=item["identity"],
            groups=tuple(item.get("groups", ())), password_hash=item.get("password_hash"),
            tokens=tokens, clearance=TLP_RANKS[item.get("clearance", "clear")],
            relay_for=frozenset(item.get("relay_for", ())),
            cert_subjects=subjects, cert_fingerprints=fingerprints,
            admin=item.get("admin", False),
        )
    _check_certificates(path, partners)
    return partners


def _check_certificates(path: Path, partners: dict[str, Partner]) -> None:
    """A certificate names one partner: a subject or fingerprint given to two is refused."""
    owners: dict[str, str] = {}
    for p in partners.values():
        for key in p.cert_subjects + p.cert_fingerprints:
            if owners.setdefault(key, p.id) != p.id:
                raise ConfigError(f"{path}: certificate {key!r} is given to both "
                                  f"{owners[key]!r} and {p.id!r}")


def _token(item: dict[str, Any]) -> Token:
    for key in ("created", "expires", "revoked"):
        if key in item:
            try:
                parse_time(item[key])
            except ValueError:
                raise ConfigError(f"token {key} {item[key]!r} is not an RFC 3339 time") \
                    from None
    return Token(sha256=item["sha256"], created=item.get("created", ""),
                 label=item.get("label"), shown=item.get("shown"),
                 expires=item.get("expires"), revoked=item.get("revoked"))


def _token_item(token: Token) -> dict[str, str]:
    item = {"sha256": token.sha256}
    for key in ("created", "label", "shown", "expires", "revoked"):
        if getattr(token, key):
            item[key] = getattr(token, key)
    return item


def save(path: Path, partners: dict[str, Partner]) -> None:
    """Write atomically (temp file + rename) so a running server never reads half a file."""
    document: dict[str, Any] = {"partners": []}
    for p in partners.values():
        item: dict[str, Any] = {"id": p.id, "name": p.name, "identity": p.identity,
                                "groups": list(p.groups), "clearance": TLP_NAMES[p.clearance]}
        if p.admin:
            item["admin"] = True
        if p.relay_for:
            item["relay_for"] = sorted(p.relay_for)
        if p.password_hash:
            item["password_hash"] = p.password_hash
        item["tokens"] = [_token_item(t) for t in p.tokens]
        if p.cert_subjects or p.cert_fingerprints:
            item["certificates"] = [*({"subject": s} for s in p.cert_subjects),
                                    *({"sha256": f} for f in p.cert_fingerprints)]
        document["partners"].append(item)
    validate("partners", document, str(path))
    _check_certificates(path, partners)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partners-")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# Managed by `taxii-exchange partners`. Secrets are stored as hashes only.\n")
        yaml.safe_dump(document, out, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _new_token(label: str | None = None, expires: str | None = None) -> tuple[str, Token]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, Token(sha256=token_digest(token), created=now_text(), label=label,
                        shown=token[:SHOWN_LENGTH], expires=expires)


def _new_password() -> str:
    while True:  # a password never looks like a token (a Basic password that does is one)
        password = secrets.token_urlsafe(18)
        if not password.startswith(TOKEN_PREFIX):
            return password


def _new_secrets(partner_id: str) -> tuple[Credentials, str, Token]:
    password = _new_password()
    token, entry = _new_token()
    return Credentials(partner_id, password, token), hasher.hash(password), entry


def add(path: Path, partner_id: str, name: str, groups: tuple[str, ...] = (),
        identity: str | None = None, clearance: str = "clear",
        relay_for: tuple[str, ...] = (), admin: bool = False) -> Credentials:
    if not PARTNER_ID_RE.match(partner_id):
        raise ConfigError("a partner id is 1-64 lower-case letters, digits, '.', '_' or '-'")
    partners = load(path)
    if partner_id in partners:
        raise ConfigError(f"partner {partner_id!r} exists; use `partners rotate` for new secrets")
    credentials, pw_hash, entry = _new_secrets(partner_id)
    partners[partner_id] = Partner(
        id=partner_id, name=name, identity=identity or f"identity--{uuid.uuid4()}",
        groups=groups, password_hash=pw_hash, tokens=(entry,),
        clearance=_rank(clearance), relay_for=frozenset(relay_for), admin=admin,
    )
    save(path, partners)
    return credentials


def update(path: Path, partner_id: str, *, clearance: str | None = None,
           relay_for: tuple[str, ...] | None = None, name: str | None = None,
           groups: tuple[str, ...] | None = None,
           cert_subjects: tuple[str, ...] | None = None,
           cert_fingerprints: tuple[str, ...] | None = None,
           admin: bool | None = None) -> Partner:
    """Change a partner's clearance, relayed identities, name, groups, client certificates
    or administrator right (None: unchanged). A running server applies the change within a
    second, as for any change of the file."""
    partners = load(path)
    if partner_id not in partners:
        raise ConfigError(f"no partner {partner_id!r}")
    current = partners[partner_id]
    partners[partner_id] = replace(
        current, clearance=current.clearance if clearance is None else _rank(clearance),
        relay_for=current.relay_for if relay_for is None else frozenset(relay_for),
        name=current.name if name is None else name,
        groups=current.groups if groups is None else groups,
        cert_subjects=current.cert_subjects if cert_subjects is None else
        tuple(normalise_subject(s) for s in cert_subjects),
        cert_fingerprints=current.cert_fingerprints if cert_fingerprints is None else
        tuple(normalise_fingerprint(f) for f in cert_fingerprints),
        admin=current.admin if admin is None else admin)
    save(path, partners)
    return partners[partner_id]


def _rank(clearance: str) -> int:
    if clearance not in TLP_RANKS:
        raise ConfigError(f"clearance is one of {', '.join(TLP_RANKS)}, not {clearance!r}")
    return TLP_RANKS[clearance]


def rotate(path: Path, partner_id: str) -> Credentials:
    """Replace a partner's password and tokens; the old ones stop working at once."""
    partners = load(path)
    if partner_id not in partners:
        raise ConfigError(f"no partner {partner_id!r}")
    credentials, pw_hash, entry = _new_secrets(partner_id)
    partners[partner_id] = replace(partners[partner_id], password_hash=pw_hash,
                                   tokens=(entry,))
    save(path, partners)
    return credentials


def add_token(path: Path, partner_id: str, *, label: str | None = None,
              expires: str | None = None) -> NewToken:
    """One more API token for a partner; its other tokens keep working."""
    partners = load(path)
    if partner_id not in partners:
        raise ConfigError(f"no partner {partner_id!r}")
    current = partners[partner_id]
    if label is not None and any(t.label == label for t in current.tokens):
        raise ConfigError(f"partner {partner_id!r} has a token labelled {label!r}")
    token, entry = _new_token(label, parse_expiry(expires) if expires else None)
    partners[partner_id] = replace(current, tokens=(*current.tokens, entry))
    save(path, partners)
    return NewToken(partner_id, token, entry)


def revoke_token(path: Path, partner_id: str, which: str) -> Token:
    """Revoke the token with this label, or whose first characters (as `token list` shows
    them; the whole token also does) are these. The entry stays, marked, so a connector still
    sending it is told it was revoked."""
    partners = load(path)
    if partner_id not in partners:
        raise ConfigError(f"no partner {partner_id!r}")
    current = partners[partner_id]
    digest = token_digest(which)
    found = [t for t in current.tokens if t.label == which or t.sha256 == digest] or \
        [t for t in current.tokens if which.startswith(t.name)]
    if len(found) != 1:
        problem = "no token" if not found else f"{len(found)} tokens"
        raise ConfigError(f"{problem} of {partner_id!r} matches {which!r}: give a label or the "
                          "first characters `partners token list` shows")
    if found[0].revoked:
        raise ConfigError(f"that token was already revoked at {found[0].revoked}")
    revoked = replace(found[0], revoked=now_text())
    partners[partner_id] = replace(current, tokens=tuple(revoked if t is found[0] else t
                                                         for t in current.tokens))
    save(path, partners)
    return revoked


def remove(path: Path, partner_id: str) -> None:
    partners = load(path)
    if partners.pop(partner_id, None) is None:
        raise ConfigError(f"no partner {partner_id!r}")
    save(path, partners)
