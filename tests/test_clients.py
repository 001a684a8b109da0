"""Real TAXII clients against a real server: taxii2-client 2.3.0 and stix2's TAXII data store.

Each client is used the way an integration would use it, with HTTP Basic (partner id and
password) and with a bearer API token.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import stix2
from requests.exceptions import HTTPError
from stix2.datastore import DataSourceError
from stix2.datastore.filters import Filter
from taxii2client.exceptions import AccessError
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from tests.conftest import (
    ALICE,
    HIDDEN,
    OPEN,
    READONLY,
    Env,
    LiveServer,
    start_server,
    write_env,
)

TAXII = "application/taxii+json;version=2.1"
_NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")  # the RFC 4122 URL namespace
T0 = "2024-01-01T00:00:00.000Z"


class BearerAuth(requests.auth.AuthBase):
    """An API token as `Authorization: Bearer` (taxii2-client's TokenAuth sends `Token`)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def auth(env: Env, partner: str, kind: str) -> dict[str, Any]:
    """Keyword arguments for any taxii2-client endpoint class."""
    if kind == "basic":
        user, password = env.basic(partner)
        return {"user": user, "password": password}
    return {"auth": BearerAuth(env.credentials[partner].token)}


AUTH_KINDS = [pytest.param("basic", id="basic"), pytest.param("bearer", id="bearer")]


def sid(kind: str, name: str) -> str:
    return f"{kind}--{uuid.uuid5(_NS, f'https://taxii-exchange.example/{name}')}"


def plain_indicator(n: int) -> dict[str, Any]:
    ranges = ("192.0.2", "198.51.100", "203.0.113")
    ip = f"{ranges[n % 3]}.{n % 250 + 1}"
    return {"type": "indicator", "spec_version": "2.1", "id": sid("indicator", f"bulk-{n}"),
            "created": T0, "modified": T0, "name": f"Bulk indicator {n}", "created_by_ref": ALICE,
            "pattern": f"[ipv4-addr:value = '{ip}']", "pattern_type": "stix",
            "valid_from": "2024-01-01T00:00:00Z"}


def as_dict(obj: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(obj.serialize()) if hasattr(obj, "serialize") else obj
    return result


# -- STIX content made with the stix2 library ---------------------------------------------------
@dataclass
class Intel:
    identity: stix2.Identity
    versions: list[stix2.Indicator]  # oldest first
    malware: stix2.Malware
    domain: stix2.DomainName
    relationship: stix2.Relationship

    @property
    def indicator(self) -> stix2.Indicator:
        return self.versions[-1]


def make_intel() -> Intel:
    """alice's intelligence: she is its author (the server binds provenance to the pusher)."""
    identity = stix2.Identity(id=ALICE, name="Example CERT",
                              identity_class="organization", created=T0, modified=T0)
    first = stix2.Indicator(id=sid("indicator", "phishing"), created=T0, modified=T0,
                            created_by_ref=identity.id, name="Phishing domain",
                            pattern="[domain-name:value = 'login.bank.example']",
                            pattern_type="stix", valid_from="2024-01-01T00:00:00Z")
    versions = [first,
                first.new_version(modified="2024-02-01T00:00:00.000Z", confidence=60),
                first.new_version(modified="2024-03-01T00:00:00.000Z", confidence=90)]
    malware = stix2.Malware(id=sid("malware", "kit"), name="Example phishing kit",
                            is_family=True, created=T0, modified=T0, created_by_ref=ALICE)
    relationship = stix2.Relationship(first.id, "indicates", malware.id,
                                      id=sid("relationship", "kit"), created=T0, modified=T0,
                                      created_by_ref=ALICE)
    return Intel(identity, versions, malware, stix2.DomainName(value="login.bank.example"),
                 relationship)


# -- servers ------------------------------------------------------------------------------------
BULK = 2500
BULK_MAX_PAGE = 2000  # below stix2's items_per_page of 5000, so the server caps its requests


@dataclass
class Bulk:
    live: LiveServer
    objects: list[dict[str, Any]]  # in the order pushed, which is date_added order

    @property
    def ids(self) -> list[str]:
        return [o["id"] for o in self.objects]

    def collection(self, kind: str = "basic") -> Collection:
        return Collection(self.live.collection(), **auth(self.live.env, "alice", kind))


@pytest.fixture(scope="module")
def bulk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bulk]:
    """One server holding 2,500 indicators, pushed with taxii2-client in three requests."""
    env = write_env(tmp_path_factory.mktemp("bulk"), max_page_size=BULK_MAX_PAGE)
    live = start_server(env)
    objects = [plain_indicator(n) for n in range(BULK)]
    try:
        with Collection(live.collection(), **auth(env, "alice", "bearer")) as collection:
            for start in range(0, BULK, 1000):
                status = collection.add_objects({"objects": objects[start:start + 1000]})
                assert status.status == "complete"
                assert status.success_count == len(objects[start:start + 1000])
        yield Bulk(live, objects)
    finally:
        live.stop()


@pytest.fixture
def slow_live(env: Env) -> Iterator[LiveServer]:
    """A server that answers a push at once, pending, so clients must poll its status."""
    settings = dataclasses.replace(env.settings, post_wait_seconds=0)
    live = start_server(dataclasses.replace(env, settings=settings))
    yield live
    live.stop()


# -- taxii2-client: discovery, API roots, collections -------------------------------------------
@pytest.mark.parametrize("kind", AUTH_KINDS)
@pytest.mark.parametrize(("partner", "visible"), [
    pytest.param("alice", {OPEN: (True, True), READONLY: (True, False)}, id="alice"),
    pytest.param("bob", {READONLY: (True, False)}, id="bob"),
    pytest.param("carol", {HIDDEN: (True, True)}, id="carol"),
])
def test_discovery_api_root_and_visible_collections(live: LiveServer, partner: str, kind: str,
                                                    visible: dict[str, tuple[bool, bool]]):
    with Server(live.url + "taxii2/", **auth(live.env, partner, kind)) as server:
        assert server.title
        assert [root.url for root in server.api_roots] == [live.root]
        assert server.default is not None and server.default.url == live.root
        root = server.api_roots[0]
        assert root.title == "Test root"
        assert root.versions == [TAXII]
        assert root.max_content_length == 1024 * 1024
        found = {c.id: (c.can_read, c.can_write) for c in root.collections}
        assert found == visible
        for collection in root.collections:
            assert collection.url == f"{live.root}collections/{collection.id}/"
            assert collection.media_types == ["application/stix+json;version=2.1"]


def test_invisible_collection_is_not_found(live: LiveServer):
    hidden = Collection(live.collection(HIDDEN), **auth(live.env, "alice", "bearer"))
    with pytest.raises(HTTPError) as raised:
        hidden.refresh()
    assert raised.value.response.status_code == 404
    assert raised.value.response.headers["Content-Type"] == TAXII
    assert raised.value.response.json()["http_status"] == "404"


def test_wrong_password_is_refused(live: LiveServer):
    with Server(live.url + "taxii2/", user="alice", password="not-it") as server, \
            pytest.raises(HTTPError) as raised:
        server.refresh()
    assert raised.value.response.status_code == 401
    assert "WWW-Authenticate" in raised.value.response.headers


# -- taxii2-client: objects ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", AUTH_KINDS)
def test_collection_object_endpoints(live: LiveServer, kind: str):
    intel = make_intel()
    indicator_id = intel.indicator.id
    stamps = [as_dict(v)["modified"] for v in intel.versions]
    with Collection(live.collection(), **auth(live.env, "alice", kind)) as collection:
        bundle = stix2.Bundle(intel.identity, *intel.versions, intel.malware, intel.domain,
                              intel.relationship)
        status = collection.add_objects(bundle.serialize())
        assert (status.status, status.total_count, status.success_count) == ("complete", 7, 7)

        everything = collection.get_objects()
        assert everything["more"] is False
        assert [o["id"] for o in everything["objects"]] == \
            [intel.identity.id, indicator_id, intel.malware.id, intel.domain.id,
             intel.relationship.id]  # latest versions, in date_added order
        assert collection.get_objects(type="malware")["objects"] == [as_dict(intel.malware)]
        assert collection.get_objects(type=["malware", "domain-name"])["objects"] == \
            [as_dict(intel.malware), as_dict(intel.domain)]
        assert collection.get_objects(id=indicator_id, version="all")["objects"] == \
            [as_dict(v) for v in intel.versions]
        versioned = collection.get_objects(id=indicator_id,
                                           version=datetime(2024, 2, 1, tzinfo=UTC))
        assert versioned["objects"] == [as_dict(intel.versions[1])]
        assert collection.get_objects(spec_version="2.0") == {"more": False}

        assert collection.get_object(indicator_id)["objects"] == [as_dict(intel.indicator)]
        assert collection.get_object(indicator_id, version="first")["objects"] == \
            [as_dict(intel.versions[0])]
        assert collection.object_versions(indicator_id) == {"more": False, "versions": stamps}

        manifest = collection.get_manifest(id=indicator_id, version="all")["objects"]
        assert [(m["id"], m["version"]) for m in manifest] == \
            [(indicator_id, stamp) for stamp in stamps]
        assert all(m["media_type"] == "application/stix+json;version=2.1" for m in manifest)
        later = collection.get_objects(added_after=manifest[0]["date_added"])
        assert intel.identity.id not in [o["id"] for o in later["objects"]]

        collection.delete_object(indicator_id, version=stamps[-1])
        assert collection.object_versions(indicator_id)["versions"] == stamps[:-1]
        assert collection.get_object(indicator_id)["objects"] == [as_dict(intel.versions[1])]
        collection.delete_object(indicator_id)
        with pytest.raises(HTTPError) as raised:
            collection.get_object(indicator_id)
        assert raised.value.response.status_code == 404
        assert indicator_id not in [o["id"] for o in collection.get_objects()["objects"]]


def test_read_only_collection_through_the_client(live: LiveServer):
    with Collection(live.collection(READONLY), **auth(live.env, "bob", "basic")) as collection:
        assert (collection.title, collection.alias, collection.can_read,
                collection.can_write) == ("Read only", "readonly", True, False)
        assert collection.get_objects() == {"more": False}
        with pytest.raises(AccessError):  # the client checks can_write before it pushes
            collection.add_objects({"objects": []})
    with Collection(live.collection(OPEN), **auth(live.env, "alice", "basic")) as collection:
        with pytest.raises(HTTPError) as raised:
            collection.get_object(sid("indicator", "never-pushed"))
        assert raised.value.response.status_code == 404


@pytest.mark.parametrize("kind", AUTH_KINDS)
def test_add_objects_polls_status_until_complete(slow_live: LiveServer, kind: str):
    objects = [plain_indicator(n) for n in range(200)]
    bad = {"type": "indicator", "spec_version": "2.1", "id": sid("indicator", "no-pattern"),
           "created": T0, "modified": T0, "created_by_ref": ALICE}
    with Collection(slow_live.collection(), **auth(slow_live.env, "alice", kind)) as collection:
        status = collection.add_objects({"objects": [*objects, bad]}, wait_for_completion=True,
                                        poll_interval=0.05, timeout=10)
        assert status.status == "complete" and bool(status)
        assert (status.total_count, status.success_count, status.failure_count,
                status.pending_count) == (201, 200, 1, 0)
        assert [f["id"] for f in status.failures] == [bad["id"]]
        assert {s["id"] for s in status.successes} == {o["id"] for o in objects}

        more = [plain_indicator(n) for n in range(200, 210)]
        pending = collection.add_objects({"objects": more}, wait_for_completion=False)
        assert pending.status == "pending" and not pending
        assert (pending.total_count, pending.pending_count) == (10, 10)
        pending.wait_until_final(poll_interval=0.05, timeout=10)
        assert (pending.status, pending.success_count) == ("complete", 10)

    with ApiRoot(slow_live.root, **auth(slow_live.env, "alice", kind)) as root:
        again = root.get_status(pending.id)
        assert (again.status, again.success_count) == ("complete", 10)
    with ApiRoot(slow_live.root, **auth(slow_live.env, "bob", kind)) as root, \
            pytest.raises(HTTPError) as raised:
        root.get_status(pending.id)  # another partner's push
    assert raised.value.response.status_code == 404


# -- taxii2-client: paging over 2,500 objects -----------------------------------------------------
@pytest.mark.parametrize(("per_request", "sizes"), [
    pytest.param(1000, [1000, 1000, 500], id="per_request=1000"),
    pytest.param(333, [333] * 7 + [169], id="per_request=333"),
    pytest.param(2500, [2000, 500], id="per_request above the server's cap"),
])
def test_as_pages_gets_every_object_once(bulk: Bulk, per_request: int, sizes: list[int]):
    with bulk.collection("bearer") as collection:
        pages = list(as_pages(collection.get_objects, per_request=per_request))
    assert [len(p["objects"]) for p in pages] == sizes
    assert [o["id"] for p in pages for o in p["objects"]] == bulk.ids
    assert [p["more"] for p in pages] == [True] * (len(pages) - 1) + [False]


def test_as_pages_over_manifest_with_filters(bulk: Bulk):
    with bulk.collection("basic") as collection:
        first = collection.get_manifest(limit=100)["objects"]
        cut = first[-1]["date_added"]
        pages = list(as_pages(collection.get_manifest, per_request=700, type="indicator",
                              added_after=cut))
    records = [r for p in pages for r in p["objects"]]
    assert [r["id"] for r in records] == bulk.ids[100:]
    assert all(r["date_added"] > cut for r in records)
    stamps = [r["date_added"] for r in records]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_default_page_and_cap(bulk: Bulk):
    with bulk.collection("bearer") as collection:
        default = collection.get_objects()
        assert len(default["objects"]) == 1000 and default["more"] is True
        capped = collection.get_objects(limit=BULK)
        assert len(capped["objects"]) == BULK_MAX_PAGE and capped["more"] is True
        rest = collection.get_objects(limit=BULK, next=capped["next"])
        assert rest["more"] is False
        assert [o["id"] for o in capped["objects"] + rest["objects"]] == bulk.ids


def test_stix2_source_pages_through_a_large_collection(bulk: Bulk):
    with bulk.collection("basic") as collection:
        source = stix2.TAXIICollectionSource(collection)  # asks for 5000 a page
        found = source.query([Filter("type", "=", "indicator")])
        assert sorted(o.id for o in found) == sorted(bulk.ids)
        picked = source.query([Filter("name", "=", "Bulk indicator 2499")])  # filtered locally
        assert [o.id for o in picked] == [bulk.ids[2499]]


# -- stix2: TAXIICollectionSource / Sink / Store and Environment -------------------------------
@pytest.mark.parametrize("kind", AUTH_KINDS)
def test_stix2_sink_and_source(live: LiveServer, kind: str):
    intel = make_intel()
    with Collection(live.collection(), **auth(live.env, "alice", kind)) as collection:
        sink = stix2.TAXIICollectionSink(collection)
        sink.add(stix2.Bundle(intel.identity, intel.versions[0]))  # a bundle
        sink.add([intel.versions[1], intel.malware])  # a list: one push each
        sink.add(as_dict(intel.versions[2]))  # a dict
        sink.add(intel.relationship.serialize())  # a JSON string
        sink.add(intel.domain)

        source = stix2.TAXIICollectionSource(collection)
        assert source.get(intel.indicator.id) == intel.indicator
        assert source.get(intel.malware.id) == intel.malware
        assert source.get(sid("indicator", "never-pushed")) is None  # a 404 answer
        assert source.all_versions(intel.indicator.id) == intel.versions
        assert source.all_versions(sid("indicator", "never-pushed")) == []
        assert source.query([Filter("type", "=", "malware")]) == [intel.malware]
        assert source.query([Filter("type", "=", "indicator"),
                             Filter("version", "=", "first")]) == [intel.versions[0]]
        assert source.query([Filter("id", "=", intel.indicator.id),
                             Filter("confidence", ">", 70)]) == [intel.indicator]
        related = source.related_to(intel.malware, relationship_type="indicates")
        assert related == [intel.indicator]


def test_stix2_environment_and_store(live: LiveServer):
    intel = make_intel()
    with Collection(live.collection(), **auth(live.env, "alice", "bearer")) as collection:
        environment = stix2.Environment(source=stix2.TAXIICollectionSource(collection),
                                        sink=stix2.TAXIICollectionSink(collection))
        environment.add([intel.identity, *intel.versions, intel.malware])
        assert environment.get(intel.indicator.id) == intel.indicator
        assert environment.get(sid("malware", "unknown")) is None
        assert environment.all_versions(intel.indicator.id) == intel.versions
        assert environment.query([Filter("type", "=", "identity")]) == [intel.identity]
        assert environment.creator_of(intel.indicator) == intel.identity

        store = stix2.TAXIICollectionStore(collection)
        store.add(intel.relationship)
        assert store.get(intel.relationship.id) == intel.relationship
        assert store.relationships(intel.malware) == [intel.relationship]


def test_stix2_respects_collection_access(live: LiveServer):
    with Collection(live.collection(READONLY), **auth(live.env, "bob", "basic")) as readonly:
        assert stix2.TAXIICollectionSource(readonly).query() == []
        with pytest.raises(DataSourceError):
            stix2.TAXIICollectionSink(readonly)
    with Collection(live.collection(HIDDEN), **auth(live.env, "alice", "bearer")) as hidden, \
            pytest.raises(DataSourceError):
        stix2.TAXIICollectionSource(hidden)  # the server answers 404 for it
