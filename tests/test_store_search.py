"""The search index and the pages' filters in the store, on every backend: terms decided at
write time, every search and filter applied inside the scan (a page holds `limit` rows, `more`
is right), newest first with keyset paging, deletes and purges taking their terms along. The
SQLite index's own tables, migration and query plans are in tests/test_store_sqlite.py; the
MongoDB finds' plans in tests/test_store_mongo.py."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from exchange.markings import TLP
from exchange.model import (
    AMBER,
    CLEAR,
    FIRST,
    GREEN,
    RED,
    Candidate,
    Filters,
    Query,
    Visibility,
)
from exchange.stix import timestamp_micros
from exchange.store import Store, terms
from tests.backends import Opener
from tests.test_store import COLL, OTHER, pending

ME = "identity--0e5b0000-0000-4000-8000-0000000000a1"
THEM = "identity--0e5b0000-0000-4000-8000-0000000000a2"
T0 = "2024-01-01T00:00:00.000Z"


def _id(kind: str, key: str) -> str:
    return f"{kind}--{uuid.uuid5(uuid.NAMESPACE_URL, key)}"


def ind(key: str, pattern: str, *, tlp: str = "green", source: str = ME,
        valid_until: str | None = None, valid_from: str = "2024-01-01T00:00:00Z",
        modified: str = T0) -> dict[str, Any]:
    obj = {"type": "indicator", "spec_version": "2.1", "id": _id("indicator", key),
           "created": T0, "modified": modified, "created_by_ref": source, "pattern": pattern,
           "pattern_type": "stix", "valid_from": valid_from, "name": key,
           "object_marking_refs": [TLP[tlp]]}
    if valid_until:
        obj["valid_until"] = valid_until
    return obj


def sdo(kind: str, name: str, *, tlp: str = "green", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1", "id": _id(kind, name), "created": T0,
            "modified": T0, "created_by_ref": ME, "name": name,
            "object_marking_refs": [TLP[tlp]], **extra}


def sco(kind: str, value: str, *, tlp: str = "green") -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1", "id": _id(kind, value), "value": value,
            "object_marking_refs": [TLP[tlp]]}


RANKS = {"clear": CLEAR, "green": GREEN, "amber": AMBER, "red": RED}
OBJECTS = {
    "ip": sco("ipv4-addr", "198.51.100.7"),
    "ip-near": sco("ipv4-addr", "198.51.100.200"),
    "ip-far": sco("ipv4-addr", "203.0.113.9"),
    "ip6": sco("ipv6-addr", "2001:db8::7"),
    "domain": sco("domain-name", "evil-shop.example"),
    "idn": sco("domain-name", "xn--bcher-kva.example"),
    "url": sco("url", "http://login.evil-shop.example/Pay.php"),
    "cycle": sco("domain-name", "abcab.example"),  # every trigram of "abcabcab", not it
    "file": {"type": "file", "spec_version": "2.1", "id": _id("file", "f"),
             "hashes": {"SHA-256": "AB" * 32}, "name": "invoice.exe",
             "object_marking_refs": [TLP["green"]]},
    "malware": sdo("malware", "Emotet", is_family=True, aliases=["Heodo"]),
    "actor": sdo("threat-actor", "Wizard Spider", aliases=["Grim Spider"]),
    "pattern": sdo("attack-pattern", "Phishing"),
    "vuln": sdo("vulnerability", "CVE-2021-44228", external_references=[
        {"source_name": "cve", "external_id": "CVE-2021-44228"}]),
    "ind-ip": ind("ind-ip", "[ipv4-addr:value = '198.51.100.7']"),
    "ind-url": ind("ind-url", "[url:value = 'http://pay.evil-shop.example/x']"),
    "ind-amber": ind("ind-amber", "[ipv4-addr:value = '198.51.100.7'] OR "
                                  "[domain-name:value = 'evil-shop.example']", tlp="amber"),
    "ind-expired": ind("ind-expired", "[domain-name:value = 'old.example']", source=THEM,
                       valid_until="2024-06-01T00:00:00Z"),
    "ind-future": ind("ind-future", "[domain-name:value = 'soon.example']", source=THEM,
                      valid_from="2999-01-01T00:00:00Z"),
}
ORDER = list(OBJECTS)  # written in this order: newest first is the reverse


def candidate(obj: dict[str, Any]) -> Candidate:
    tlp = next(name for name, ref in TLP.items() if ref in obj.get("object_marking_refs", []))
    return Candidate(id=obj["id"], type=obj["type"], spec_version="2.1",
                     version=obj.get("modified"), body=orjson.dumps(obj), rank=RANKS[tlp])


def write(store: Store, *objs: dict[str, Any], collection: str = COLL) -> None:
    store.write(collection, [candidate(o) for o in objs], None, lambda outcomes: pending())


@pytest.fixture
def store(opener: Opener) -> Store:
    """The objects above in a store of each backend (tests/conftest.py `opener`)."""
    opened = opener()
    write(opened, *OBJECTS.values())
    write(opened, OBJECTS["ip"], sco("ipv4-addr", "198.51.100.8"), collection=OTHER)
    return opened


def found(store: Store, view: Visibility | None = None, **filters: Any) -> list[str]:
    """Every page, newest first, two at a time: the keys of what was found."""
    names = {o["id"]: key for key, o in OBJECTS.items()}
    seen, before = [], filters.pop("before", None)  # a range's end, then the cursor
    while True:
        page = store.query(Query(collection=COLL, limit=2, newest_first=True, before=before,
                                 visibility=view, **filters), with_body=False)
        seen += [names[e.id] for e in page.entries]
        assert len(page.entries) == 2 or not page.more
        if not page.more:
            return seen
        before = page.last_added


GREEN_ONLY = Visibility(max_rank=GREEN)


@pytest.mark.parametrize("asked, everything, green", [
    pytest.param("198.51.100.7", ["ind-amber", "ind-ip", "ip"], ["ind-ip", "ip"],
                 id="an address finds the address and the indicators naming it"),
    pytest.param("198.51.100.0/24", ["ind-amber", "ind-ip", "ip-near", "ip"],
                 ["ind-ip", "ip-near", "ip"], id="an IPv4 CIDR range"),
    pytest.param("2001:db8::/32", ["ip6"], ["ip6"], id="an IPv6 CIDR range"),
    pytest.param("2001:DB8:0::7", ["ip6"], ["ip6"], id="an IPv6 address in another form"),
    pytest.param("Evil-Shop.example", ["ind-amber", "domain"], ["domain"],
                 id="a domain, any case"),
    pytest.param("bücher.example", ["idn"], ["idn"], id="an internationalised domain"),
    pytest.param("http://login.evil-shop.example/Pay.php", ["url"], ["url"], id="a URL"),
    pytest.param("ab" * 32, ["file"], ["file"], id="a hash"),
    pytest.param("emotet", ["malware"], ["malware"], id="a malware family"),
    pytest.param("Heodo", ["malware"], ["malware"], id="an alias"),
    pytest.param("grim spider", ["actor"], ["actor"], id="a threat actor's alias"),
    pytest.param("phishing", ["pattern"], ["pattern"], id="an attack pattern"),
    pytest.param("cve-2021-44228", ["vuln"], ["vuln"], id="a CVE id"),
    pytest.param("evil-shop*", ["ind-amber", "domain"], ["domain"], id="a prefix of domains"),
    pytest.param("HTTP://login.evil*", ["url"], ["url"], id="a prefix of URLs"),
    pytest.param("*evil-shop*", ["ind-amber", "ind-url", "url", "domain"],
                 ["ind-url", "url", "domain"], id="a substring of domains and URLs"),
    pytest.param("*pay.php*", ["url"], ["url"], id="a substring of a URL's path"),
    pytest.param("*abcabcab*", [], [], id="every trigram of a substring is not the substring"),
    pytest.param("*bcab.ex*", ["cycle"], ["cycle"], id="a substring across a dot"),
    pytest.param("bcab*", [], [], id="a prefix is the start of a text"),
    pytest.param("198.51.100.9", [], [], id="an address nothing names"),
    pytest.param("Wizard", [], [], id="part of a name is not a name"),
])
def test_each_search_finds_what_it_should_and_nothing_else(
        store: Store, asked: str, everything: list[str], green: list[str]) -> None:
    search = terms.search(asked)
    assert found(store, search=search) == everything
    assert found(store, GREEN_ONLY, search=search) == green


@pytest.mark.parametrize("filters, everything, green", [
    pytest.param({}, ORDER[::-1], [k for k in ORDER[::-1] if k != "ind-amber"],
                 id="no filter: newest first"),
    pytest.param({"types": ("indicator",)},
                 ["ind-future", "ind-expired", "ind-amber", "ind-url", "ind-ip"],
                 ["ind-future", "ind-expired", "ind-url", "ind-ip"], id="type"),
    pytest.param({"ranks": (AMBER,)}, ["ind-amber"], [], id="TLP amber"),
    pytest.param({"ranks": (GREEN,), "types": ("malware", "threat-actor")},
                 ["actor", "malware"], ["actor", "malware"], id="TLP and two types"),
    pytest.param({"source": THEM}, ["ind-future", "ind-expired"],
                 ["ind-future", "ind-expired"], id="source identity"),
    pytest.param({"valid_at": timestamp_micros("2025-01-01T00:00:00Z")},
                 ["ind-amber", "ind-url", "ind-ip"], ["ind-url", "ind-ip"],
                 id="indicators valid now"),
    pytest.param({"valid_at": timestamp_micros("2024-03-01T00:00:00Z"), "source": THEM},
                 ["ind-expired"], ["ind-expired"], id="valid then, and source"),
    pytest.param({"search": terms.search("198.51.100.7"), "types": ("indicator",)},
                 ["ind-amber", "ind-ip"], ["ind-ip"], id="search and type"),
    pytest.param({"search": terms.search("*evil-shop*"), "ranks": (AMBER,)},
                 ["ind-amber"], [], id="substring and TLP"),
])
def test_filters_are_applied_in_the_scan(store: Store, filters: dict[str, Any],
                                         everything: list[str], green: list[str]) -> None:
    assert found(store, **filters) == everything
    assert found(store, GREEN_ONLY, **filters) == green


def test_a_date_added_range(store: Store) -> None:
    added = {e.id: e.date_added for e in store.query(
        Query(collection=COLL, limit=100), with_body=False).entries}
    low, high = added[OBJECTS["ip6"]["id"]], added[OBJECTS["malware"]["id"]]
    window = found(store, after=low, before=high)
    assert window == ORDER[ORDER.index("ip6") + 1:ORDER.index("malware")][::-1]
    assert found(store, after=low, before=high, search=terms.search("*evil-shop*")) == \
        ["url", "domain"]


def test_newest_first_pages_have_no_gap_or_duplicate_while_objects_arrive(
        store: Store) -> None:
    seen, before = [], None
    for n in range(20):
        page = store.query(Query(collection=COLL, limit=3, newest_first=True, before=before,
                                 search=terms.search("198.51.100.0/24") if n % 2 else None),
                           with_body=False)
        write(store, sco("ipv4-addr", f"198.51.100.{100 + n}"))  # newer than every page
        if n % 2 == 0:  # browse pages; searches above only check they run mid-paging
            seen += [e.id for e in page.entries]
            before = page.last_added
            if not page.more:
                break
    assert seen == [OBJECTS[k]["id"] for k in ORDER[::-1]]


def test_delete_and_purge_take_their_terms_along(store: Store) -> None:
    gone = store.delete(Query(collection=COLL, limit=1, ids=(OBJECTS["url"]["id"],)))
    assert gone == 1
    assert found(store, search=terms.search("http://login.evil-shop.example/Pay.php")) == []
    assert found(store, search=terms.search("*pay.php*")) == []
    # Retention: everything at GREEN goes (a cutoff in the future).
    store.purge(COLL, [None, 2**62, None, None, None], limit=1000)
    assert found(store, search=terms.search("198.51.100.0/24")) == ["ind-amber"]
    assert found(store, search=terms.search("*example*")) == ["ind-amber"]
    assert found(store, search=terms.search("evil*")) == ["ind-amber"]


def test_a_new_version_is_found_by_its_own_terms_only(store: Store) -> None:
    moved = ind("ind-ip", "[ipv4-addr:value = '203.0.113.50']", modified="2024-02-01T00:00:00Z")
    write(store, moved)
    assert found(store, search=terms.search("203.0.113.50")) == ["ind-ip"]
    assert found(store, search=terms.search("198.51.100.7")) == ["ind-amber", "ip"]


def test_a_filter_without_matches_leaves_the_page_empty_not_short(store: Store) -> None:
    """A filter inside the scan: `more` says whether more match, not whether more exist."""
    page = store.query(Query(collection=COLL, limit=1, newest_first=True, source=THEM),
                       with_body=False)
    assert len(page.entries) == 1 and page.more
    page = store.query(dataclasses.replace(
        Query(collection=COLL, limit=1, newest_first=True, source=THEM),
        before=page.last_added), with_body=False)
    assert len(page.entries) == 1 and not page.more


# -- every filter is answered by every backend -------------------------------------------------
REL = sdo("relationship", "ind-ip indicates malware", relationship_type="indicates",
          source_ref=OBJECTS["ind-ip"]["id"], target_ref=OBJECTS["malware"]["id"])
NAMES = {**{o["id"]: key for key, o in OBJECTS.items()}, REL["id"]: "rel"}
NOW = timestamp_micros("2025-01-01T00:00:00Z")
# Each Filters field set on its own, and what it leaves of the default answer (every newest
# version, oldest date_added first) over the objects above, a relationship from ind-ip to the
# malware, and a second version of ind-ip (so the default answer ends "..., rel, ind-ip").
EACH_FIELD = [
    pytest.param("limit", 2, lambda d: d[:2], id="limit"),
    pytest.param("ids", (OBJECTS["malware"]["id"],), lambda d: ["malware"], id="ids"),
    pytest.param("types", ("malware",), lambda d: ["malware"], id="types"),
    pytest.param("versions", (FIRST,), lambda d: ORDER + ["rel"], id="versions"),
    pytest.param("spec_versions", ("2.0",), lambda d: [], id="spec_versions"),
    pytest.param("after", "malware", lambda d: d[d.index("malware") + 1:], id="after"),
    pytest.param("refers_to", OBJECTS["malware"]["id"], lambda d: ["rel"], id="refers_to"),
    pytest.param("newest_first", True, lambda d: d[::-1], id="newest_first"),
    pytest.param("before", "malware", lambda d: d[:d.index("malware")], id="before"),
    pytest.param("ranks", (AMBER,), lambda d: ["ind-amber"], id="ranks"),
    pytest.param("source", THEM, lambda d: ["ind-expired", "ind-future"], id="source"),
    pytest.param("valid_at", NOW, lambda d: ["ind-url", "ind-amber", "ind-ip"],
                 id="valid_at"),
    pytest.param("search", terms.search("198.51.100.7"), lambda d: ["ip", "ind-amber", "ind-ip"],
                 id="search"),
]


def test_the_table_below_names_every_filter() -> None:
    """A new Filters field must be added to EACH_FIELD, so every backend is held to it."""
    assert [p.id for p in EACH_FIELD] == [f.name for f in dataclasses.fields(Filters)]


@pytest.mark.parametrize("name, value, expected", EACH_FIELD)
@pytest.mark.parametrize("view", [pytest.param(None, id="sees everything"),
                                  pytest.param(Visibility(max_rank=AMBER), id="amber")])
def test_every_filter_changes_the_answer(store: Store, name: str, value: Any,
                                         expected: Callable[[list[str]], list[str]],
                                         view: Visibility | None) -> None:
    """Each field, set alone, gives exactly what it should: a backend that ignored it would
    give the default answer, which differs from it in every row of the table."""
    related = dataclasses.replace(candidate(REL), refs=(REL["source_ref"], REL["target_ref"]))
    store.write(COLL, [related], None, lambda outcomes: pending())
    write(store, ind("ind-ip", "[ipv4-addr:value = '198.51.100.7']",
                     modified="2024-02-01T00:00:00.000Z"))

    def answer(**field: Any) -> list[str]:
        query = Query(collection=COLL, limit=field.pop("limit", 100), visibility=view, **field)
        return [NAMES[e.id] for e in store.query(query, with_body=False).entries]

    default = answer()
    assert default[-2:] == ["rel", "ind-ip"]
    if name in ("after", "before"):  # the date_added of the object named
        value = next(e.date_added for e in store.query(
            Query(collection=COLL, limit=100, ids=(OBJECTS[value]["id"],)),
            with_body=False).entries)
    assert expected(default) != default
    assert answer(**{name: value}) == expected(default)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LaterQuery(Query):
    """A Query with a field added after the backends were written."""

    scope: str = ""


def test_a_field_a_backend_does_not_answer_is_refused_not_ignored(store: Store) -> None:
    with pytest.raises(NotImplementedError, match="Query.scope"):
        store.query(LaterQuery(collection=COLL, limit=5, scope="eu"), with_body=False)
    assert len(store.query(LaterQuery(collection=COLL, limit=5), with_body=False).entries) == 5
