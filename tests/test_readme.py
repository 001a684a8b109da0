"""The README's first steps work as pasted: its curl lines run (with real curl, through bash)
against a real server with the demo's collections and the demo analyst's credentials, the
example objects it pushes are accepted, and its taxii2-client example's URL is one
taxii2-client takes (and the alias URL is the one it refuses, as the README says)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import stix2
import yaml
from taxii2client.exceptions import ValidationError
from taxii2client.v21 import Collection, as_pages

from exchange.config import REPO_DIR, load_settings
from exchange.demo import DEMO_PARTNERS, EXAMPLE_OBJECTS, demo_identity
from exchange.policy import partners
from tests.conftest import Env, LiveServer, start_server

README = (REPO_DIR / "README.md").read_text(encoding="utf-8")
DEMO_URL = "http://127.0.0.1:8000/"
ACCEPT = "H='Accept: application/taxii+json;version=2.1'"


def readme_curl_lines() -> list[str]:
    """Each curl command in the README's indented examples, continuation lines joined."""
    commands, current = [], ""
    for line in README.splitlines():
        text = line.strip()
        if current:
            current += " " + text.removesuffix("\\").strip()
        elif line.startswith("    ") and text.startswith("curl "):
            current = text.removesuffix("\\").strip()
        if current and not text.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


CURL_LINES = readme_curl_lines()


def _url(command: str) -> str:
    return next(word.strip("'\"") for word in command.split() if "://" in word)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The demo's collections and partners (analyst and feed-provider, with the demo's groups
    and identities) on a real server, over an empty store."""
    directory = tmp_path_factory.mktemp("readme")
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({
        "store_path": "store.sqlite3", "partners_file": "partners.yaml",
        "collections_dir": str(REPO_DIR / "collections")}))
    settings = load_settings(config, environ={})
    credentials = {pid: partners.add(settings.partners_file, pid, name, groups,
                                     clearance=clearance, identity=demo_identity(pid))
                   for pid, name, groups, clearance in DEMO_PARTNERS
                   if pid in ("analyst", "feed-provider")}
    server = start_server(Env(settings, credentials))
    yield server
    server.stop()


def run_as_pasted(server: LiveServer, command: str, partner: str = "analyst"
                  ) -> subprocess.CompletedProcess[str]:
    """Run a README line in bash from the repository's folder, after the README's `H=` line,
    with the placeholders filled in and curl failing on an HTTP error."""
    secrets = server.env.credentials[partner]
    line = (command.replace("analyst:PASSWORD", f"{partner}:{secrets.password}")
            .replace("TOKEN", secrets.token).replace(DEMO_URL, server.url))
    script = f'{ACCEPT}\ncurl() {{ command curl --fail-with-body -sS "$@"; }}\n{line}\n'
    return subprocess.run(["bash", "-c", script], cwd=REPO_DIR, capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_readme_has_the_lines_this_file_runs():
    assert ACCEPT in README
    assert len(CURL_LINES) == 6 and all(DEMO_URL in line for line in CURL_LINES)
    assert any("--data @examples/objects.json" in line for line in CURL_LINES)


@pytest.mark.parametrize("command", [pytest.param(c, id=_url(c).removeprefix(DEMO_URL))
                                     for c in CURL_LINES])
def test_each_readme_curl_line_works_as_pasted(demo_server: LiveServer, command: str):
    done = run_as_pasted(demo_server, command)
    assert done.returncode == 0, (done.stdout, done.stderr)
    if _url(command).endswith("/metrics"):  # Prometheus text (no metrics_token set here)
        assert "taxii_exchange_requests_total{" in done.stdout
        return
    answer: dict[str, Any] = orjson.loads(done.stdout)
    if "--data" in command:  # the push: every example object accepted
        assert answer["status"] == "complete", answer
        assert answer["success_count"] == answer["total_count"] == \
            len(orjson.loads(EXAMPLE_OBJECTS.read_bytes())["objects"])
        assert answer["failure_count"] == 0, answer


@pytest.mark.parametrize("command", [pytest.param(c, id=_url(c).removeprefix(DEMO_URL))
                                     for c in CURL_LINES if "[" in _url(c)])
def test_a_readme_url_with_brackets_is_given_to_curl_with_g(demo_server: LiveServer,
                                                            command: str):
    """Without -g curl takes `[type]` for a URL range and sends nothing ("bad range")."""
    assert command.startswith("curl -g ")
    done = run_as_pasted(demo_server, command.replace("curl -g ", "curl ", 1))
    assert done.returncode == 3 and "bad range in URL" in done.stderr


def test_the_example_objects_are_refused_for_a_partner_they_do_not_name(
        demo_server: LiveServer):
    """Only the analyst may push them: each object's created_by_ref is its identity."""
    push = next(c for c in CURL_LINES if "--data" in c)
    done = run_as_pasted(demo_server, push, partner="feed-provider")
    answer = orjson.loads(done.stdout)
    objects = orjson.loads(EXAMPLE_OBJECTS.read_bytes())["objects"]
    observables = [o for o in objects if "created" not in o]  # no author to check
    assert answer["status"] == "complete", answer
    assert answer["success_count"] == len(observables) == 2, answer
    reasons = {f["message"] for f in answer["failures"]}
    assert all("created_by_ref" in reason for reason in reasons), reasons


def test_the_example_objects_are_synthetic_stix_21():
    envelope = orjson.loads(EXAMPLE_OBJECTS.read_bytes())
    for obj in envelope["objects"]:
        stix2.parse(obj)
    text = EXAMPLE_OBJECTS.read_text()
    assert set(re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", text)) <= {"198.51.100.23"}
    domains = set(re.findall(r"'([a-z0-9.-]+\.[a-z]+)'", text))
    assert domains and all(d.endswith(".example") for d in domains)


def _python_example() -> str:
    return README.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_taxii2_client_example_uses_the_collection_id_url(demo_server: LiveServer):
    example = _python_example()
    [url] = re.findall(r'Collection\(\s*"([^"]+)"', example)
    url = url.replace(DEMO_URL, demo_server.url)
    password = demo_server.env.credentials["analyst"].password
    collection = Collection(url, user="analyst", password=password)
    assert collection.title == "Cybercrime indicators"
    assert list(as_pages(collection.get_objects, per_request=1000)) != []
    alias = Collection(f"{demo_server.url}cybercrime/collections/indicators/", user="analyst",
                       password=password)
    with pytest.raises(ValidationError, match="does not match the url"):
        alias.get_objects()
    assert "refuses an alias URL" in example

