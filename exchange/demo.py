"""`taxii-exchange demo`: a populated server with fresh partner credentials, for a first look.

The demo writes a realistic synthetic day of feed files into `<dir>/inbox/` (see
`demo_data`) and loads each one through the normalisation path, exactly as `taxii-exchange
ingest` does, so a new user sees data built the way real data arrives. The files are the same
on every run, so running the demo again stores nothing new; only the credentials are fresh.
"""

from __future__ import annotations

import errno
import socket
import uuid
from pathlib import Path

import yaml

from . import demo_data
from .collections import load_collections
from .config import REPO_DIR, Settings, load_settings
from .errors import ConfigError
from .normalize.base import Tally
from .normalize.cli import load
from .policy import partners
from .policy.access import decide

# (id, name, groups, clearance): what each sees differs, see collections/*.yaml.
DEMO_PARTNERS = [
    ("europol-ec3", "Europol EC3 (demo)", ("eu-le",), "red"),
    ("us-agency", "US agency (demo)", ("us-le",), "amber+strict"),
    ("cert-eu", "National CERT (demo)", ("cert",), "green"),
    ("analyst", "Exchange analyst (demo)", ("analysts",), "red"),
    ("feed-provider", "Feed provider (demo)", ("feed-providers",), "clear"),
]
# The example objects a newcomer pushes (examples/objects.json) carry the analyst's identity as
# their created_by_ref, and a partner may push only under its own: so demo identities are the
# same on every run, unlike the secrets.
EXAMPLE_OBJECTS = REPO_DIR / "examples" / "objects.json"


def demo_identity(partner_id: str) -> str:
    return f"identity--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://demo.exchange.example/{partner_id}')}"


def run_demo(directory: Path, *, port: int, serve_after: bool) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.yaml"
    settings = _write_config(config, port)
    # The port is taken before the (slow) load, so the URLs printed below are the ones served.
    listener, taken = _listen(settings.host, settings.port) if serve_after else (None, False)
    if listener is not None and listener.getsockname()[1] != settings.port:
        settings = _write_config(config, listener.getsockname()[1])
    settings.partners_file.unlink(missing_ok=True)  # fresh credentials on every demo start
    created = [partners.add(settings.partners_file, pid, name, groups, clearance=clearance,
                            identity=demo_identity(pid))
               for pid, name, groups, clearance in DEMO_PARTNERS]

    inbox = directory / "inbox"
    print(f"\ntaxii-exchange demo: a synthetic day of feed files in {inbox}, each loaded as\n"
          f"`taxii-exchange --config {config} ingest --format FORMAT --collection COLLECTION "
          "FILE` does:\n")
    tallies = load_day(settings, inbox)
    stored = sum(t.stored for t in tallies)
    unchanged = sum(t.unchanged + t.kept for t in tallies)
    print(f"\n{stored} objects stored, {unchanged} unchanged, in {settings.store_path}\n")

    print("Demo partners (fresh secrets, shown once):\n")
    print(f"  {'partner':<15} {'groups':<16} {'clearance':<13} {'password':<26} token")
    for (pid, _, groups, clearance), cred in zip(DEMO_PARTNERS, created, strict=True):
        print(f"  {pid:<15} {','.join(groups):<16} {clearance:<13} {cred.password:<26} "
              f"{cred.token}")
    print("\n" + rights_table(settings))
    base = f"http://{_url_host(settings.host)}:{settings.port}"
    if taken:
        print(f"\nPort {port} is taken (another demo or server still running?): this demo "
              f"serves on port {settings.port} instead.")
    analyst = created[3]
    print("\nTry:\n"
          f"  curl -u analyst:{analyst.password} -H 'Accept: application/taxii+json;version=2.1' "
          f"{base}/taxii2/\n"
          f"  curl -g -H 'Authorization: Bearer {analyst.token}' -H 'Accept: "
          f"application/taxii+json;version=2.1' "
          f"'{base}/cybercrime/collections/indicators/objects/?limit=5&match[type]=indicator'\n"
          f"  curl -u analyst:{analyst.password} -H 'Accept: application/taxii+json;version=2.1' "
          "-H 'Content-Type: application/taxii+json;version=2.1' "
          f"--data @{EXAMPLE_OBJECTS} {base}/cybercrime/collections/submissions/objects/\n"
          f"  a browser at {base}/ui/ (sign in as analyst with the password above)\n")
    if serve_after:
        from .server import serve

        serve(settings, sock=listener)
    return 0


def rights_table(settings: Settings) -> str:
    """Who may read and who may write each collection (API-ROOT/ALIAS), as the server decides
    it: a newcomer pushing where a partner may not write gets a 403 it cannot explain."""
    found = sorted(load_collections(settings), key=lambda c: (c.api_root, c.alias or c.id))
    known = partners.load(settings.partners_file)
    rows = []
    for pid, *_ in DEMO_PARTNERS:
        rights = [(f"{c.api_root}/{c.alias or c.id}", decide(known[pid], c)) for c in found]
        rows.append((pid, ", ".join(name for name, a in rights if a.read) or "-",
                     ", ".join(name for name, a in rights if a.write) or "-"))
    width = max(len(reads) for _, reads, _ in rows)
    lines = ["What each demo partner may read and write (API-ROOT/COLLECTION):", "",
             f"  {'partner':<15} {'reads':<{width}}  writes"]
    lines += [f"  {pid:<15} {reads:<{width}}  {writes}" for pid, reads, writes in rows]
    return "\n".join(lines)


def _write_config(config: Path, port: int) -> Settings:
    config.write_text(yaml.safe_dump({
        "store_path": "demo.sqlite3", "partners_file": "partners.yaml", "port": port,
        "collections_dir": str(REPO_DIR / "collections"),
    }))
    return load_settings(config)


def _listen(host: str, port: int) -> tuple[socket.socket, bool]:
    """A listening socket on `port`, or on a free port when it is taken (True)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for attempt, taken in ((port, False), (0, True)):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, attempt))
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or attempt == 0:
                raise ConfigError(f"cannot listen on {host}:{attempt}: {exc.strerror}") from None
            continue
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock, taken
    raise AssertionError("unreachable: port 0 is always free")


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def load_day(settings: Settings, inbox: Path) -> list[Tally]:
    """Write the demo day into `inbox` and load each file as `ingest` does (rejects, if any,
    go to standard error), printing one summary line per file."""
    tallies = []
    for item in demo_data.write_day(inbox):
        tally = load(settings, item.format, item.collection, [item.path], options=item.options,
                     source=item.source, tlp=item.tlp, handling=item.handling)
        print(summary(item, tally))
        tallies.append(tally)
    return tallies


def summary(item: demo_data.DemoFile, tally: Tally) -> str:
    """One loaded file: its format, the collection and what was read and stored."""
    line = (f"  {item.format:<40} -> {item.collection:<20} read {tally.read:>4}, "
            f"stored {tally.stored:>4}, unchanged {tally.unchanged:>4}")
    for name in ("kept", "rejected"):
        count = getattr(tally, name)
        line += f", {name} {count}" if count else ""
    return line
