"""`taxii-exchange partners`: add, change, rotate, remove and list partners and their API
tokens. The file holds hashes only; each change is recorded in the audit trail of the store
the server uses, when there is one."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError
from ..model import TLP_NAMES
from . import partners


def run(args: argparse.Namespace, settings: Settings) -> int:
    code = _partners(args, settings)
    if args.action in ("add", "set", "rotate", "remove") or (
            args.action == "token" and args.token_action in ("add", "revoke")):
        _record_partners(settings, Path(args.file) if args.file else None)
    return code


def _print_credentials(credentials: partners.Credentials) -> None:
    print(f"partner:  {credentials.partner}")
    print(f"password: {credentials.password}")
    print(f"token:    {credentials.token}")
    print("These secrets are shown once; only their hashes are stored.")


def _partners(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file) if args.file else settings.partners_file
    if args.action == "add":
        _print_credentials(partners.add(path, args.id, args.name, tuple(args.group),
                                        args.identity, args.clearance, tuple(args.relay_for),
                                        admin=args.admin))
        print(f"clearance: {args.clearance}")
        if args.admin:
            print("administrator: yes")
    elif args.action == "set":
        relays = () if args.no_relay else \
            (tuple(args.relay_for) if args.relay_for is not None else None)
        certs: dict[str, tuple[str, ...] | None] = {
            "cert_subjects": () if args.no_cert else _optional(args.cert_subject),
            "cert_fingerprints": () if args.no_cert else _optional(args.cert_fingerprint)}
        changed = partners.update(path, args.id, clearance=args.clearance, relay_for=relays,
                                  name=args.name,
                                  groups=tuple(args.group) if args.group is not None else None,
                                  admin=args.admin, **certs)
        print(_line(changed))
    elif args.action == "rotate":
        _print_credentials(partners.rotate(path, args.id))
    elif args.action == "remove":
        partners.remove(path, args.id)
        print(f"removed {args.id}")
    elif args.action == "token":
        return _tokens(args, path, settings)
    else:
        print("id\tname\tgroups\tclearance\tidentity\trelays for\tadmin")
        for p in partners.load(path).values():
            print(_line(p))
    return 0


def _tokens(args: argparse.Namespace, path: Path, settings: Settings) -> int:
    if args.token_action == "add":
        made = partners.add_token(path, args.id, label=args.label, expires=args.expires)
        print(f"partner:  {made.partner}")
        print(f"token:    {made.token}")
        print(f"label:    {made.entry.label or '-'}")
        print(f"expires:  {made.entry.expires or 'never'}")
        print("The token is shown once; only its hash is stored. The partner's other tokens "
              "keep working until revoked.")
    elif args.token_action == "revoke":
        revoked = partners.revoke_token(path, args.id, args.which)
        print(f"revoked {args.id} {revoked.name} {revoked.label or ''}".rstrip())
    else:
        known = partners.load(path)
        if args.id and args.id not in known:
            raise ConfigError(f"no partner {args.id!r}")
        shown = [p for p in known.values() if not args.id or p.id == args.id]
        used = _last_used(settings, [t.sha256 for p in shown for t in p.tokens])
        now = datetime.now(UTC)
        print("partner\ttoken\tlabel\tcreated\texpires\tlast used\tstate")
        for p in shown:
            for t in p.tokens:
                print(f"{p.id}\t{t.name}\t{t.label or '-'}\t{t.created or '-'}\t"
                      f"{t.expires or 'never'}\t{used.get(t.sha256) or 'never'}\t"
                      f"{t.state(now)}")
    return 0


def _last_used(settings: Settings, digests: list[str]) -> dict[str, str | None]:
    """Last uses of these tokens: the server records them in its store (it never writes the
    partners file), whichever backend that is."""
    from ..store.factory import existing_store
    from .usage import last_used

    store = existing_store(settings)
    if store is None:
        return {}
    store.open()
    try:
        return {digest: last_used(store, digest) for digest in digests}
    finally:
        store.close()


def _record_partners(settings: Settings, other_file: Path | None) -> None:
    """A change to the server's partners leaves an audit record in its store, when it has
    one (a server starting over a new store records what it finds)."""
    if other_file and other_file.resolve() != settings.partners_file.resolve():
        return
    from .. import audit
    from ..store.factory import existing_store

    store = existing_store(settings)
    if store is None:
        return
    store.open()
    try:
        audit.reconcile(store, "partner", partners.load(settings.partners_file),
                        "partners command")
    finally:
        store.close()


def _optional(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values is not None else None


def _line(p: partners.Partner) -> str:
    return (f"{p.id}\t{p.name}\t{','.join(p.groups)}\t{TLP_NAMES[p.clearance]}\t"
            f"{p.identity}\t{','.join(sorted(p.relay_for))}\t{'yes' if p.admin else 'no'}")
