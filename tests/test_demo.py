"""`taxii-exchange demo`: a realistic synthetic day written as feed files, loaded through the
normalisation path as `ingest` loads them, served over TAXII, and loaded again without change.

One demo directory for the module: the demo runs twice (`--no-serve`), then a real server over
that directory is read with taxii2-client using the credentials the second run printed.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import re
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from taxii2client.v21 import Collection, as_pages

from exchange import demo_data
from exchange import stix_extensions as ext
from exchange.cli import main
from exchange.collections import load_collections
from exchange.config import REPO_DIR, load_settings
from exchange.markings import HANDLING_EXTENSION
from exchange.normalize.base import TLP
from exchange.policy.partners import Credentials
from tests.conftest import Env, start_server

# (format, collection, records read): what the day holds and where each file goes.
FILES = [
    ("shadowserver-event4-sinkhole", "victim-notifications", 300),
    ("shadowserver-event4-honeypot-brute-force", "victim-notifications", 40),
    ("abusech-urlhaus-csv", "indicators", 40),
    ("abusech-feodo-json", "indicators", 24),
    ("abusech-threatfox-json", "indicators", 40),
    ("misp-event", "submissions", 10),  # 9 attributes and the event
    ("ioc-csv", "le-only", 14),
]
# (collection alias, the demo partner reading it)
COLLECTIONS = [("victim-notifications", "analyst"), ("indicators", "analyst"),
               ("submissions", "analyst"), ("le-only", "europol-ec3")]
SECRETS = (b"demo-password-", b"demo-user-")


@dataclass
class Demo:
    directory: Path
    first: str  # what the first run printed
    second: str  # what the second run printed
    stored: bytes  # the SQLite files' bytes after the second run


def _run(directory: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["demo", "--dir", str(directory), "--no-serve"]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    directory = tmp_path_factory.mktemp("demo")
    first, second = _run(directory), _run(directory)
    stored = b"".join(p.read_bytes() for p in sorted(directory.glob("demo.sqlite3*")))
    return Demo(directory, first, second, stored)


def _summaries(out: str) -> dict[str, tuple[str, dict[str, int]]]:
    """format -> (collection, counts) from the demo's summary lines."""
    found = {}
    for line in out.splitlines():
        head, arrow, rest = line.partition(" -> ")
        if not arrow:
            continue
        collection, _, counts = rest.strip().partition(" ")
        found[head.strip()] = (collection, {part.split()[0]: int(part.split()[1])
                                            for part in counts.split(", ")})
    return found


def _credentials(out: str) -> dict[str, Credentials]:
    """partner -> the fresh secrets printed in the demo's partner table."""
    found = {}
    table = out.split("token\n", 1)[1].split("\n\n", 1)[0]
    for line in table.splitlines():
        partner, _, _, password, token = line.split()
        found[partner] = Credentials(partner, password, token)
    return found


@pytest.fixture(scope="module")
def served(demo: Demo) -> dict[str, list[dict[str, Any]]]:
    """Every object version of each collection, read through taxii2-client from a real server
    over the demo directory, as the partner who may read it."""
    settings = load_settings(demo.directory / "config.yaml", environ={})
    credentials = _credentials(demo.second)
    by_alias = {c.alias: c for c in load_collections(settings)}
    server = start_server(Env(settings, credentials))
    pulled: dict[str, list[dict[str, Any]]] = {}
    try:
        for alias, partner in COLLECTIONS:
            found = by_alias[alias]  # taxii2-client wants the id in the URL
            collection = Collection(f"{server.url}{found.api_root}/collections/{found.id}/",
                                    user=partner, password=credentials[partner].password)
            pulled[alias] = [o for page in as_pages(collection.get_objects, per_request=1000,
                                                    version="all")
                             for o in page.get("objects", [])]
    finally:
        server.stop()
    return pulled


def test_the_day_is_written_as_feed_files_in_the_inbox(demo: Demo):
    files = demo_data.write_day(demo.directory / "again")
    assert [(f.format, f.collection) for f in files] == [(f, c) for f, c, _ in FILES]
    for item in files:
        written = demo.directory / "inbox" / item.path.name
        assert written.read_bytes() == item.path.read_bytes(), "the day is the same every run"


def test_each_file_is_loaded_with_one_summary_line(demo: Demo):
    summaries = _summaries(demo.first)
    assert list(summaries) == [name for name, _, _ in FILES]
    for name, collection, read in FILES:
        where, counts = summaries[name]
        assert where == collection, name
        assert counts["read"] == read and counts["stored"] > 0, (name, counts)
        assert "rejected" not in counts, (name, counts)  # printed only when some are
    assert "taxii-exchange --config" in demo.first and "ingest --format" in demo.first


def test_a_second_run_stores_nothing_new(demo: Demo, served: dict[str, list[dict[str, Any]]]):
    first, second = _summaries(demo.first), _summaries(demo.second)
    for name, collection, read in FILES:
        counts = second[name][1]
        assert second[name][0] == collection
        assert counts["read"] == read and counts["stored"] == 0, (name, counts)
        produced = sum(first[name][1].get(k, 0) for k in ("stored", "unchanged", "kept"))
        assert counts["unchanged"] + counts.get("kept", 0) == produced, (name, counts)
    for alias, _ in COLLECTIONS:  # every stored version is served, and no other
        stored = sum(first[name][1]["stored"] for name, collection, _ in FILES
                     if collection == alias)
        assert len(served[alias]) == stored, alias
    assert _credentials(demo.first)["analyst"] != _credentials(demo.second)["analyst"]


def _types(objects: list[dict[str, Any]]) -> Counter[str]:
    return Counter(o["type"] for o in objects)


def test_victim_notifications_hold_sightings_of_victims_never_indicators(
        served: dict[str, list[dict[str, Any]]]):
    objects = served["victim-notifications"]
    types = _types(objects)
    assert {"sighting", "observed-data", "ipv4-addr", "ipv6-addr", "network-traffic",
            "malware", "attack-pattern", "identity", "report"} <= set(types)
    # The payloads the honeypot's attackers fetched are suspect infrastructure; the victims
    # (the attacking machines, the sinkholed bots) are never indicated.
    assert all(ext.data_subject(o) == "suspect-infrastructure"
               for o in objects if o["type"] in ("indicator", "infrastructure"))
    by_id = {o["id"]: o for o in objects}
    victims = {f"[{by_id[r]['type']}:value = '{by_id[r]['value']}']"
               for o in objects if ext.data_subject(o) == "victim" for r in o["object_refs"]
               if by_id[r]["type"] in ("ipv4-addr", "ipv6-addr")}
    assert not [o for o in objects if o.get("pattern") in victims]
    assert types["sighting"] == 300 + 40  # one per sinkhole and honeypot row
    brute_force = next(o for o in objects if o["type"] == "attack-pattern")
    assert brute_force["name"] == "password brute forcing"
    assert all(ext.data_subject(o) == "victim"
               for o in objects if o["type"] == "observed-data")


def test_cybercrime_indicators_are_suspect_infrastructure_under_tlp_clear(
        served: dict[str, list[dict[str, Any]]]):
    objects = served["indicators"]
    types = _types(objects)
    assert {"indicator", "infrastructure", "malware", "relationship", "url", "ipv4-addr",
            "ipv6-addr", "domain-name", "file", "report", "identity"} <= set(types)
    indicators = [o for o in objects if o["type"] == "indicator"]
    assert all(o["object_marking_refs"] == [TLP["clear"]] for o in indicators)
    assert any("valid_until" in o for o in indicators)  # offline URLs and C2 servers
    sources = {o["name"] for o in objects if o["type"] == "identity"
               and o["identity_class"] == "organization"}
    assert sources == {"abuse.ch URLhaus", "abuse.ch Feodo Tracker", "abuse.ch ThreatFox"}


def test_partner_submissions_hold_the_misp_event_as_a_report(
        served: dict[str, list[dict[str, Any]]]):
    objects = served["submissions"]
    by_id = {o["id"]: o for o in objects}
    report = next(o for o in objects if o["type"] == "report")
    assert report["name"] == "Pikabot loader campaign: C2 servers and delivery"
    assert by_id[report["created_by_ref"]]["name"] == demo_data.PARTNER
    assert all(ref in by_id for ref in report["object_refs"])
    types = _types(objects)
    assert types["indicator"] >= 6 and types["observed-data"] == 2  # the two not to_ids
    assert all(TLP["amber"] in o["object_marking_refs"]
               for o in objects if o["type"] in ("indicator", "report"))


def test_law_enforcement_only_is_tlp_red_with_a_handling_code(
        served: dict[str, list[dict[str, Any]]]):
    objects = served["le-only"]
    definitions = {o["id"] for o in objects if o["type"] == "extension-definition"}
    assert HANDLING_EXTENSION in definitions
    indicators = [o for o in objects if o["type"] == "indicator"]
    assert len(indicators) == 14
    assert all(o["object_marking_refs"] == [TLP["red"]] for o in indicators)
    assert all(o["extensions"][HANDLING_EXTENSION]["handling_codes"] == list(demo_data.HANDLING)
               for o in indicators)
    assert all(ext.fields_of(o, "ioc-csv") == {"case": "CASE-2026-0815"} for o in indicators)


def test_no_honeypot_credential_is_stored(demo: Demo):
    honeypot = next((demo.directory / "inbox").glob("*honeypot*")).read_bytes()
    assert all(secret in honeypot for secret in SECRETS)  # the input has them
    assert demo.stored and not [s for s in SECRETS if s in demo.stored]


# -- who may read and write where ------------------------------------------------------------

def _rights(out: str) -> dict[str, tuple[str, str]]:
    """partner -> (reads, writes) from the demo's rights table."""
    table = out.split("may read and write (API-ROOT/COLLECTION):\n\n", 1)[1].split("\n\n")[0]
    rows = [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()[1:]]
    return {partner: (reads, writes) for partner, reads, writes in rows}


INDICATORS, SUBMISSIONS = "cybercrime/indicators", "cybercrime/submissions"
VICTIMS, LE_ONLY = "cybercrime/victim-notifications", "trusted/le-only"


@pytest.mark.parametrize(("partner", "reads", "writes"), [
    pytest.param("europol-ec3", [INDICATORS, LE_ONLY], [SUBMISSIONS, LE_ONLY], id="eu-le"),
    pytest.param("us-agency", [INDICATORS, LE_ONLY], [SUBMISSIONS, LE_ONLY], id="us-le"),
    pytest.param("cert-eu", [INDICATORS, VICTIMS], [], id="a CERT only reads"),
    pytest.param("analyst", [INDICATORS, SUBMISSIONS, VICTIMS], [INDICATORS, SUBMISSIONS, VICTIMS],
                 id="the analyst"),
    pytest.param("feed-provider", [], [SUBMISSIONS], id="a feed provider only pushes"),
])
def test_the_demo_says_who_may_read_and_write_where(demo: Demo, partner: str, reads: list[str],
                                                    writes: list[str]):
    assert _rights(demo.first)[partner] == (", ".join(reads) or "-", ", ".join(writes) or "-")


# -- the port ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _demo_process(directory: Path, port: int) -> Iterator[tuple[str, int]]:
    """`python -m exchange demo --port PORT` until its server has started: (what it printed,
    the port of the URLs it printed)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "exchange", "demo", "--dir", str(directory), "--port", str(port)],
        cwd=REPO_DIR, env={**environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()],
                              daemon=True)
    reader.start()
    try:
        out = ""
        while "Application startup complete" not in out:
            try:  # a bound on a hang, not a timed assertion
                out += lines.get(timeout=300)
            except queue.Empty:
                raise AssertionError(f"the demo did not start serving:\n{out}") from None
        [printed] = re.findall(r"a browser at http://127\.0\.0\.1:(\d+)/ui/", out)
        yield out, int(printed)
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=30)
        process.stdout.close()


@pytest.mark.parametrize("taken", [pytest.param(False, id="the port asked for"),
                                   pytest.param(True, id="a taken port: another, said so")])
def test_the_demo_prints_the_urls_of_the_port_it_serves_on(tmp_path: Path, taken: bool):
    with contextlib.ExitStack() as stack:
        blocker = stack.enter_context(socket.socket())
        blocker.bind(("127.0.0.1", 0))
        port = blocker.getsockname()[1]
        if taken:
            blocker.listen()
        else:
            blocker.close()  # free again, and not one another test is likely to pick
        out, serving = stack.enter_context(_demo_process(tmp_path / "demo", port))
        assert (serving != port) is taken
        assert (f"Port {port} is taken" in out) is taken
        assert f"serves on port {serving} instead" in out if taken else "taken" not in out
        urls = re.findall(r"http://127\.0\.0\.1:(\d+)/", out.split("\nTry:\n", 1)[1])
        assert len(urls) == 4 and set(urls) == {str(serving)}
        assert load_settings(tmp_path / "demo" / "config.yaml", environ={}).port == serving
        password = _credentials(out)["analyst"].password
        answer = httpx.get(f"http://127.0.0.1:{serving}/taxii2/", auth=("analyst", password),
                           headers={"Accept": "application/taxii+json;version=2.1"})
        assert answer.status_code == 200 and answer.json()["default"]
