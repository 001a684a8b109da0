"""The analyst pages (/ui/) over HTTP, against a real server on loopback.

One server per module with its own collections and partners: a writer who seeds objects at
GREEN and AMBER through TAXII POSTs, a partner cleared GREEN and one cleared AMBER. What the
pages show is compared with what the TAXII API shows the same partner: the pages read through
the same gate, so they must never show more.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exchange import audit
from exchange.config import load_settings
from exchange.markings import TLP, handling
from exchange.policy import partners
from exchange.policy.gate import Gate
from exchange.store.sqlite import SQLiteStore
from tests.conftest import (
    API_ROOT,
    HIDDEN,
    OPEN,
    READONLY,
    Env,
    LiveServer,
    identity_of,
    start_server,
)

TAXII = "application/taxii+json;version=2.1"
SHARED = "0e5b0000-0000-4000-8000-000000000001"
SECRET = "0e5b0000-0000-4000-8000-000000000002"  # only the writer reads it
WRITER = identity_of("writer")
T0, T1 = "2024-01-01T00:00:00.000Z", "2024-02-01T00:00:00.000Z"
PARTNERS = {"writer": (("writers",), "red"), "green": (("readers",), "green"),
            "amber": (("readers",), "amber")}
COLLECTIONS = [
    {"id": SHARED, "api_root": API_ROOT, "alias": "shared", "title": "Shared indicators",
     "read": ["group:readers", "partner:writer"], "write": ["partner:writer"],
     "default_marking": "amber", "red_recipients": ["partner:writer"]},
    {"id": SECRET, "api_root": API_ROOT, "alias": "secret", "title": "Secret holdings",
     "read": ["partner:writer"], "write": ["partner:writer"], "default_marking": "amber"},
]
_NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")


def sid(kind: str, key: str) -> str:
    return f"{kind}--{uuid.uuid5(_NS, f'https://web.example/{key}')}"


def indicator(key: str, tlp: str | None, ip: str, *, name: str | None = None,
              modified: str = T0, **extra: Any) -> dict[str, Any]:
    obj = {"type": "indicator", "spec_version": "2.1", "id": sid("indicator", key),
           "created": T0, "modified": modified, "created_by_ref": WRITER,
           "name": name or f"C2 {ip}", "pattern_type": "stix",
           "pattern": f"[ipv4-addr:value = '{ip}']", "valid_from": "2024-01-01T00:00:00Z",
           **extra}
    if tlp:
        obj["object_marking_refs"] = [TLP[tlp]]
    return obj


GREEN_IND = indicator("green", "green", "192.0.2.10")
AMBER_IND = indicator("amber", "amber", "192.0.2.11", name="Amber-only C2 192.0.2.11")
UNMARKED = indicator("unmarked", None, "192.0.2.12")  # the collection's default: AMBER
HOSTILE = indicator("hostile", "green", "192.0.2.13", name="<script>alert('x')</script>",
                    description='"><img src=x onerror=alert(1)>')
HANDLED = indicator("handled", "green", "192.0.2.14", extensions=handling(("H1",)))
MALWARE = {"type": "malware", "spec_version": "2.1", "id": sid("malware", "loader"),
           "created": T0, "modified": T0, "created_by_ref": WRITER, "name": "loader.example",
           "is_family": True, "object_marking_refs": [TLP["green"]]}
MULTI_V1 = indicator("multi", "green", "198.51.100.7", name="Multi first")
MULTI_V2 = indicator("multi", "amber", "198.51.100.7", name="Multi second", modified=T1)
SECRET_IND = indicator("secret", "clear", "203.0.113.5", name="Secret C2")
SEED = [GREEN_IND, AMBER_IND, UNMARKED, HOSTILE, HANDLED, MALWARE, MULTI_V1, MULTI_V2]


def write_web_env(directory: Path) -> Env:
    (directory / "collections").mkdir(parents=True)
    for item in COLLECTIONS:
        (directory / "collections" / f"{item['alias']}.yaml").write_text(yaml.safe_dump(item))
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({
        "store_path": "store.sqlite3", "partners_file": "partners.yaml",
        "collections_dir": "collections", "default_api_root": API_ROOT, "post_wait_seconds": 5,
        "api_roots": {API_ROOT: {"title": "Web root", "max_page_size": 100,
                                 "default_page_size": 100}}}))
    settings = load_settings(config, environ={})
    credentials = {who: partners.add(settings.partners_file, who, who.title(), groups,
                                     identity=identity_of(who), clearance=tlp)
                   for who, (groups, tlp) in PARTNERS.items()}
    return Env(settings, credentials)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = write_web_env(tmp_path_factory.mktemp("web"))
    live = start_server(env)
    try:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            for collection, objects in ((SHARED, SEED), (SECRET, [SECRET_IND])):
                answer = client.post(
                    f"{API_ROOT}/collections/{collection}/objects/",
                    json={"objects": objects}, auth=env.basic("writer"),
                    headers={"Accept": TAXII, "Content-Type": TAXII})
                assert answer.json()["success_count"] == len(objects), answer.text
        yield live
    finally:
        live.stop()


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def browser(live: LiveServer) -> httpx.Client:
    """A client with a cookie jar, as a browser is."""
    return httpx.Client(base_url=live.url, timeout=30, follow_redirects=False)


def sign_in(client: httpx.Client, **form: str) -> httpx.Response:
    page = client.get("ui/sign-in/")
    assert page.status_code == 200
    return client.post("ui/sign-in/", data={"csrf": csrf(page.text), **form})


@contextmanager
def signed_in(live: LiveServer, who: str) -> Iterator[httpx.Client]:
    with browser(live) as client:
        answer = sign_in(client, partner=who, password=live.env.credentials[who].password)
        assert answer.status_code == 303, answer.text
        yield client


def api_ids(live: LiveServer, who: str, collection: str, **params: str) -> list[str]:
    answer = httpx.get(f"{live.root}collections/{collection}/objects/", params=params,
                       auth=live.env.basic(who), headers={"Accept": TAXII})
    return [o["id"] for o in answer.json().get("objects", [])]


def page_ids(html: str) -> list[str]:
    return re.findall(r'<td class="id">([^<]+)</td>', html)


# -- sign-in ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form, signs_in, error", [
    pytest.param(lambda c: {"partner": "green", "password": c["green"].password}, True, "",
                 id="partner id and password -> signed in"),
    pytest.param(lambda c: {"token": c["amber"].token}, True, "",
                 id="API token -> signed in"),
    pytest.param(lambda c: {"partner": "green", "password": "not-the-password"}, False,
                 "wrong partner id or password", id="wrong password -> form again"),
    pytest.param(lambda c: {"partner": "nobody", "password": c["green"].password}, False,
                 "wrong partner id or password", id="unknown partner -> form again"),
    pytest.param(lambda c: {"partner": "amber", "password": c["green"].password}, False,
                 "wrong partner id or password", id="another partner's password -> form again"),
    pytest.param(lambda c: {"token": "txe_not-a-token"}, False, "unknown or revoked API token",
                 id="unknown token -> form again"),
])
def test_sign_in(site: LiveServer, form: Any, signs_in: bool, error: str) -> None:
    with browser(site) as client:
        answer = sign_in(client, **form(site.env.credentials))
        if signs_in:
            assert answer.status_code == 303
            assert answer.headers["location"] == "/ui/collections/"
            assert "txe_session" in client.cookies
            assert client.get("ui/collections/").status_code == 200
        else:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/html")
            assert error in unescape(answer.text)
            assert 'name="csrf"' in answer.text  # the form again, ready for another try
            assert "txe_session" not in client.cookies
            assert client.get("ui/collections/").status_code == 303


def test_failed_sign_ins_share_the_api_throttle(env: Env) -> None:
    """Failed sign-ins count with failed API logins from the same address."""
    settings = dataclasses.replace(env.settings, login_failures_per_partner_and_address=3)
    live = start_server(Env(settings, env.credentials))
    try:
        with browser(live) as client:
            for _ in range(2):
                assert sign_in(client, partner="alice", password="wrong").status_code == 200
            # The third failure is an API login: the throttle is the same one.
            api = httpx.get(f"{live.root}collections/", auth=("alice", "wrong"),
                            headers={"Accept": TAXII})
            assert api.status_code == 401
            answer = sign_in(client, partner="alice", password=env.credentials["alice"].password)
            assert answer.status_code == 429
            assert int(answer.headers["retry-after"]) > 0
            assert "too many failed logins" in answer.text
            assert "txe_session" not in client.cookies
    finally:
        live.stop()


@pytest.mark.parametrize("token", [
    pytest.param(lambda html: {}, id="no token -> 403"),
    pytest.param(lambda html: {"csrf": "0" * 64}, id="made-up token -> 403"),
    pytest.param(lambda html: {"csrf": csrf(html)[:-1]}, id="truncated token -> 403"),
])
def test_sign_in_without_csrf_token_is_refused(site: LiveServer, token: Any) -> None:
    with browser(site) as client:
        page = client.get("ui/sign-in/")
        answer = client.post("ui/sign-in/", data={
            **token(page.text), "partner": "green",
            "password": site.env.credentials["green"].password})
        assert answer.status_code == 403
        assert answer.headers["content-type"].startswith("text/html")
        assert "txe_session" not in client.cookies


def test_sign_in_token_of_another_browser_is_refused(site: LiveServer) -> None:
    """A forged form cannot reuse a token it saw elsewhere: it is bound to the browser's
    own sign-in cookie."""
    with browser(site) as attacker, browser(site) as victim:
        token = csrf(attacker.get("ui/sign-in/").text)
        victim.get("ui/sign-in/")
        answer = victim.post("ui/sign-in/", data={
            "csrf": token, "partner": "green",
            "password": site.env.credentials["green"].password})
        assert answer.status_code == 403
        assert "txe_session" not in victim.cookies


def test_sign_out_needs_the_token_then_ends_the_session(site: LiveServer) -> None:
    with signed_in(site, "green") as client:
        page = client.get("ui/collections/")
        cookie = client.cookies["txe_session"]
        refused = client.post("ui/sign-out/", data={"csrf": "forged"})
        assert refused.status_code == 403
        assert client.get("ui/collections/").status_code == 200  # still signed in
        answer = client.post("ui/sign-out/", data={"csrf": csrf(page.text)})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/sign-in/"
        assert "txe_session" not in client.cookies
    with browser(site) as replay:  # the old cookie is worth nothing now
        replay.cookies.set("txe_session", cookie)
        answer = replay.get("ui/collections/")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/sign-in/"


def _set_cookie(answer: httpx.Response, name: str) -> str:
    found = [v for v in answer.headers.get_list("set-cookie") if v.startswith(f"{name}=")]
    assert len(found) == 1, answer.headers
    return found[0]


@pytest.mark.parametrize("public_url, seconds, secure", [
    pytest.param("", 28800, False, id="plain HTTP, default 8 hours -> not Secure"),
    pytest.param("https://exchange.example", 600, True,
                 id="behind a TLS proxy (public_url https), ui_session_seconds 600 -> Secure"),
])
def test_session_cookie_flags(env: Env, public_url: str, seconds: int, secure: bool) -> None:
    settings = dataclasses.replace(env.settings, public_url=public_url,
                                   ui_session_seconds=seconds)
    live = start_server(Env(settings, env.credentials))
    try:
        # Cookies are sent by hand: a client keeps a Secure cookie from plain HTTP.
        form = httpx.get(f"{live.url}ui/sign-in/")
        nonce = _set_cookie(form, "txe_sign_in")
        answer = httpx.post(f"{live.url}ui/sign-in/", data={
            "csrf": csrf(form.text), "partner": "alice",
            "password": env.credentials["alice"].password},
            headers={"Cookie": nonce.split(";")[0]})
        assert answer.status_code == 303
        cookie = _set_cookie(answer, "txe_session").lower()
        assert f"max-age={seconds}" in cookie
        for found in (nonce.lower(), cookie):
            assert "httponly" in found
            assert "samesite=strict" in found
            assert "path=/ui/" in found
            assert ("; secure" in found) is secure
    finally:
        live.stop()


@pytest.mark.parametrize("path", [
    pytest.param("ui/", id="home"),
    pytest.param("ui/collections/", id="collections"),
    pytest.param(f"ui/collections/{API_ROOT}/{SHARED}/", id="browse"),
    pytest.param(f"ui/collections/{API_ROOT}/{SHARED}/objects/{GREEN_IND['id']}/",
                 id="object"),
])
def test_pages_redirect_to_sign_in_when_not_signed_in(site: LiveServer, path: str) -> None:
    with browser(site) as client:
        client.cookies.set("txe_session", "made-up-session-id")
        answer = client.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/sign-in/"


# -- what each partner sees ------------------------------------------------------------------


@pytest.mark.parametrize("who, listed, unlisted", [
    pytest.param("green", ["Shared indicators"], ["Secret holdings"],
                 id="green reader: only the shared collection"),
    pytest.param("writer", ["Shared indicators", "Secret holdings"], [],
                 id="writer: both, with read and write"),
])
def test_collections_page(site: LiveServer, who: str, listed: list[str],
                          unlisted: list[str]) -> None:
    with signed_in(site, who) as client:
        html = client.get("ui/collections/").text
    for title in listed:
        assert title in html
    for title in unlisted:
        assert title not in html
    assert "shared" in html and "Web root" in html  # alias and API root
    rights = re.findall(r'<span class="right">(\w+)</span>', html)
    assert rights == (["read"] if who == "green" else ["read", "write", "read", "write"])


@pytest.mark.parametrize("who, params", [
    pytest.param("green", {}, id="green, latest versions"),
    pytest.param("amber", {}, id="amber, latest versions"),
    pytest.param("writer", {}, id="writer, latest versions"),
    pytest.param("green", {"versions": "all"}, id="green, all versions"),
    pytest.param("amber", {"versions": "all"}, id="amber, all versions"),
    pytest.param("amber", {"type": "malware"}, id="amber, type filter"),
    pytest.param("green", {"type": "indicator,malware"}, id="green, two types"),
])
def test_browse_shows_what_the_api_shows(site: LiveServer, who: str,
                                         params: dict[str, str]) -> None:
    """Paged two at a time with the keyset `next`, newest first: the same objects as the TAXII
    API gives the same partner, in the reverse order."""
    api_params = {"match[version]": "all"} if params.get("versions") else {}
    if "type" in params:
        api_params["match[type]"] = params["type"]
    expected = api_ids(site, who, SHARED, **api_params)
    seen, url, pages = [], f"ui/collections/{API_ROOT}/{SHARED}/", 0
    query: dict[str, str] | None = {**params, "limit": "2"}
    with signed_in(site, who) as client:
        while url:
            answer = client.get(url, params=query)
            assert answer.status_code == 200, answer.text
            seen += page_ids(answer.text)
            pages += 1
            found = re.search(r'<a rel="next" href="([^"]+)"', answer.text)
            url, query = (unescape(found.group(1)).lstrip("/"), None) if found else ("", None)
    assert seen == expected[::-1]
    assert pages == max(1, -(-len(expected) // 2))


def test_green_partner_never_sees_amber(site: LiveServer) -> None:
    with signed_in(site, "green") as client:
        base = f"ui/collections/{API_ROOT}/{SHARED}/"
        listing = client.get(base, params={"versions": "all"}).text
        assert GREEN_IND["id"] in listing
        for withheld in (AMBER_IND, UNMARKED):
            assert withheld["id"] not in listing
            answer = client.get(f"{base}objects/{withheld['id']}/")
            never_stored = client.get(f"{base}objects/{sid('indicator', 'never')}/")
            assert answer.status_code == never_stored.status_code == 404
            assert answer.headers["content-type"].startswith("text/html")
            assert withheld["name"] not in answer.text
        assert "Amber-only" not in listing
        assert "Multi second" not in listing  # the AMBER version of a GREEN object
        # The object page shows the version green may see, and no other.
        multi = client.get(f"{base}objects/{MULTI_V1['id']}/").text
        assert "Multi first" in multi and "Multi second" not in multi
        assert T1 not in multi
        later = client.get(f"{base}objects/{MULTI_V1['id']}/", params={"version": T1})
        assert later.status_code == 404
        # A collection green may not read is not there at all.
        assert client.get(f"ui/collections/{API_ROOT}/{SECRET}/").status_code == 404
        secret = client.get(f"ui/collections/{API_ROOT}/{SECRET}/objects/{SECRET_IND['id']}/")
        assert secret.status_code == 404 and "Secret C2" not in secret.text


def test_object_page(site: LiveServer) -> None:
    with signed_in(site, "amber") as client:
        base = f"ui/collections/{API_ROOT}/{SHARED}/objects/"
        html = client.get(f"{base}{MULTI_V1['id']}/").text
        assert "Multi second" in html  # amber sees the newest version
        assert '<span class="tlp tlp-amber">TLP:AMBER</span>' in html
        versions = re.findall(r"<li>(.*?)(?:<a class=\"compare\".*?)?</li>", html, re.S)
        assert [unescape(re.sub("<[^>]+>", "", v)).strip() for v in versions] == \
            [T0, f"{T1} (shown)"]
        first = client.get(f"{base}{MULTI_V1['id']}/", params={"version": T0}).text
        assert "Multi first" in first and '<span class="tlp tlp-green">TLP:GREEN</span>' in first
        handled = client.get(f"{base}{HANDLED['id']}/").text
        assert '<span class="handling">H1</span>' in handled
        assert "<dt>pattern</dt>" in handled and "192.0.2.14" in handled
        unmarked = client.get(f"{base}{UNMARKED['id']}/").text
        assert "TLP:AMBER* (collection default)" in unmarked
        raw = re.search(r'<pre id="raw" class="raw">(.*?)</pre>', handled, re.S)
        assert raw and '"handling_codes"' in unescape(raw.group(1))


def test_hostile_content_is_escaped(site: LiveServer) -> None:
    with signed_in(site, "green") as client:
        listing = client.get(f"ui/collections/{API_ROOT}/{SHARED}/").text
        page = client.get(
            f"ui/collections/{API_ROOT}/{SHARED}/objects/{HOSTILE['id']}/")
    for html in (listing, page.text):
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(" in html
    assert "<img src=x" not in page.text
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


@pytest.mark.parametrize("path, status", [
    pytest.param("ui/no-such-page/", 404, id="unknown page -> 404"),
    pytest.param(f"ui/collections/{API_ROOT}/no-such-collection/", 404,
                 id="unknown collection -> 404"),
    pytest.param(f"ui/collections/nowhere/{SHARED}/", 404, id="unknown API root -> 404"),
    pytest.param(f"ui/collections/{API_ROOT}/{SHARED}/objects/not-an-id/", 404,
                 id="not an object id -> 404"),
    pytest.param(f"ui/collections/{API_ROOT}/{SHARED}/?next=bogus", 400,
                 id="bad next token -> 400"),
    pytest.param(f"ui/collections/{API_ROOT}/{SHARED}/?type=%3Cb%3E", 400,
                 id="bad type -> 400"),
    pytest.param(f"ui/collections/{API_ROOT}/{SHARED}/?limit=0", 400, id="bad limit -> 400"),
    pytest.param(f"ui/collections/{API_ROOT}/{SHARED}/objects/{GREEN_IND['id']}/"
                 "?version=yesterday", 400, id="bad version -> 400"),
])
def test_errors_are_html_pages(site: LiveServer, path: str, status: int) -> None:
    with signed_in(site, "green") as client:
        answer = client.get(path)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")
    assert "<h1>" in answer.text and "<b>" not in answer.text


@pytest.mark.parametrize("path, kind", [
    pytest.param("ui/static/style.css", "text/css", id="stylesheet"),
    pytest.param("ui/static/app.js", "javascript", id="script"),
])
def test_static_files_are_served_from_the_package(site: LiveServer, path: str,
                                                  kind: str) -> None:
    answer = httpx.get(f"{site.url}{path}")
    assert answer.status_code == 200
    assert kind in answer.headers["content-type"]


def test_taxii_errors_are_unchanged_beside_the_pages(site: LiveServer) -> None:
    answer = httpx.get(f"{site.url}no-such-root/collections/", headers={"Accept": TAXII},
                       auth=site.env.basic("green"))
    assert answer.status_code == 404
    assert answer.headers["content-type"] == TAXII


def test_page_reads_and_sign_ins_are_audited(env: Env) -> None:
    live = start_server(env)
    try:
        with signed_in(live, "bob") as client:
            assert client.get(f"ui/collections/{API_ROOT}/{READONLY}/").status_code == 200
            assert client.get(f"ui/collections/{API_ROOT}/{HIDDEN}/").status_code == 404
    finally:
        live.stop()  # the trail appends what waits before the store closes
    store = SQLiteStore(env.settings.store_path)
    store.open()
    try:
        records = [r for r in audit.export(store, partner="bob")]
    finally:
        store.close()
    assert [(r["kind"], r.get("result"), r.get("collection"), r.get("face"))
            for r in records] == [("ui-sign-in", None, None, None),
                                  ("read", 200, READONLY, "ui"), ("read", 404, None, "ui")]
    assert records[0]["method"] == "password"
    assert records[1]["objects"] == {"count": 0, "versions": []}
    assert all(r["address"] == "127.0.0.1" for r in records)


def test_a_server_failure_is_an_html_page_under_ui_only(live: LiveServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the store broke")

    monkeypatch.setattr(Gate, "read", broken)
    with signed_in(live, "alice") as client:
        page = client.get(f"ui/collections/{API_ROOT}/{OPEN}/")
        assert page.status_code == 500
        assert page.headers["content-type"].startswith("text/html")
        assert "the store broke" not in page.text
        again = client.get("ui/collections/")  # the connection is still usable
        assert again.status_code == 200
    api = httpx.get(f"{live.collection(OPEN)}objects/", auth=live.env.basic("alice"),
                    headers={"Accept": TAXII})
    assert api.status_code == 500
    assert api.headers["content-type"] == TAXII


def test_a_session_holds_in_every_server_process_and_across_a_restart(env: Env) -> None:
    """Two servers over one store stand for `serve --workers 2`: a session started at one is
    good at the other, and after both restart; signing out at one ends it everywhere."""
    first, second = start_server(env), start_server(env)
    try:
        with browser(first) as client:
            answer = sign_in(client, partner="alice", password=env.credentials["alice"].password)
            assert answer.status_code == 303
            cookie = client.cookies.get("txe_session")
        with browser(second) as other:
            other.cookies.set("txe_session", cookie, path="/ui/")
            page = other.get("ui/collections/")
            assert page.status_code == 200 and "alice" in page.text.lower()
    finally:
        first.stop()
        second.stop()
    again = start_server(env)
    try:
        with browser(again) as client:
            client.cookies.set("txe_session", cookie, path="/ui/")
            page = client.get("ui/collections/")
            assert page.status_code == 200, "a restart ended the session"
            out = client.post("ui/sign-out/", data={"csrf": csrf(page.text)})
            assert out.status_code == 303
            client.cookies.set("txe_session", cookie, path="/ui/")
            assert client.get("ui/collections/").status_code == 303  # ended: sign in again
    finally:
        again.stop()
