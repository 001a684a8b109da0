"""The work pages over HTTP against a real server: uploading a feed file through the one
ingest path (every format that reads a file, with its rejects), the refusals (no write right,
no CSRF token, too large), and the administrators' federation and audit pages."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exchange import audit
from exchange.config import load_settings
from exchange.normalize import PARSERS
from exchange.policy import partners
from exchange.store.sqlite import SQLiteStore
from tests.conftest import API_ROOT, Env, LiveServer, identity_of, start_server
from tests.fixtures.common import Sample
from tests.test_web import csrf, signed_in

SHARED = "0e5b0000-0000-4000-8000-0000000000a1"
LOOKOUT = "0e5b0000-0000-4000-8000-0000000000a2"  # the uploader may only read it
LIMIT = 64 * 1024
PARTNERS = {"uploader": (("uploaders",), "red", False), "reader": ((), "green", False),
            "root": ((), "red", True)}



def format_collection(format_name: str) -> str:
    """A collection of its own per format: what one file stores cannot meet another's."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://work.example/{format_name}"))


def write_work_env(directory: Path) -> Env:
    (directory / "collections").mkdir(parents=True)
    per_format = [{"id": format_collection(name), "api_root": API_ROOT, "alias": name,
                   "title": f"Uploads {name}", "read": ["group:uploaders"],
                   "write": ["group:uploaders"], "default_marking": "amber"}
                  for name in FILE_FORMATS]
    for item in ({"id": SHARED, "api_root": API_ROOT, "alias": "uploads", "title": "Uploads",
                  "read": ["group:uploaders", "partner:reader"],
                  "write": ["group:uploaders"], "default_marking": "amber"},
                 {"id": LOOKOUT, "api_root": API_ROOT, "alias": "lookout", "title": "Lookout",
                  "read": ["group:uploaders", "partner:reader"], "write": [],
                  "default_marking": "amber"}, *per_format):
        (directory / "collections" / f"{item['alias']}.yaml").write_text(yaml.safe_dump(item))
    (directory / "peers.yaml").write_text(yaml.safe_dump({"peers": [{
        "name": "us-node", "url": "https://taxii.us.example/api1/collections/"
        "0e5b0000-0000-4000-8000-0000000000ff/", "local_collection": "uploads",
        "direction": "pull", "auth": {"user": "eu-node", "password_env": "NOT_SET"}}]}))
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({
        "store_path": "store.sqlite3", "partners_file": "partners.yaml",
        "peers_file": "peers.yaml", "collections_dir": "collections",
        "default_api_root": API_ROOT, "ui_upload_max_bytes": LIMIT,
        "api_roots": {API_ROOT: {"title": "Work root"}}}))
    settings = load_settings(config, environ={})
    credentials = {who: partners.add(settings.partners_file, who, who.title(), groups,
                                     identity=identity_of(who), clearance=tlp, admin=admin)
                   for who, (groups, tlp, admin) in PARTNERS.items()}
    return Env(settings, credentials)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = write_work_env(tmp_path_factory.mktemp("web-work"))
    store = SQLiteStore(env.settings.store_path)
    store.open()
    store.put_state("sync:us-node:pull", {  # what a sync run leaves
        "last_success": 1764547200.0, "last": {"objects": 7, "unchanged": 2, "failed": 1},
        "totals": {"objects": 40}, "last_error": {"at": 1764550800.0,
                                                  "error": "peer answered 503"}})
    store.close()
    live = start_server(env)
    try:
        yield live
    finally:
        live.stop()


def upload(client: httpx.Client, path: Path, format_name: str, *,
           collection: str = f"{API_ROOT}/{SHARED}", token: str | None = None,
           options: dict[str, str] | None = None, body: bytes | None = None) -> httpx.Response:
    form = client.get("ui/upload/")
    assert form.status_code == 200
    data = {"collection": collection, "format": format_name, "tlp": "",
            "options": "\n".join(f"{k}={v}" for k, v in (options or {}).items())}
    if token is None:
        data["csrf"] = csrf(form.text)
    elif token:
        data["csrf"] = token
    content = body if body is not None else path.read_bytes()
    return client.post("ui/upload/", data=data, files={"file": (path.name, content)})


def summary(html: str) -> dict[str, int]:
    found = re.search(r'<p class="summary">.*?: (read .*?)\.</p>', html, re.S)
    assert found, html
    return {name: int(count) for name, count in re.findall(r"(\w+) (\d+)", found.group(1))}


def rejects(html: str) -> list[tuple[int, str]]:
    table = re.search(r'<table class="rejects">(.*?)</table>', html, re.S)
    rows = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td>", table.group(1)) if table else []
    return [(int(row), unescape(reason)) for row, reason in rows]


FILE_FORMATS = [name for name, parser in PARSERS.items() if not parser.reads_directories]


@pytest.mark.parametrize("format_name", [pytest.param(f, id=f) for f in FILE_FORMATS])
def test_upload_each_format_shows_the_summary_and_the_rejects(
        site: LiveServer, samples: dict[str, list[Sample]], format_name: str) -> None:
    sample = samples[format_name][0]
    with signed_in(site, "uploader") as client:
        answer = upload(client, sample.path, format_name, options=sample.settings,
                        collection=f"{API_ROOT}/{format_collection(format_name)}")
    assert answer.status_code == 200, answer.text
    counts = summary(answer.text)
    listed = rejects(answer.text)
    assert counts["rejected"] == len(listed)
    assert counts["stored"] + counts["unchanged"] + counts["kept"] > 0
    # The format's own bad records; besides them only objects the file says another author
    # made (a MISP event's organisation, a bundle's producers), which this partner may not
    # push as its own, exactly as a TAXII push of them would be refused.
    provenance = [reason for _, reason in listed if "this partner's identity" in reason]
    assert len(listed) - len(provenance) == sample.bad, listed
    assert bool(provenance) is (format_name in ("misp-event", "stix-bundle")), provenance
    assert all(row >= 0 and reason for row, reason in listed)
    assert f"Uploaded {sample.path.name}" in answer.text


def test_an_upload_is_stored_under_the_partners_identity_and_audited(
        site: LiveServer, samples: dict[str, list[Sample]]) -> None:
    sample = samples["abusech-feodo-csv"][0]
    with signed_in(site, "uploader") as client:
        assert upload(client, sample.path, "abusech-feodo-csv").status_code == 200
    answer = httpx.get(f"{site.root}collections/{SHARED}/objects/",
                       params={"match[type]": "indicator"}, auth=site.env.basic("uploader"),
                       headers={"Accept": "application/taxii+json;version=2.1"})
    authors = {o.get("created_by_ref") for o in answer.json()["objects"]}
    assert authors == {identity_of("uploader")}
    store = SQLiteStore(site.env.settings.store_path)
    store.open()
    try:
        deadline = time.monotonic() + 10
        while True:  # page records are written off the request path, within a second
            found = [r for r in audit.export(store) if r["partner"] == "uploader"
                     and r.get("face") == "ui" and r["kind"] in ("ingest", "upload")
                     and r.get("collection") == SHARED
                     and "ipblocklist.csv" in str(r.get("files", r.get("file")))]
            if {r["kind"] for r in found} == {"ingest", "upload"} or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        store.close()
    assert {r["kind"] for r in found} == {"ingest", "upload"}
    [done] = [r for r in found if r["kind"] == "upload"]
    assert done["result"] == 200 and done["format"] == "abusech-feodo-csv"


def test_a_bundle_of_objects_by_another_author_is_refused_object_by_object(
        site: LiveServer, tmp_path: Path) -> None:
    bundle = tmp_path / "foreign.json"
    bundle.write_text('{"type": "bundle", "id": "bundle--0e5b0000-0000-4000-8000-000000000b01",'
                      ' "objects": [{"type": "malware", "spec_version": "2.1", "id": '
                      '"malware--0e5b0000-0000-4000-8000-000000000b02", "created": '
                      '"2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z", '
                      '"name": "x", "is_family": true, "created_by_ref": '
                      f'"{identity_of("reader")}"}}]}}')
    with signed_in(site, "uploader") as client:
        answer = upload(client, bundle, "stix-bundle")
    assert answer.status_code == 200
    [(row, reason)] = rejects(answer.text)
    assert row == 1 and "is not this partner's identity" in reason


@pytest.mark.parametrize("who, collection, token, status, says", [
    pytest.param("reader", f"{API_ROOT}/{SHARED}", None, 403, "may not write",
                 id="no write right -> 403 page"),
    pytest.param("uploader", f"{API_ROOT}/{LOOKOUT}", None, 403, "may not write",
                 id="a collection it only reads -> 403 page"),
    pytest.param("uploader", f"{API_ROOT}/0e5b0000-0000-4000-8000-00000000dead", None, 404,
                 "no collection", id="no such collection -> 404 page"),
    pytest.param("uploader", f"{API_ROOT}/{SHARED}", "", 403, "did not come from this site",
                 id="no CSRF token -> 403 page"),
    pytest.param("uploader", f"{API_ROOT}/{SHARED}", "forged", 403,
                 "did not come from this site", id="a wrong CSRF token -> 403 page"),
])
def test_upload_refusals(site: LiveServer, samples: dict[str, list[Sample]], who: str,
                         collection: str, token: str | None, status: int, says: str) -> None:
    sample = samples["abusech-urlhaus-csv"][0]
    with signed_in(site, who) as client:
        answer = upload(client, sample.path, "abusech-urlhaus-csv", collection=collection,
                        token=token)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert says in unescape(answer.text)


@pytest.mark.parametrize("format_name, options, body, status, says", [
    pytest.param("abusech-urlhaus-csv", None, b"x" * (LIMIT + 1), 413, "ui_upload_max_bytes",
                 id="over the size limit -> 413 page"),
    pytest.param("misp-feed", None, b"{}", 400, "choose one of the formats",
                 id="a format that reads directories -> 400 page"),
    pytest.param("ioc-csv", {"no_such_option": "1"}, b"a\n", 400, "no option",
                 id="an unknown format option -> 400 page"),
])
def test_upload_mistakes_are_clear_pages(site: LiveServer, tmp_path: Path, format_name: str,
                                         options: dict[str, str] | None, body: bytes,
                                         status: int, says: str) -> None:
    with signed_in(site, "uploader") as client:
        answer = upload(client, tmp_path / "input.csv", format_name, options=options,
                        body=body)
    assert answer.status_code == status, answer.text
    assert says in unescape(answer.text)


def test_the_upload_form_lists_writable_collections_and_file_formats(site: LiveServer) -> None:
    with signed_in(site, "uploader") as client:
        html = client.get("ui/upload/").text
    assert sorted(re.findall(r'<option value="([^"]+/[^"]+)"', html)) == sorted(
        [f"{API_ROOT}/{SHARED}", *(f"{API_ROOT}/{format_collection(f)}" for f in FILE_FORMATS)])
    assert set(re.findall(r'<option value="([a-z0-9-]+)"(?: selected)?>[a-z0-9-]+: ', html)) \
        == set(FILE_FORMATS)
    with signed_in(site, "reader") as client:
        assert "may not write to any collection" in client.get("ui/upload/").text


# -- administrators ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["ui/federation/", "ui/audit/"])
@pytest.mark.parametrize("who, status", [
    pytest.param("root", 200, id="administrator -> page"),
    pytest.param("uploader", 403, id="not an administrator -> 403 page"),
])
def test_admin_pages_are_for_administrators(site: LiveServer, path: str, who: str,
                                            status: int) -> None:
    with signed_in(site, who) as client:
        answer = client.get(path)
        nav = client.get("ui/collections/").text
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")
    assert ('href="/ui/audit/"' in nav) is (who == "root")


def test_federation_page_shows_each_peer_and_direction(site: LiveServer) -> None:
    with signed_in(site, "root") as client:
        html = unescape(client.get("ui/federation/").text)
    row = re.search(r"<td>us-node</td>(.*?)</tr>", html, re.S)
    assert row, html
    text = re.sub(r"<[^>]+>", " ", row.group(1))
    # The server's own sync may have run since (and failed: the peer is no partner here),
    # which replaces the last run and the last error but keeps the rest.
    for fact in ("pull", "2025-12-01T00:00:00Z", "40"):
        assert fact in text, text
    assert "2025-12-01T01:00:00Z: peer answered 503" in text or \
        "peer us-node is not a partner" in text, text


def audit_rows(html: str) -> list[dict[str, str]]:
    names = ("seq", "at", "kind", "partner", "face", "collection", "result")
    return [dict(zip(names, cells, strict=False))
            for cells in re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td>([^<]*)</td>"
                                    r"<td>([^<]*)</td><td>([^<]*)</td><td class=\"id\">([^<]*)"
                                    r"</td><td>([^<]*)</td>", html)]


@pytest.mark.parametrize("params, check", [
    pytest.param({}, lambda r: True, id="everything"),
    pytest.param({"partner": "reader"}, lambda r: r["partner"] == "reader", id="one partner"),
    pytest.param({"face": "ui"}, lambda r: r["face"] == "ui", id="the pages"),
    pytest.param({"kind": "ui-sign-in"}, lambda r: r["kind"] == "ui-sign-in", id="one action"),
    pytest.param({"collection": SHARED}, lambda r: r["collection"] == SHARED,
                 id="one collection"),
    pytest.param({"since": "2999-01-01"}, None, id="a time range with nothing in it"),
])
def test_audit_page_filters_newest_first(site: LiveServer, params: dict[str, str],
                                         check: Any) -> None:
    for who in ("reader", "uploader"):  # sign-ins are recorded: there is something to find
        with signed_in(site, who):
            pass
    with signed_in(site, "root") as client:
        deadline = time.monotonic() + 10
        while True:
            answer = client.get("ui/audit/", params=params)
            rows = audit_rows(answer.text)
            if check is None or rows or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert answer.status_code == 200
    if check is None:
        assert rows == []
        return
    assert rows and all(check(r) for r in rows), rows
    assert [int(r["seq"]) for r in rows] == sorted((int(r["seq"]) for r in rows), reverse=True)


def test_audit_page_pages_backwards(site: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from exchange.web import work

    monkeypatch.setattr(work, "AUDIT_PAGE", 2)
    with signed_in(site, "root") as client:
        first = client.get("ui/audit/", params={"face": "ui"})
        older = re.search(r'<a rel="next" href="([^"]+)">Older records</a>', first.text)
        assert older, first.text
        second = client.get(unescape(older.group(1)))
    one, two = audit_rows(first.text), audit_rows(second.text)
    assert len(one) == 2 and two and all(r["face"] == "ui" for r in two)
    assert int(one[-1]["seq"]) > int(two[0]["seq"])


@pytest.mark.parametrize("params", [
    pytest.param({"since": "yesterday"}, id="a time that is not one -> 400 page"),
    pytest.param({"before": "-1"}, id="a record number that is not one -> 400 page"),
])
def test_audit_page_mistakes(site: LiveServer, params: dict[str, str]) -> None:
    with signed_in(site, "root") as client:
        answer = client.get("ui/audit/", params=params)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")
