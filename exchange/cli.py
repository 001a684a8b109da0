"""The `taxii-exchange` command: serve, demo, partners, collections, ingest, formats, sync,
audit, purge, store."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config import load_settings
from .errors import ConfigError
from .model import TLP_RANKS

TLP_CHOICES = list(TLP_RANKS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taxii-exchange",
                                     description="STIX 2.1 / TAXII 2.1 threat-exchange server")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", help="YAML settings file (also EXCHANGE_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the TAXII 2.1 server")
    serve.add_argument("--host", help="listen address (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default from settings: 8000)")
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    serve.add_argument("--no-access-log", action="store_true", help="do not log each request")
    serve.add_argument("--log-format", choices=["text", "json"],
                       help="request log lines: text, or one JSON object each with the "
                       "partner id and a request id (default from settings: text)")
    serve.add_argument("--max-request-head-bytes", type=int, metavar="N",
                       help="the HTTP parser's bound on a request line and headers (default "
                       "from settings: 65536)")
    serve.add_argument("--request-timeout", type=float, metavar="SECONDS",
                       help="time for a request to arrive (default from settings: 60)")
    serve.add_argument("--keep-alive", type=int, metavar="SECONDS",
                       help="idle keep-alive connections close after this (default from "
                       "settings: 5)")
    serve.add_argument("--tls-certificate", metavar="PEM",
                       help="serve HTTPS with this certificate (chain)")
    serve.add_argument("--tls-key", metavar="PEM", help="its private key")
    serve.add_argument("--tls-client-ca", metavar="PEM",
                       help="ask clients for a certificate issued by this CA")
    serve.add_argument("--tls-client-certificate", choices=["optional", "required"],
                       help="with --tls-client-ca: refuse clients without one at the "
                       "handshake (required) or not (optional, the default)")

    demo = commands.add_parser("demo", help="serve demo data with freshly generated partners")
    demo.add_argument("--dir", default=".demo", help="where demo state lives (default .demo)")
    demo.add_argument("--port", type=int, default=8000,
                      help="listen port (default 8000; when it is taken the demo says so and "
                      "serves on a free one, printing it)")
    demo.add_argument("--no-serve", action="store_true", help="prepare the demo, do not serve")

    manage = commands.add_parser("partners", help="manage the partners file")
    manage.add_argument("--file", help="partners file (default from settings)")
    actions = manage.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a partner; prints its new password and API token")
    add.add_argument("id")
    add.add_argument("--name", required=True, help="display name")
    add.add_argument("--group", action="append", default=[], help="group (repeatable)")
    add.add_argument("--identity", help="STIX identity id (default: a new one)")
    add.add_argument("--clearance", choices=TLP_CHOICES, default="clear",
                     help="highest TLP it may receive (default clear)")
    add.add_argument("--relay-for", action="append", default=[], metavar="IDENTITY",
                     help="an identity it may push objects for (repeatable)")
    add.add_argument("--admin", action="store_true",
                     help="an administrator: may see the audit trail and federation status on "
                     "the analyst pages")
    change = actions.add_parser("set", help="change a partner's clearance, relays, name or "
                                "groups (credentials stay)")
    change.add_argument("id")
    change.add_argument("--clearance", choices=TLP_CHOICES,
                        help="highest TLP it may receive")
    change.add_argument("--relay-for", action="append", metavar="IDENTITY",
                        help="an identity it may push objects for (repeatable; replaces the "
                        "list)")
    change.add_argument("--no-relay", action="store_true", help="it relays for no one")
    change.add_argument("--name", help="display name")
    change.add_argument("--group", action="append", help="group (repeatable; replaces the list)")
    change.add_argument("--cert-subject", action="append", metavar="RFC4514",
                        help="a TLS client certificate subject that is this partner, e.g. "
                        "CN=connector.cert.example,O=CERT (repeatable; replaces the list)")
    change.add_argument("--cert-fingerprint", action="append", metavar="SHA256",
                        help="a TLS client certificate's SHA-256 fingerprint (repeatable; "
                        "replaces the list)")
    change.add_argument("--no-cert", action="store_true",
                        help="no client certificate is this partner")
    change.add_argument("--admin", action=argparse.BooleanOptionalAction, default=None,
                        help="make it an administrator (--no-admin: no longer one)")
    actions.add_parser("list", help="list partners (never secrets)")
    rotate = actions.add_parser("rotate", help="replace a partner's password and token")
    rotate.add_argument("id")
    remove = actions.add_parser("remove", help="remove a partner")
    remove.add_argument("id")
    token = actions.add_parser("token", help="a partner's API tokens: add, revoke, list")
    token_actions = token.add_subparsers(dest="token_action", required=True)
    token_add = token_actions.add_parser("add", help="one more API token for a partner (its "
                                         "others keep working); prints it once")
    token_add.add_argument("id")
    token_add.add_argument("--label", help="a name for it, e.g. the connector that uses it")
    token_add.add_argument("--expires", metavar="90d|DATE",
                           help="refused from then on: days from now (90d) or a date "
                           "(2027-03-01, from midnight UTC) or an RFC 3339 time")
    token_revoke = token_actions.add_parser("revoke", help="revoke one API token at once")
    token_revoke.add_argument("id")
    token_revoke.add_argument("which", metavar="LABEL|PREFIX",
                              help="its label, or its first characters as `token list` shows "
                              "them (or the whole token)")
    token_list = token_actions.add_parser("list", help="API tokens: label, created, expires, "
                                          "last used (never the secret)")
    token_list.add_argument("id", nargs="?", help="only this partner's")

    ingest = commands.add_parser("ingest", help="normalise input files into a collection")
    ingest.add_argument("--format", required=True, help="input format (see `formats`)")
    ingest.add_argument("--collection", required=True,
                        help="collection id, alias, or API-ROOT/ALIAS")
    ingest.add_argument("--source", help="name of the reporting source (default: per format)")
    ingest.add_argument("--tlp", choices=["clear", "green", "amber", "amber+strict", "red"],
                        help="TLP 2.0 marking of what is produced (default: per format)")
    ingest.add_argument("--handling", action="append", default=[], metavar="CODE",
                        help="law-enforcement handling code(s) H0-H3 on what is produced, "
                        "e.g. H2 or H1,H2 (the handling extension; repeatable)")
    ingest.add_argument("--handling-conditions", metavar="TEXT",
                        help="the restrictions of handling code H3, in words")
    ingest.add_argument("--reliability", choices=["A", "B", "C", "X"],
                        help="source reliability on what is produced")
    ingest.add_argument("--accuracy", choices=["1", "2", "3", "4"],
                        help="information accuracy on what is produced")
    ingest.add_argument("--confidence", type=int, help="confidence 0-100 on what is produced "
                        "(default: per format)")
    ingest.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a format setting (see `formats`; repeatable)")
    ingest.add_argument("--options", metavar="FILE", help="format settings from a YAML file "
                        "(e.g. a column mapping); --option overrides")
    ingest.add_argument("--no-progress", action="store_true", help="no progress line")
    ingest.add_argument("--rejects", help="append rejected rows here as JSON lines "
                        "(default: standard error)")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    commands.add_parser("formats", help="list input formats and their fields")

    sync = commands.add_parser("sync", help="sync with the peers of the peers file once, or "
                               "show how their syncs went")
    sync.add_argument("what", nargs="?", choices=["run", "status"], default="run",
                      help="run (default) or status")
    sync.add_argument("--peer", action="append", help="only this peer (repeatable)")
    sync.add_argument("--direction", choices=["pull", "push"], help="only this direction")
    sync.add_argument("--restart", action="store_true",
                      help="forget the bookmarks first: pull or push everything again (after "
                      "raising a peer's clearance, say); what is already there stays once")

    purge = commands.add_parser("purge", help="delete object versions past their "
                                "collection's retention")
    purge.add_argument("--collection", action="append",
                       help="only this collection: id, alias, or API-ROOT/ALIAS (repeatable)")
    purge.add_argument("--dry-run", action="store_true",
                       help="say what would be deleted, delete nothing")

    listing = commands.add_parser("collections", help="list, add or check collection files")
    collection_actions = listing.add_subparsers(dest="action", required=True)
    collection_actions.add_parser("list", help="id, alias, API root, title, who reads and "
                                  "writes")
    new = collection_actions.add_parser("add", help="write a new collection file with a new "
                                        "id; a running server serves it from its next request")
    new.add_argument("--alias", required=True, help="its name in URLs, unique in its API root")
    new.add_argument("--title", required=True)
    new.add_argument("--description")
    new.add_argument("--api-root", help="default: the default API root")
    new.add_argument("--read", action="append", default=[], metavar="PRINCIPAL",
                     help="group:NAME or partner:ID that may read (repeatable; default nobody)")
    new.add_argument("--write", action="append", default=[], metavar="PRINCIPAL",
                     help="group:NAME or partner:ID that may push (repeatable; default nobody)")
    new.add_argument("--default-marking", choices=TLP_CHOICES, default="amber",
                     help="TLP of objects pushed without one (default amber)")
    collection_actions.add_parser("check", help="check every collection file; exit 1 naming "
                                  "each file and key that is wrong")

    store = commands.add_parser("store", help="copy the store to another, or back it up")
    store_actions = store.add_subparsers(dest="action", required=True)
    copy = store_actions.add_parser("copy", help="copy everything (object versions with "
                                    "their date_added, statuses, pending pushes, the audit "
                                    "trail, state) to another store, then verify the copy; "
                                    "run it again to go on after an interruption")
    copy.add_argument("--from", dest="source", required=True, metavar="URL",
                      help="sqlite:///PATH (relative to the current directory) or mongodb://...")
    copy.add_argument("--to", dest="target", required=True, metavar="URL",
                      help="a new, empty store (or the target of this copy, to go on)")
    copy.add_argument("--page-size", type=int, default=5000, metavar="N",
                      help="records per page, each restored atomically (default 5000)")
    backup = store_actions.add_parser("backup", help="back up a SQLite store to a file while "
                                      "it serves (MongoDB: use mongodump)")
    backup.add_argument("path", metavar="PATH", help="the backup file (replaced if present)")
    backup.add_argument("--from", dest="source", metavar="URL",
                        help="this store instead of the configured one (sqlite:///PATH)")

    trail = commands.add_parser("audit", help="check or export the audit trail")
    audit_actions = trail.add_subparsers(dest="action", required=True)
    verify = audit_actions.add_parser("verify", help="check that no record was edited, "
                                      "inserted or deleted; print the last record's hash")
    verify.add_argument("--anchor", metavar="SEQ:HASH",
                        help="a record's number and hash noted earlier (from a previous "
                        "verify): it must still be there, unchanged")
    export = audit_actions.add_parser("export", help="write records as JSON lines")
    export.add_argument("--since", help="only records made at or after this time "
                        "(ISO 8601, UTC unless it says otherwise)")
    export.add_argument("--partner", help="only this partner's records")
    export.add_argument("--out", help="write here instead of standard output")
    prune = audit_actions.add_parser("prune", help="delete the oldest records (export them "
                                     "first); the chain goes on from the last one deleted")
    prune.add_argument("--before", required=True, help="records made before this time "
                       "(ISO 8601, UTC unless it says otherwise)")
    prune.add_argument("--dry-run", action="store_true", help="say how many, delete nothing")
    return parser

def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(Path(args.dir), port=args.port, serve_after=not args.no_serve)
        settings = load_settings(args.config)
        if args.command == "partners":
            from .policy.partners_command import run

            return run(args, settings)
        if args.command in ("audit", "purge"):
            from . import audit_command

            return (audit_command.audit if args.command == "audit" else
                    audit_command.purge)(args, settings)
        if args.command == "collections":
            from . import collections_command

            return collections_command.run(args, settings)
        if args.command == "store":
            from . import store_command

            return store_command.run(args, settings)
        if args.command == "sync":
            from .federation.command import sync

            return sync(args, settings)
        if args.command in ("ingest", "formats"):
            from .normalize import cli as normalize_cli

            if args.command == "formats":
                return normalize_cli.formats()
            return normalize_cli.ingest(args, settings)
        # Through the environment, so every worker process builds the same settings.
        if args.host:
            os.environ["EXCHANGE_HOST"] = args.host
        if args.port:
            os.environ["EXCHANGE_PORT"] = str(args.port)
        for option, key in (("log_format", "LOG_FORMAT"),
                            ("max_request_head_bytes", "MAX_REQUEST_HEAD_BYTES"),
                            ("request_timeout", "REQUEST_TIMEOUT_SECONDS"),
                            ("keep_alive", "KEEP_ALIVE_SECONDS")):
            if getattr(args, option) is not None:
                os.environ[f"EXCHANGE_{key}"] = str(getattr(args, option))
        if args.config:
            os.environ["EXCHANGE_CONFIG"] = str(Path(args.config).resolve())
        for flag in ("tls_certificate", "tls_key", "tls_client_ca"):
            if getattr(args, flag):
                os.environ[f"EXCHANGE_{flag.upper()}"] = str(Path(getattr(args, flag)).resolve())
        if args.tls_client_certificate:
            os.environ["EXCHANGE_TLS_CLIENT_CERTIFICATE"] = args.tls_client_certificate
        from .server import serve

        serve(load_settings(), workers=args.workers, access_log=not args.no_access_log)
    except ConfigError as exc:
        print(f"taxii-exchange: {exc}", file=sys.stderr)
        return 2
    return 0
