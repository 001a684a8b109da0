"""`taxii-exchange demo`: a populated server with fresh partner credentials, for a first look.

The demo writes a realistic synthetic day of feed files into `<dir>/inbox/` (see
`demo_data`) and loads each one through the normalisation path, exactly as `taxii-exchange
ingest` does, so a new user sees data built the way real data arrives. The files are the same
on every run, so running the demo again stores nothing new; only the credentials are fresh.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from . import demo_data
from .config import Settings, load_settings
from .normalize.base import Tally
from .normalize.cli import load
from .policy import partners

# (id, name, groups, clearance): what each sees differs, see collections/*.yaml.
DEMO_PARTNERS = [
    ("europol-ec3", "Europol EC3 (demo)", ("eu-le",), "red"),
    ("us-agency", "US agency (demo)", ("us-le",), "amber+strict"),
    ("cert-eu", "National CERT (demo)", ("cert",), "green"),
    ("analyst", "Exchange analyst (demo)", ("analysts",), "red"),
    ("feed-provider", "Feed provider (demo)", ("feed-providers",), "clear"),
]


def run_demo(directory: Path, *, port: int, serve_after: bool) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({
        "store_path": "demo.sqlite3", "partners_file": "partners.yaml", "port": port,
        "collections_dir": str(Path(__file__).resolve().parent.parent / "collections"),
    }))
    settings = load_settings(config)
    settings.partners_file.unlink(missing_ok=True)  # fresh credentials on every demo start
    created = [partners.add(settings.partners_file, pid, name, groups, clearance=clearance)
               for pid, name, groups, clearance in DEMO_PARTNERS]

    inbox = directory / "inbox"
    print(f"\ntaxii-exchange demo: a synthetic day of feed files in {inbox}, each loaded as\n"
          f"`taxii-exchange --config {config} ingest --format FORMAT --collection COLLECTION "
          "FILE` does:\n")
    tallies = load_day(settings, inbox)
    stored = sum(t.stored for t in tallies)
    unchanged = sum(t.unchanged + t.kept for t in tallies)
    print(f"\n{stored} objects stored, {unchanged} unchanged, in {settings.store_path}\n")

    base = f"http://127.0.0.1:{port}"
    print("Demo partners (fresh secrets, shown once):\n")
    print(f"  {'partner':<15} {'groups':<16} {'clearance':<13} {'password':<26} token")
    for (pid, _, groups, clearance), cred in zip(DEMO_PARTNERS, created, strict=True):
        print(f"  {pid:<15} {','.join(groups):<16} {clearance:<13} {cred.password:<26} "
              f"{cred.token}")
    analyst = created[3]
    print("\nTry:\n"
          f"  curl -u analyst:{analyst.password} -H 'Accept: application/taxii+json;version=2.1' "
          f"{base}/taxii2/\n"
          f"  curl -H 'Authorization: Bearer {analyst.token}' -H 'Accept: "
          f"application/taxii+json;version=2.1' "
          f"'{base}/cybercrime/collections/indicators/objects/?limit=5'\n"
          f"  a browser at {base}/ui/ (sign in as analyst with the password above)\n")
    if serve_after:
        from .server import serve

        serve(settings)
    return 0


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
