"""The peers file: other TAXII 2.1 servers this node pulls from and pushes to.

A peer is also a partner (same name in the partners file): its identity, the identities it
may relay, its clearance and the collections it may read and write come from there, so what
a peer receives is decided by the same policy as any partner's read. Secrets are never in
this file; they are read from the environment or a file when a sync runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..schemas import validate

PULL, PUSH = "pull", "push"


@dataclass(frozen=True, slots=True)
class PeerAuth:
    user: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def password(self) -> str | None:
        return _secret(self.password_env, self.password_file, "password")

    def token(self) -> str | None:
        return _secret(self.token_env, self.token_file, "token")


@dataclass(frozen=True, slots=True)
class Peer:
    name: str  # its partner id
    url: str
    local_collection: str
    directions: tuple[str, ...]  # pull and/or push
    collection: str | None = None  # the remote collection id, when `url` is not its URL
    api_root: str | None = None
    interval_seconds: float = 300.0
    page_size: int = 1000
    timeout_seconds: float = 60.0
    send_h2: bool = False
    auth: PeerAuth = field(default_factory=PeerAuth)
    ca_file: str | None = None


def load_peers(path: Path) -> dict[str, Peer]:
    """Every peer, by name; no file means no peers."""
    if not path.exists():
        return {}
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {"peers": []}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read peers: {exc}") from None
    validate("peers", document, str(path))
    found: dict[str, Peer] = {}
    for item in document["peers"]:
        if item["name"] in found:
            raise ConfigError(f"{path}: peer {item['name']!r} is listed twice")
        found[item["name"]] = _peer(item, path)
    return found


def _peer(item: dict[str, Any], path: Path) -> Peer:
    auth = PeerAuth(**item.get("auth", {}))
    if (auth.password_env or auth.password_file) and not auth.user:
        raise ConfigError(f"{path}: peer {item['name']!r}: a password needs a `user`")
    if bool(auth.cert_file) != bool(auth.key_file):
        raise ConfigError(f"{path}: peer {item['name']!r}: a client certificate needs both "
                          "cert_file and key_file")
    direction = item["direction"]
    return Peer(
        name=item["name"], url=item["url"], local_collection=item["local_collection"],
        directions=(PULL, PUSH) if direction == "both" else (direction,),
        collection=item.get("collection"), api_root=item.get("api_root"),
        interval_seconds=float(item.get("interval_seconds", 300)),
        page_size=int(item.get("page_size", 1000)),
        timeout_seconds=float(item.get("timeout_seconds", 60)),
        send_h2=bool(item.get("send_h2", False)), auth=auth, ca_file=item.get("ca_file"))


def _secret(variable: str | None, filename: str | None, what: str) -> str | None:
    if variable:
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"the peer's {what} is to come from ${variable}, which is not set")
        return value
    if filename:
        try:
            return Path(filename).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the peer's {what} from {filename}: {exc}") from None
    return None
