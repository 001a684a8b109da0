"""Search, filters and exports of the analyst pages over HTTP, against a real server on
loopback: each search kind finds what it should and nothing else, for a partner cleared for
everything and one cleared only for GREEN; pages are newest first without gaps or duplicates
while objects arrive; the exports hold exactly what the pages show and parse as STIX and CSV.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx
import orjson
import pytest
import stix2

from exchange import audit
from exchange.markings import TLP
from tests import backends
from tests.conftest import ALICE, API_ROOT, OPEN, Env, LiveServer, start_server, with_backend
from tests.test_web import SHARED, TAXII, WRITER, page_ids, signed_in, write_web_env

T0 = "2024-01-01T00:00:00.000Z"
_NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")
BASE = f"ui/collections/{API_ROOT}/{SHARED}/"


def _id(kind: str, key: str) -> str:
    return f"{kind}--{uuid.uuid5(_NS, f'https://search.example/{key}')}"


def sco(kind: str, value: str, tlp: str) -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1", "id": _id(kind, value), "value": value,
            "object_marking_refs": [TLP[tlp]]}


def ind(key: str, pattern: str, tlp: str, **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": _id("indicator", key),
            "created": T0, "modified": T0, "created_by_ref": WRITER, "name": f"Indicator {key}",
            "pattern_type": "stix", "pattern": pattern, "valid_from": "2024-01-01T00:00:00Z",
            "object_marking_refs": [TLP[tlp]], **extra}


def family(name: str, tlp: str, **extra: Any) -> dict[str, Any]:
    return {"type": "malware", "spec_version": "2.1", "id": _id("malware", name),
            "created": T0, "modified": T0, "created_by_ref": WRITER, "name": name,
            "is_family": True, "object_marking_refs": [TLP[tlp]], **extra}


SEED = {  # pushed in this order: newest first is the reverse
    "ip": sco("ipv4-addr", "198.51.100.7", "green"),
    "ip-amber": sco("ipv4-addr", "198.51.100.9", "amber"),
    "ip6": sco("ipv6-addr", "2001:db8::5", "green"),
    "domain": sco("domain-name", "evil-shop.example", "green"),
    "url": sco("url", "http://login.evil-shop.example/pay.php", "green"),
    "ind": ind("ind", "[ipv4-addr:value = '198.51.100.7']", "green"),
    "ind-amber": ind("ind-amber", "[ipv4-addr:value = '198.51.100.7'] OR "
                                  "[domain-name:value = 'amber-shop.example']", "amber"),
    "ind-expired": ind("ind-expired", "[domain-name:value = 'old.example']", "green",
                       valid_until="2024-06-01T00:00:00Z"),
    "emotet": family("Emotet", "green", aliases=["Heodo"]),
    "amber-family": family("Amberloader", "amber"),
}
NAMES = {obj["id"]: key for key, obj in SEED.items()}
NEWEST = list(SEED)[::-1]
AMBER_KEYS = {"ip-amber", "ind-amber", "amber-family"}


def push(live: LiveServer, *objects: dict[str, Any]) -> None:
    answer = httpx.post(f"{live.root}collections/{SHARED}/objects/",
                        json={"objects": list(objects)}, auth=live.env.basic("writer"),
                        headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=30)
    assert answer.json()["success_count"] == len(objects), answer.text


@pytest.fixture(scope="module", params=backends.BACKENDS)
def site(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
         ) -> Iterator[LiveServer]:
    """The pages over each store backend in turn."""
    live = start_server(with_backend(write_web_env(tmp_path_factory.mktemp("search")),
                                     request.param, request))
    try:
        for obj in SEED.values():  # one push each: each its own date_added
            push(live, obj)
        yield live
    finally:
        live.stop()


def every_page(client: httpx.Client, url: str, params: dict[str, Any]) -> list[str]:
    """The keys of every object the pages show, following `Older` links, two at a time."""
    seen: list[str] = []
    query: dict[str, Any] | None = {**params, "limit": "2"}
    while url:
        answer = client.get(url, params=query)
        assert answer.status_code == 200, answer.text
        seen += [NAMES.get(i, i) for i in page_ids(answer.text)]
        found = re.search(r'<a rel="next" href="([^"]+)"', answer.text)
        url, query = (unescape(found.group(1)).lstrip("/"), None) if found else ("", None)
    return seen


SEARCHES = [
    pytest.param({"q": "198.51.100.7"}, ["ind-amber", "ind", "ip"],
                 id="address: the address and the indicators naming it"),
    pytest.param({"q": "198.51.100.0/24"}, ["ind-amber", "ind", "ip-amber", "ip"],
                 id="IPv4 CIDR"),
    pytest.param({"q": "2001:db8::/48"}, ["ip6"], id="IPv6 CIDR"),
    pytest.param({"q": "EVIL-SHOP.example"}, ["domain"], id="domain, any case"),
    pytest.param({"q": "amber-shop.example"}, ["ind-amber"], id="domain named in a pattern"),
    pytest.param({"q": "http://login.evil-shop.example/pay.php"}, ["url"], id="URL"),
    pytest.param({"q": "heodo"}, ["emotet"], id="family by alias"),
    pytest.param({"q": "Amberloader"}, ["amber-family"], id="family by name"),
    pytest.param({"q": "evil-shop*"}, ["domain"], id="domain prefix"),
    pytest.param({"q": "*shop.example*"}, ["ind-amber", "url", "domain"],
                 id="substring of domains and URLs"),
    pytest.param({"q": "203.0.113.1"}, [], id="nothing"),
    pytest.param({"type": "indicator"}, ["ind-expired", "ind-amber", "ind"], id="type"),
    pytest.param({"tlp": "amber"}, ["amber-family", "ind-amber", "ip-amber"], id="TLP amber"),
    pytest.param({"tlp": ["clear", "green"], "type": "malware"}, ["emotet"],
                 id="TLP green and type"),
    pytest.param({"source": WRITER},
                 ["amber-family", "emotet", "ind-expired", "ind-amber", "ind"],
                 id="source identity"),
    pytest.param({"valid": "1"}, ["ind-amber", "ind"], id="indicators currently valid"),
    pytest.param({"q": "198.51.100.7", "type": "indicator", "valid": "1"}, ["ind-amber", "ind"],
                 id="search and filters"),
    pytest.param({"from": "2000-01-01", "to": "2999-12-31", "type": "malware"},
                 ["amber-family", "emotet"], id="date-added range"),
    pytest.param({"to": "2000-01-01"}, [], id="date-added range before everything"),
]


@pytest.mark.parametrize("params, expected", SEARCHES)
@pytest.mark.parametrize("who", ["amber", "green"])
def test_search_and_filters_find_what_they_should(site: LiveServer, who: str,
                                                  params: dict[str, Any],
                                                  expected: list[str]) -> None:
    """Newest first, two per page: all of what matches, nothing else; the GREEN partner gets
    the same less every AMBER object."""
    if who == "green" and "tlp" in params and "amber" in params["tlp"]:
        params = {**params, "tlp": "green"}
        expected = [k for k in NEWEST if SEED[k]["object_marking_refs"] == [TLP["green"]]]
    with signed_in(site, who) as client:
        seen = every_page(client, BASE, params)
    assert seen == [k for k in expected if who == "amber" or k not in AMBER_KEYS]


def test_paging_newest_first_has_no_gaps_or_duplicates_while_objects_arrive(
        site: LiveServer) -> None:
    with signed_in(site, "amber") as client:
        first = client.get(BASE, params={"limit": "3", "type": "malware,ipv4-addr"})
        seen = [NAMES.get(i, i) for i in page_ids(first.text)]
        link = re.search(r'<a rel="next" href="([^"]+)"', first.text)
        n = 0
        while link:
            n += 1
            push(site, family(f"Arriving {n}", "green"), sco("ipv4-addr", f"192.0.2.{n}",
                                                             "green"))
            answer = client.get(unescape(link.group(1)).lstrip("/"))
            seen += [NAMES.get(i, i) for i in page_ids(answer.text)]
            link = re.search(r'<a rel="next" href="([^"]+)"', answer.text)
    assert seen == ["amber-family", "emotet", "ip-amber", "ip"]


def _csv_ids(text: str) -> list[str]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return [NAMES.get(r["id"], r["id"]) for r in rows]


@pytest.mark.parametrize("params", [
    pytest.param({}, id="everything"),
    pytest.param({"q": "198.51.100.0/24"}, id="CIDR"),
    pytest.param({"q": "*shop*", "tlp": ["green", "amber"]}, id="substring and TLP"),
    pytest.param({"type": "indicator", "valid": "1"}, id="valid indicators"),
])
@pytest.mark.parametrize("who", ["amber", "green"])
def test_exports_hold_exactly_what_the_pages_show(site: LiveServer, who: str,
                                                  params: dict[str, Any]) -> None:
    if who == "green" and "tlp" in params:
        params = {**params, "tlp": "green"}
    with signed_in(site, who) as client:
        shown = every_page(client, BASE, params)
        bundle = client.get(f"{BASE}export.json", params=params)
        table = client.get(f"{BASE}export.csv", params=params)
    assert bundle.status_code == table.status_code == 200
    assert bundle.headers["content-type"] == "application/json"
    assert table.headers["content-type"].startswith("text/csv")
    assert "attachment" in table.headers["content-disposition"]
    parsed = stix2.parse(bundle.content, allow_custom=True)
    assert [NAMES.get(o.id, o.id) for o in parsed.objects] == shown
    assert [NAMES.get(o["id"], o["id"]) for o in orjson.loads(bundle.content)["objects"]] == shown
    assert _csv_ids(table.text) == shown
    header = next(csv.reader(io.StringIO(table.text)))
    assert header == ["id", "type", "label", "tlp", "created_by_ref", "date_added",
                      "valid_from", "valid_until"]
    if who == "green":
        assert not AMBER_KEYS & set(shown)


def test_csv_rows_carry_the_values(site: LiveServer) -> None:
    with signed_in(site, "amber") as client:
        table = client.get(f"{BASE}export.csv", params={"q": "*old.example*"})
    assert table.status_code == 200
    [row] = list(csv.DictReader(io.StringIO(table.text)))
    assert (row["id"], row["valid_from"], row["valid_until"]) == (
        SEED["ind-expired"]["id"], "2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z")
    with signed_in(site, "amber") as client:
        table = client.get(f"{BASE}export.csv", params={"q": "heodo"})
    [row] = list(csv.DictReader(io.StringIO(table.text)))
    assert (row["type"], row["label"], row["tlp"], row["created_by_ref"]) == \
        ("malware", "Emotet", "TLP:GREEN", WRITER)


def test_a_green_partner_finds_no_amber_object_anywhere(site: LiveServer) -> None:
    """Every search, filter, the search across collections and both exports."""
    amber_ids = {SEED[k]["id"] for k in AMBER_KEYS}
    amber_words = ["Amberloader", "amber-shop.example", "198.51.100.9"]
    asked = [p.values[0] for p in SEARCHES] + [
        {"q": w} for w in amber_words] + [{"q": "*amber*"}, {"q": "amber*"}]
    with signed_in(site, "green") as client:
        for params in asked:
            params = {k: v for k, v in params.items() if k != "tlp"}
            for url in (BASE, f"{BASE}export.json", f"{BASE}export.csv", "ui/search/"):
                answer = client.get(url, params=params)
                assert answer.status_code == 200, (url, params, answer.text)
                text = answer.text  # a page: its results (the form echoes what was asked)
                if "text/html" in answer.headers["content-type"]:
                    text = "".join(re.findall(r'<table class="objects">.*?</table>', text,
                                              re.S))
                assert not any(i in text for i in amber_ids), (url, params)
                assert "Amberloader" not in text and "amber-shop" not in text, (url, params)
        refused = client.get(BASE, params={"tlp": "amber"})
        assert refused.status_code == 400


@pytest.mark.parametrize("who, expected", [
    pytest.param("writer", {"Shared indicators": ["ind-amber", "ind", "ip"],
                            "Secret holdings": []}, id="writer: both collections"),
    pytest.param("green", {"Shared indicators": ["ind", "ip"]}, id="green: its view"),
])
def test_search_across_collections(site: LiveServer, who: str,
                                   expected: dict[str, list[str]]) -> None:
    with signed_in(site, who) as client:
        answer = client.get("ui/search/", params={"q": "198.51.100.7"})
    assert answer.status_code == 200
    groups = re.findall(r'<h2><a href="[^"]+">([^<]+)</a>', answer.text)
    assert groups == [title for title, keys in expected.items() if keys]
    assert [NAMES.get(i, i) for i in page_ids(answer.text)] == \
        [k for keys in expected.values() for k in keys]


@pytest.mark.parametrize("params, message", [
    pytest.param({"q": "ab*"}, "at least 3 characters", id="short prefix -> 400"),
    pytest.param({"tlp": "purple"}, "not a TLP", id="unknown TLP -> 400"),
    pytest.param({"source": "not-an-identity"}, "identity id", id="bad source -> 400"),
    pytest.param({"from": "2024-13-01"}, "not a date", id="bad date -> 400"),
    pytest.param({"to": "yesterday"}, "YYYY-MM-DD", id="not a date -> 400"),
    pytest.param({"next": "bogus"}, "next", id="bad cursor -> 400"),
])
@pytest.mark.parametrize("path", ["", "export.csv"])
def test_a_mistaken_form_is_an_html_400(site: LiveServer, params: dict[str, str],
                                        message: str, path: str) -> None:
    with signed_in(site, "green") as client:
        answer = client.get(f"{BASE}{path}", params=params)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")
    assert message in unescape(answer.text)


def test_what_was_asked_is_escaped(site: LiveServer) -> None:
    with signed_in(site, "green") as client:
        for url in (BASE, "ui/search/"):
            html = client.get(url, params={"q": "<script>alert(1)</script>"}).text
            assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


@pytest.mark.parametrize("backend", backends.BACKENDS)
def test_an_export_is_audited_as_a_read(env: Env, backend: str,
                                        request: pytest.FixtureRequest) -> None:
    env = with_backend(env, backend, request)
    live = start_server(env)
    objects = [{"type": "malware", "spec_version": "2.1", "id": _id("malware", f"a{n}"),
                "created": T0, "modified": T0, "created_by_ref": ALICE, "name": f"Fam {n}",
                "is_family": True} for n in range(3)]
    try:
        answer = httpx.post(f"{live.collection(OPEN)}objects/", json={"objects": objects},
                            auth=env.basic("alice"),
                            headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=30)
        assert answer.json()["success_count"] == 3
        with signed_in(live, "alice") as client:
            table = client.get(f"ui/collections/{API_ROOT}/{OPEN}/export.csv",
                               params={"type": "malware"})
            assert len(_csv_ids(table.text)) == 3
    finally:
        live.stop()
    store = backends.open_store(env.settings)
    store.open()
    try:
        records = [r for r in audit.export(store, partner="alice") if r.get("export")]
    finally:
        store.close()
    [record] = records
    assert (record["kind"], record["result"], record["face"], record["export"],
            record["collection"]) == ("read", 200, "ui", "csv", OPEN)
    assert record["objects"]["count"] == 3
    assert sorted(v[0] for v in record["objects"]["versions"]) == sorted(
        o["id"] for o in objects)
