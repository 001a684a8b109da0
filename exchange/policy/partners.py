"""The partners file: who may connect, with credentials stored only as hashes.

Passwords are argon2 hashes (checked rarely, see auth.py); API tokens are long random secrets
stored as SHA-256 digests, fast and safe to check on every request.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher

from ..errors import ConfigError
from ..model import CLEAR, TLP_NAMES, TLP_RANKS
from ..schemas import validate

PARTNER_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
TOKEN_PREFIX = "txe_"
hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class Partner:
    id: str
    name: str
    identity: str  # the partner's STIX identity id (provenance, created_by_ref)
    groups: tuple[str, ...] = ()
    password_hash: str | None = None
    token_digests: tuple[str, ...] = field(default=())
    clearance: int = CLEAR  # highest TLP rank it may receive (collections may override)
    relay_for: frozenset[str] = frozenset()  # identities it may push objects for

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


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
        partners[item["id"]] = Partner(
            id=item["id"], name=item["name"], identity=item["identity"],
            groups=tuple(item.get("groups", ())), password_hash=item.get("password_hash"),
            token_digests=tuple(t["sha256"] for t in item.get("tokens", ())),
            clearance=TLP_RANKS[item.get("clearance", "clear")],
            relay_for=frozenset(item.get("relay_for", ())),
        )
    return partners


def save(path: Path, partners: dict[str, Partner]) -> None:
    """Write atomically (temp file + rename) so a running server never reads half a file."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document: dict[str, Any] = {"partners": []}
    for p in partners.values():
        item: dict[str, Any] = {"id": p.id, "name": p.name, "identity": p.identity,
                                "groups": list(p.groups), "clearance": TLP_NAMES[p.clearance]}
        if p.relay_for:
            item["relay_for"] = sorted(p.relay_for)
        if p.password_hash:
            item["password_hash"] = p.password_hash
        item["tokens"] = [{"sha256": d, "created": stamp} for d in p.token_digests]
        document["partners"].append(item)
    validate("partners", document, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partners-")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# Managed by `taxii-exchange partners`. Secrets are stored as hashes only.\n")
        yaml.safe_dump(document, out, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _new_secrets(partner_id: str) -> tuple[Credentials, str, str]:
    password = secrets.token_urlsafe(18)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return Credentials(partner_id, password, token), hasher.hash(password), token_digest(token)


def add(path: Path, partner_id: str, name: str, groups: tuple[str, ...] = (),
        identity: str | None = None, clearance: str = "clear",
        relay_for: tuple[str, ...] = ()) -> Credentials:
    if not PARTNER_ID_RE.match(partner_id):
        raise ConfigError("a partner id is 1-64 lower-case letters, digits, '.', '_' or '-'")
    partners = load(path)
    if partner_id in partners:
        raise ConfigError(f"partner {partner_id!r} exists; use `partners rotate` for new secrets")
    credentials, pw_hash, digest = _new_secrets(partner_id)
    partners[partner_id] = Partner(
        id=partner_id, name=name, identity=identity or f"identity--{uuid.uuid4()}",
        groups=groups, password_hash=pw_hash, token_digests=(digest,),
        clearance=_rank(clearance), relay_for=frozenset(relay_for),
    )
    save(path, partners)
    return credentials


def update(path: Path, partner_id: str, *, clearance: str | None = None,
           relay_for: tuple[str, ...] | None = None, name: str | None = None,
           groups: tuple[str, ...] | None = None) -> Partner:
    """Change a partner's clearance, relayed identities, name or groups (None: unchanged).
    A running server applies the change within a second, as for any change of the file."""
    partners = load(path)
    if partner_id not in partners:
        raise ConfigError(f"no partner {partner_id!r}")
    current = partners[partner_id]
    partners[partner_id] = replace(
        current, clearance=current.clearance if clearance is None else _rank(clearance),
        relay_for=current.relay_for if relay_for is None else frozenset(relay_for),
        name=current.name if name is None else name,
        groups=current.groups if groups is None else groups)
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
    credentials, pw_hash, digest = _new_secrets(partner_id)
    partners[partner_id] = replace(partners[partner_id], password_hash=pw_hash,
                                   token_digests=(digest,))
    save(path, partners)
    return credentials


def remove(path: Path, partner_id: str) -> None:
    partners = load(path)
    if partners.pop(partner_id, None) is None:
        raise ConfigError(f"no partner {partner_id!r}")
    save(path, partners)
