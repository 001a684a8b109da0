"""Raw HTTP against a real server: TAXII 2.1 status codes, media types, endpoints and filters.

Read-only tables run against one seeded server per module and backend (small page sizes, so
paging shows with few objects); tests that push or delete get a fresh server of their own
(`live`). Every test runs on each store backend (tests/backends.py): SQLite and MongoDB.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exchange.policy import partners
from exchange.store.mongo import MongoStore
from exchange.store.sqlite import SQLiteStore
from tests import backends
from tests.conftest import (
    ALICE,
    API_ROOT,
    BOB,
    HIDDEN,
    OPEN,
    READONLY,
    Env,
    LiveServer,
    start_server,
    with_backend,
    write_env,
)

TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
MAX_PAGE, DEFAULT_PAGE = 50, 20
DROPBOX = "44444444-4444-4444-8444-444444444444"  # bob (group ro) may write but not read
DROPBOX_DEF = {"id": DROPBOX, "api_root": API_ROOT, "alias": "dropbox", "title": "Drop box",
               "read": [], "write": ["group:ro"], "default_marking": "amber"}

# -- test data: documentation IP ranges and .example names only ---------------------------
_NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")  # the RFC 4122 URL namespace
_SCO_NS = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")  # STIX 2.1 SCO id namespace
T0 = "2024-01-01T00:00:00.000Z"


def sid(kind: str, name: str) -> str:
    """A stable STIX id, so tables can name objects before the server exists."""
    return f"{kind}--{uuid.uuid5(_NS, f'https://taxii-exchange.example/{name}')}"


def indicator(ident: str, modified: str = T0, ip: str = "198.51.100.7",
              **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": ident, "created": T0,
            "created_by_ref": ALICE,
            "modified": modified, "name": f"C2 server {ip}",
            "pattern": f"[ipv4-addr:value = '{ip}']", "pattern_type": "stix",
            "valid_from": "2024-01-01T00:00:00Z", **extra}


def ipv4(value: str) -> dict[str, Any]:
    # STIX 2.1 deterministic SCO id: UUIDv5 of the id-contributing properties.
    ident = uuid.uuid5(_SCO_NS, json.dumps({"value": value}, separators=(",", ":")))
    return {"type": "ipv4-addr", "spec_version": "2.1", "id": f"ipv4-addr--{ident}",
            "value": value}


IND = sid("indicator", "c2")
IND_V1 = indicator(IND, "2024-01-01T00:00:00.000Z")
IND_V2 = indicator(IND, "2024-02-01T00:00:00.000Z", name="C2 server, confirmed")
IND_V3 = indicator(IND, "2024-03-01T00:00:00.000Z", name="C2 server, still active")
MAL = {"type": "malware", "spec_version": "2.1", "id": sid("malware", "loader"),
       "created": T0, "modified": T0, "name": "Example loader", "is_family": True,
       "created_by_ref": ALICE}
SCO = ipv4("192.0.2.10")
REL = {"type": "relationship", "spec_version": "2.1", "id": sid("relationship", "indicates"),
       "created": T0, "modified": T0, "relationship_type": "indicates", "created_by_ref": ALICE,
       "source_ref": IND, "target_ref": MAL["id"]}
FILLERS = [indicator(sid("indicator", f"filler-{i}"), ip=f"203.0.113.{i}") for i in range(1, 61)]
# One push, in this order: date_added follows it.
POSTED = [IND_V1, MAL, IND_V2, SCO, REL, IND_V3, *FILLERS]
LATEST = [o for o in POSTED if o is not IND_V1 and o is not IND_V2]
UNKNOWN_IND = sid("indicator", "never-pushed")

# URL paths of the collections, relative to the server.
OPN = f"{API_ROOT}/collections/{OPEN}/"
RDO = f"{API_ROOT}/collections/{READONLY}/"
DRP = f"{API_ROOT}/collections/{DROPBOX}/"


def key(obj: dict[str, Any]) -> tuple[str, str | None]:
    return obj["id"], obj.get("modified")


def keys(objects: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [key(o) for o in objects]


# -- requests --------------------------------------------------------------------------------
@dataclass
class Req:
    method: str
    path: str  # relative to the server URL; "{status}" is the seeded push's status id
    who: str | None = "alice"  # bearer token of a partner, "basic:<partner>", or None
    headers: dict[str, str | None] = field(default_factory=dict)  # None: send no such header
    body: bytes | None = None


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def credentials(env: Env, who: str | None) -> dict[str, str]:
    if who is None:
        return {}
    if who.startswith("basic:"):
        return basic(*env.basic(who.removeprefix("basic:")))
    return env.bearer(who)


def send(client: httpx.Client, env: Env, req: Req, **values: str) -> httpx.Response:
    headers = {"Accept": TAXII, **credentials(env, req.who)}
    if req.body is not None:
        headers["Content-Type"] = TAXII
    headers.update({k: v for k, v in req.headers.items() if v is not None})
    request = client.build_request(req.method, req.path.format(**values), headers=headers,
                                   content=req.body)
    for name in (k for k, v in req.headers.items() if v is None):
        del request.headers[name]
    return client.send(request)


def assert_taxii(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == TAXII
    return response.json() if response.content else None


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    body = assert_taxii(response, status)
    assert body["http_status"] == str(status)
    assert isinstance(body["title"], str) and body["title"]
    return body


def push(client: httpx.Client, url: str, objects: list[Any], headers: dict[str, str],
         **extra: Any) -> dict[str, Any]:
    response = client.post(url, content=json.dumps({"objects": objects, **extra}),
                           headers={"Accept": TAXII, "Content-Type": TAXII, **headers})
    status: dict[str, Any] = assert_taxii(response, 202)
    return status


def get(client: httpx.Client, url: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    return client.get(url, params=params, headers={"Accept": TAXII, **headers})


# -- the shared, seeded server ---------------------------------------------------------------
@dataclass
class Shared:
    live: LiveServer
    client: httpx.Client
    status: str  # alice's seeding push
    added: dict[tuple[str, str | None], str]  # (id, modified) -> date_added, every version

    @property
    def env(self) -> Env:
        return self.live.env

    def send(self, req: Req) -> httpx.Response:
        return send(self.client, self.env, req, status=self.status)

    def get(self, path: str, who: str = "alice", **params: Any) -> httpx.Response:
        return get(self.client, path, self.env.bearer(who), **params)


@pytest.fixture(params=backends.BACKENDS)
def env(env: Env, request: pytest.FixtureRequest) -> Env:
    """The conftest's `env` over each store backend in turn (so `live` too)."""
    return with_backend(env, request.param, request)


@pytest.fixture(scope="module", params=backends.BACKENDS)
def srv(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
        ) -> Iterator[Shared]:
    directory = tmp_path_factory.mktemp("http")
    env = with_backend(write_env(directory, max_page_size=MAX_PAGE,
                                 default_page_size=DEFAULT_PAGE), request.param, request)
    (env.settings.collections_dir / "dropbox.yaml").write_text(yaml.safe_dump(DROPBOX_DEF))
    live = start_server(env)
    client = httpx.Client(base_url=live.url, timeout=30)
    try:
        status = push(client, OPN + "objects/", POSTED, env.bearer("alice"))
        assert status["success_count"] == len(POSTED)
        manifest = get(client, OPN + "manifest/", env.bearer("alice"), limit=MAX_PAGE,
                       **{"match[version]": "all"}).json()["objects"]
        manifest += get(client, OPN + "manifest/", env.bearer("alice"),
                        **{"match[version]": "all", "added_after": manifest[-1]["date_added"]}
                        ).json()["objects"]
        # Keyed like key(): the SCO has no `modified`; its manifest version is its date_added.
        added = {(m["id"], None if m["id"] == SCO["id"] else m["version"]): m["date_added"]
                 for m in manifest}
        assert len(added) == len(POSTED)
        yield Shared(live, client, status["id"], added)
    finally:
        client.close()
        live.stop()


# -- every status code, with its TAXII error body ---------------------------------------------
ERRORS = [
    # 400: malformed parameters and bodies
    pytest.param(Req("GET", OPN + "objects/?limit=0"), 400, id="limit=0 -> 400"),
    pytest.param(Req("GET", OPN + "objects/?limit=-5"), 400, id="negative limit -> 400"),
    pytest.param(Req("GET", OPN + "objects/?limit=ten"), 400, id="limit=ten -> 400"),
    pytest.param(Req("GET", OPN + "objects/?limit=2.5"), 400, id="fractional limit -> 400"),
    pytest.param(Req("GET", OPN + "objects/?limit=%D9%A1%D9%A0"), 400,
                 id="Arabic-Indic digits limit -> 400"),
    pytest.param(Req("GET", OPN + "objects/?limit=%EF%BC%95"), 400,
                 id="full-width digit limit -> 400"),
    pytest.param(Req("GET", OPN + "objects/?limit="), 400, id="empty limit -> 400"),
    pytest.param(Req("GET", OPN + "manifest/?limit=x"), 400, id="manifest bad limit -> 400"),
    pytest.param(Req("GET", OPN + "objects/?added_after=yesterday"), 400,
                 id="added_after=yesterday -> 400"),
    pytest.param(Req("GET", OPN + "objects/?added_after=2024-01-01"), 400,
                 id="added_after date only -> 400"),
    pytest.param(Req("GET", OPN + "objects/?added_after=2024-13-01T00:00:00Z"), 400,
                 id="added_after month 13 -> 400"),
    pytest.param(Req("GET", OPN + f"objects/{IND}/versions/?added_after=soon"), 400,
                 id="versions bad added_after -> 400"),
    pytest.param(Req("GET", OPN + "objects/?next=not-a-token"), 400, id="garbage next -> 400"),
    pytest.param(Req("GET", OPN + "objects/?next="), 400, id="empty next -> 400"),
    pytest.param(Req("GET", OPN + "manifest/?next=djE6"), 400, id="next without position -> 400"),
    pytest.param(Req("GET", OPN + "objects/?match[id]=not-an-id"), 400, id="match[id] junk -> 400"),
    pytest.param(Req("GET", OPN + "objects/?match[id]=indicator--1234"), 400,
                 id="match[id] short uuid -> 400"),
    pytest.param(Req("GET", OPN + f"objects/?match[id]={IND},"), 400,
                 id="match[id] empty list item -> 400"),
    pytest.param(Req("GET", OPN + "objects/?match[type]=Indicator"), 400,
                 id="match[type] upper case -> 400"),
    pytest.param(Req("GET", OPN + "objects/?match[version]=latest"), 400,
                 id="match[version]=latest -> 400"),
    pytest.param(Req("GET", OPN + f"objects/{IND}/?match[version]=2024-01-01"), 400,
                 id="object match[version] date only -> 400"),
    pytest.param(Req("GET", OPN + "objects/?match[spec_version]=two"), 400,
                 id="match[spec_version] junk -> 400"),
    pytest.param(Req("DELETE", OPN + f"objects/{IND}/?match[version]=newest"), 400,
                 id="delete bad match[version] -> 400"),
    pytest.param(Req("POST", OPN + "objects/", body=b'{"objects": ['), 400,
                 id="truncated JSON body -> 400"),
    pytest.param(Req("POST", OPN + "objects/", body=b""), 400, id="empty body -> 400"),
    pytest.param(Req("POST", OPN + "objects/", body=b"\xff\xfe{}"), 400, id="not UTF-8 -> 400"),
    # 401: no or bad credentials, always with a challenge
    pytest.param(Req("GET", "taxii2/", who=None), 401, id="discovery no credentials -> 401"),
    pytest.param(Req("GET", f"{API_ROOT}/", who=None), 401, id="api root no credentials -> 401"),
    pytest.param(Req("GET", OPN + "objects/", who=None), 401, id="objects no credentials -> 401"),
    pytest.param(Req("POST", OPN + "objects/", who=None, body=b'{"objects": []}'), 401,
                 id="push no credentials -> 401"),
    pytest.param(Req("GET", f"{API_ROOT}/status/{{status}}/", who=None), 401,
                 id="status no credentials -> 401"),
    pytest.param(Req("GET", OPN + "objects/", who=None, headers=basic("alice", "wrong")), 401,
                 id="wrong password -> 401"),
    pytest.param(Req("GET", OPN + "objects/", who=None, headers=basic("mallory", "x")), 401,
                 id="unknown partner -> 401"),
    pytest.param(Req("GET", OPN + "objects/", who=None, headers={"Authorization": "Bearer txe_no"}),
                 401, id="bad token -> 401"),
    pytest.param(Req("GET", OPN + "objects/", who=None, headers={"Authorization": "Basic !!"}),
                 401, id="malformed basic -> 401"),
    pytest.param(Req("GET", OPN + "objects/", who=None, headers={"Authorization": "Digest x=1"}),
                 401, id="unsupported scheme -> 401"),
    # 403: visible, but not for this
    pytest.param(Req("POST", RDO + "objects/", who="bob", body=b'{"objects": []}'), 403,
                 id="bob pushes to readonly -> 403"),
    pytest.param(Req("POST", RDO + "objects/", body=b'{"objects": []}'), 403,
                 id="alice pushes to readonly -> 403"),
    pytest.param(Req("DELETE", RDO + f"objects/{IND}/", who="bob"), 403,
                 id="bob deletes from readonly -> 403"),
    pytest.param(Req("DELETE", RDO + f"objects/{IND}/"), 403,
                 id="alice deletes from readonly -> 403"),
    pytest.param(Req("GET", DRP + "objects/", who="bob"), 403, id="bob reads write-only -> 403"),
    pytest.param(Req("GET", DRP + "manifest/", who="bob"), 403,
                 id="bob manifest write-only -> 403"),
    pytest.param(Req("GET", DRP + f"objects/{IND}/", who="bob"), 403,
                 id="bob object write-only -> 403"),
    pytest.param(Req("GET", DRP + f"objects/{IND}/versions/", who="bob"), 403,
                 id="bob versions write-only -> 403"),
    pytest.param(Req("DELETE", DRP + f"objects/{IND}/", who="bob"), 403,
                 id="bob deletes write-only -> 403"),
    # 404: absent, or not there for this partner
    pytest.param(Req("GET", "nope/"), 404, id="unknown api root -> 404"),
    pytest.param(Req("GET", "nope/", who=None), 401, id="unknown api root anonymous -> 401"),
    pytest.param(Req("GET", "nope/collections/"), 404, id="unknown api root collections -> 404"),
    pytest.param(Req("GET", "nope/status/{status}/"), 404, id="status on unknown root -> 404"),
    pytest.param(Req("GET", f"{API_ROOT}/collections/{uuid.uuid4()}/"), 404,
                 id="unknown collection -> 404"),
    pytest.param(Req("GET", f"{API_ROOT}/collections/nope/objects/"), 404,
                 id="unknown alias -> 404"),
    pytest.param(Req("GET", f"{API_ROOT}/collections/{HIDDEN}/"), 404,
                 id="hidden collection for alice -> 404"),
    pytest.param(Req("GET", f"{API_ROOT}/collections/hidden/objects/"), 404,
                 id="hidden alias objects for alice -> 404"),
    pytest.param(Req("POST", f"{API_ROOT}/collections/{HIDDEN}/objects/", body=b'{"objects":[]}'),
                 404, id="push to hidden for alice -> 404"),
    pytest.param(Req("GET", OPN + "objects/", who="bob"), 404, id="open collection for bob -> 404"),
    pytest.param(Req("GET", OPN + "objects/", who="carol"), 404,
                 id="open collection for carol -> 404"),
    pytest.param(Req("GET", OPN + f"objects/{UNKNOWN_IND}/"), 404, id="unknown object -> 404"),
    pytest.param(Req("GET", OPN + f"objects/{UNKNOWN_IND}/versions/"), 404,
                 id="versions of unknown object -> 404"),
    pytest.param(Req("DELETE", OPN + f"objects/{UNKNOWN_IND}/"), 404,
                 id="delete unknown object -> 404"),
    pytest.param(Req("GET", RDO + f"objects/{IND}/"), 404,
                 id="object of another collection -> 404"),
    pytest.param(Req("GET", f"{API_ROOT}/status/{uuid.uuid4()}/"), 404, id="unknown status -> 404"),
    pytest.param(Req("GET", f"{API_ROOT}/status/{{status}}/", who="bob"), 404,
                 id="status of another partner -> 404"),
    pytest.param(Req("GET", f"{API_ROOT}/nothing/"), 404, id="unknown route -> 404"),
    pytest.param(Req("GET", OPN + f"objects/{IND}/versions/extra/"), 404,
                 id="unknown deeper route -> 404"),
    pytest.param(Req("GET", "", who=None), 404, id="bare server root -> 404"),
    # 405: a known resource, a method it does not take
    pytest.param(Req("PUT", OPN + "objects/", body=b"{}"), 405, id="PUT objects -> 405"),
    pytest.param(Req("POST", "taxii2/", body=b"{}"), 405, id="POST discovery -> 405"),
    pytest.param(Req("DELETE", OPN), 405, id="DELETE collection -> 405"),
    # 406: the client does not take TAXII 2.1
    pytest.param(Req("GET", OPN + "objects/", headers={"Accept": None}), 406,
                 id="no Accept -> 406"),
    pytest.param(Req("GET", OPN + "objects/", headers={"Accept": "text/html"}), 406,
                 id="text/html -> 406"),
    pytest.param(Req("GET", "taxii2/", headers={"Accept": "text/html"}), 406,
                 id="discovery text/html -> 406"),
    pytest.param(Req("GET", OPN + "objects/", headers={"Accept": "application/json"}), 406,
                 id="application/json -> 406"),
    pytest.param(Req("GET", OPN + "objects/",
                     headers={"Accept": "application/taxii+json;version=2.0"}), 406,
                 id="TAXII 2.0 -> 406"),
    pytest.param(Req("GET", OPN + "objects/", headers={"Accept": STIX}), 406, id="STIX -> 406"),
    pytest.param(Req("GET", OPN + "objects/", headers={"Accept": TAXII + ";q=0"}), 406,
                 id="TAXII refused with q=0 -> 406"),
    pytest.param(Req("POST", OPN + "objects/", headers={"Accept": "text/html"},
                     body=b'{"objects":[]}'), 406, id="push accepting text/html -> 406"),
    # 415: a pushed body that is not declared as TAXII 2.1
    pytest.param(Req("POST", OPN + "objects/", headers={"Content-Type": "application/json"},
                     body=b'{"objects":[]}'), 415, id="application/json body -> 415"),
    pytest.param(Req("POST", OPN + "objects/", headers={"Content-Type": "text/plain"},
                     body=b'{"objects":[]}'), 415, id="text/plain body -> 415"),
    pytest.param(Req("POST", OPN + "objects/", headers={"Content-Type": None},
                     body=b'{"objects":[]}'), 415, id="no Content-Type -> 415"),
    pytest.param(Req("POST", OPN + "objects/",
                     headers={"Content-Type": "application/taxii+json;version=2.0"},
                     body=b'{"objects":[]}'), 415, id="TAXII 2.0 body -> 415"),
    pytest.param(Req("POST", OPN + "objects/", headers={"Content-Type": STIX},
                     body=b'{"objects":[]}'), 415, id="STIX body -> 415"),
    # 422: well-formed JSON that is not an envelope or a bundle
    pytest.param(Req("POST", OPN + "objects/", body=b'{"more": false}'), 422,
                 id="no objects list -> 422"),
    pytest.param(Req("POST", OPN + "objects/", body=json.dumps([IND_V1]).encode()), 422,
                 id="JSON array body -> 422"),
    pytest.param(Req("POST", OPN + "objects/", body=b'{"objects": {"a": 1}}'), 422,
                 id="objects not a list -> 422"),
    pytest.param(Req("POST", OPN + "objects/", body=b'{"objects": null}'), 422,
                 id="objects null -> 422"),
    pytest.param(Req("POST", OPN + "objects/", body=b'"objects"'), 422, id="JSON string -> 422"),
    pytest.param(Req("POST", OPN + "objects/", body=b'{"type": "report", "objects": []}'), 422,
                 id="typed body not a bundle -> 422"),
]


@pytest.mark.parametrize(("req", "status"), ERRORS)
def test_errors_are_taxii_error_messages(srv: Shared, req: Req, status: int):
    assert_error(srv.send(req), status)


@pytest.mark.parametrize("req", [
    pytest.param(Req("GET", "taxii2/", who=None), id="no credentials"),
    pytest.param(Req("GET", OPN + "objects/", who=None, headers=basic("alice", "nope")),
                 id="wrong password"),
    pytest.param(Req("GET", OPN + "objects/", who=None, headers={"Authorization": "Bearer nope"}),
                 id="bad token"),
])
def test_401_challenges_for_basic_and_bearer(srv: Shared, req: Req):
    response = srv.send(req)
    assert_error(response, 401)
    challenge = response.headers["www-authenticate"].lower()
    assert "basic" in challenge and "bearer" in challenge


@pytest.mark.parametrize(("req", "allowed"), [
    pytest.param(Req("PUT", OPN + "objects/", body=b"{}"), {"GET", "POST"}, id="objects"),
    pytest.param(Req("PATCH", OPN + f"objects/{IND}/", body=b"{}"), {"GET", "DELETE"}, id="object"),
    pytest.param(Req("POST", f"{API_ROOT}/", body=b"{}"), {"GET"}, id="api root"),
])
def test_405_names_the_allowed_methods(srv: Shared, req: Req, allowed: set[str]):
    response = srv.send(req)
    assert_error(response, 405)
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


def test_refused_requests_change_nothing(srv: Shared):
    """The 4xx pushes and deletes of the table above left the seeded data as it was."""
    objects = srv.get(OPN + "objects/", limit=MAX_PAGE, **{"match[version]": "all"}).json()
    assert keys(objects["objects"]) == keys(POSTED[:MAX_PAGE])
    assert srv.get(OPN + f"objects/{UNKNOWN_IND}/").status_code == 404
    assert srv.get(RDO + "objects/", who="bob").json() == {"more": False}


# -- 413: bodies over the API root's max_content_length ----------------------------------------
def test_413_over_max_content_length(tmp_path: Path):
    limit = 2048
    env = write_env(tmp_path, max_content_length=limit)
    live = start_server(env)
    try:
        with httpx.Client(base_url=live.url, headers=env.bearer("alice"), timeout=30) as client:
            root = get(client, f"{API_ROOT}/", {}).json()
            assert root["max_content_length"] == limit

            def body_of(size: int, ident: str) -> bytes:
                body = json.dumps({"objects": [indicator(ident)]}).encode()
                return body[:-1] + b" " * (size - len(body)) + b"}"

            over, exact = sid("indicator", "too-large"), sid("indicator", "just-fits")
            headers = {"Accept": TAXII, "Content-Type": TAXII}
            response = client.post(OPN + "objects/", content=body_of(limit + 1, over),
                                   headers=headers)
            assert_error(response, 413)
            anonymous = httpx.post(live.collection() + "objects/", headers=headers,
                                   content=body_of(limit + 1, over))
            assert_error(anonymous, 401)  # who asks comes first

            def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts
                body = body_of(2 * limit, over)
                yield from (body[i:i + 512] for i in range(0, len(body), 512))

            response = client.post(OPN + "objects/", content=chunks(), headers=headers)
            assert_error(response, 413)
            response = client.post(OPN + "objects/", content=body_of(limit, exact),
                                   headers=headers)
            assert assert_taxii(response, 202)["success_count"] == 1
            stored = get(client, OPN + "objects/", {}).json()["objects"]
            assert [o["id"] for o in stored] == [exact]
    finally:
        live.stop()


@pytest.mark.parametrize("value", [
    pytest.param(b"Basic \xff\xfe\xc3", id="Basic"),
    pytest.param(b"Bearer \xff\xfe\xc3", id="Bearer"),
    pytest.param(b"\xff\xfe \xc3", id="scheme"),
])
def test_raw_8_bit_credentials_are_a_401(srv: Shared, value: bytes):
    port = int(srv.live.url.rsplit(":", 1)[1].strip("/"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", "/taxii2/")
        connection.putheader("Accept", TAXII)
        connection.putheader("Authorization", value)
        connection.endheaders()
        answer = connection.getresponse()
        assert (answer.status, answer.getheader("Content-Type")) == (401, TAXII)
        assert json.loads(answer.read())["http_status"] == "401"
    finally:
        connection.close()


# -- 500: a failure inside the server ---------------------------------------------------------
def test_server_failure_is_a_taxii_500_on_a_connection_that_stays_open(
        env: Env, monkeypatch: pytest.MonkeyPatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(SQLiteStore, "query", broken)
    monkeypatch.setattr(MongoStore, "query", broken)
    live = start_server(env)
    port = int(live.url.rsplit(":", 1)[1].strip("/"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Accept": TAXII, **env.bearer("alice")}
    try:
        connection.request("GET", f"/{OPN}objects/", headers=headers)
        failed = connection.getresponse()
        body = json.loads(failed.read())
        assert (failed.status, failed.getheader("Content-Type")) == (500, TAXII)
        assert (body["http_status"], body["title"]) == ("500", "Internal server error")
        assert "disk" not in json.dumps(body)  # no internals in the answer
        # A keep-alive client (SIEM connectors poll this way) goes on on the same connection.
        connection.request("GET", "/taxii2/", headers=headers)
        again = connection.getresponse()
        assert (again.status, again.getheader("Content-Type")) == (200, TAXII)
        again.read()
    finally:
        connection.close()
        live.stop()


# -- media types ------------------------------------------------------------------------------
GET_ENDPOINTS = {
    "discovery": "taxii2/",
    "api root": f"{API_ROOT}/",
    "collections": f"{API_ROOT}/collections/",
    "collection": OPN,
    "collection by alias": f"{API_ROOT}/collections/open/",
    "objects": OPN + "objects/",
    "objects by alias": f"{API_ROOT}/collections/open/objects/",
    "manifest": OPN + "manifest/",
    "object": OPN + f"objects/{IND}/",
    "versions": OPN + f"objects/{IND}/versions/",
    "status": f"{API_ROOT}/status/{{status}}/",
}
ACCEPTED = [
    pytest.param(TAXII, id="taxii 2.1"),
    pytest.param("application/taxii+json; version=2.1", id="space before version"),
    pytest.param("application/taxii+json;version=2.1; charset=utf-8", id="with charset"),
    pytest.param("application/taxii+json", id="unversioned"),
    pytest.param("*/*", id="any"),
    pytest.param("application/*", id="any application"),
    pytest.param("text/html, application/taxii+json;version=2.1;q=0.5", id="in a list"),
]


@pytest.mark.parametrize("who", [pytest.param("alice", id="bearer"),
                                 pytest.param("basic:alice", id="basic")])
@pytest.mark.parametrize("accept", ACCEPTED)
def test_every_endpoint_answers_accepted_media_types(srv: Shared, accept: str, who: str):
    for name, path in GET_ENDPOINTS.items():
        response = srv.send(Req("GET", path, who=who, headers={"Accept": accept}))
        assert response.status_code == 200, (name, response.text)
        assert response.headers["content-type"] == TAXII, name


@pytest.mark.parametrize("content_type", [
    pytest.param(TAXII, id="taxii 2.1"),
    pytest.param("application/taxii+json; version=2.1", id="space before version"),
    pytest.param("application/taxii+json;version=2.1;charset=utf-8", id="with charset"),
    pytest.param("application/taxii+json", id="unversioned"),
])
def test_push_accepts_taxii_content_types(srv: Shared, content_type: str):
    response = srv.send(Req("POST", OPN + "objects/", headers={"Content-Type": content_type},
                            body=json.dumps({"objects": [IND_V1]}).encode()))
    status = assert_taxii(response, 202)
    assert (status["success_count"], status["failure_count"]) == (1, 0)  # already stored


# -- every endpoint's resource ----------------------------------------------------------------
def test_discovery(srv: Shared):
    """API root URLs are relative (TAXII 2.1 section 4.1.1: relative or HTTPS)."""
    body = assert_taxii(srv.send(Req("GET", "taxii2/")), 200)
    assert body["title"]
    assert body["api_roots"] == [f"/{API_ROOT}/"]
    assert body["default"] == f"/{API_ROOT}/"


@pytest.mark.parametrize("headers", [
    pytest.param({"Host": "attacker.example"}, id="Host"),
    pytest.param({"X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": "http"},
                 id="X-Forwarded-Host"),
    pytest.param({"Forwarded": "host=attacker.example;proto=http"}, id="Forwarded"),
])
def test_discovery_never_reflects_the_requests_host(srv: Shared, headers: dict[str, str]):
    body = assert_taxii(srv.send(Req("GET", "taxii2/", headers=dict(headers))), 200)
    assert "attacker" not in json.dumps(body)
    assert body["api_roots"] == [f"/{API_ROOT}/"]


def test_discovery_under_a_configured_public_url(env: Env):
    settings = dataclasses.replace(env.settings, public_url="https://taxii.partners.example/x")
    live = start_server(dataclasses.replace(env, settings=settings))
    try:
        answer = httpx.get(f"{live.url}taxii2/", headers={"Accept": TAXII, **alice(live),
                                                          "Host": "attacker.example"})
        assert answer.json()["api_roots"] == [f"https://taxii.partners.example/x/{API_ROOT}/"]
    finally:
        live.stop()


def test_api_root(srv: Shared):
    body = assert_taxii(srv.send(Req("GET", f"{API_ROOT}/", who="bob")), 200)
    assert body["title"] == "Test root"
    assert body["versions"] == [TAXII]
    assert body["max_content_length"] == 1024 * 1024


@pytest.mark.parametrize(("who", "expected"), [
    pytest.param("alice", {OPEN: (True, True), READONLY: (True, False)}, id="alice"),
    pytest.param("bob", {READONLY: (True, False), DROPBOX: (False, True)}, id="bob"),
    pytest.param("carol", {HIDDEN: (True, True)}, id="carol"),
])
def test_collections_lists_only_visible(srv: Shared, who: str,
                                        expected: dict[str, tuple[bool, bool]]):
    body = assert_taxii(srv.send(Req("GET", f"{API_ROOT}/collections/", who=who)), 200)
    found = {c["id"]: (c["can_read"], c["can_write"]) for c in body["collections"]}
    assert found == expected
    for collection in body["collections"]:
        assert collection["title"] and collection["media_types"] == [STIX]
        single = srv.send(Req("GET", f"{API_ROOT}/collections/{collection['id']}/", who=who))
        assert assert_taxii(single, 200) == collection
        by_alias = srv.send(Req("GET", f"{API_ROOT}/collections/{collection['alias']}/", who=who))
        assert assert_taxii(by_alias, 200) == collection


def test_collections_empty_for_partner_without_any(env: Env):
    """A partner in no group gets an empty collections resource, not an error."""
    dave = partners.add(env.settings.partners_file, "dave", "Dave")
    live = start_server(env)
    try:
        token = {"Authorization": f"Bearer {dave.token}"}
        with httpx.Client(base_url=live.url, timeout=30) as client:
            assert assert_taxii(get(client, f"{API_ROOT}/collections/", token), 200) == {}
            response = get(client, OPN + "objects/", token)
            assert_error(response, 404)
    finally:
        live.stop()


def test_objects_and_object(srv: Shared):
    body = assert_taxii(srv.get(OPN + "objects/", **{"match[id]": IND}), 200)
    assert body == {"more": False, "objects": [IND_V3]}
    body = assert_taxii(srv.get(f"{API_ROOT}/collections/open/objects/{IND}/"), 200)
    assert body == {"more": False, "objects": [IND_V3]}


def test_manifest_records(srv: Shared):
    body = assert_taxii(srv.get(OPN + "manifest/", **{"match[id]": f"{IND},{SCO['id']}"}), 200)
    assert body["more"] is False
    ind, sco = body["objects"][::-1] if body["objects"][0]["id"] == SCO["id"] else body["objects"]
    assert ind == {"id": IND, "version": IND_V3["modified"], "media_type": STIX,
                   "date_added": srv.added[key(IND_V3)]}
    assert (sco["id"], sco["media_type"]) == (SCO["id"], STIX)
    assert sco["version"] == sco["date_added"]  # unversioned: the version is when it came


def test_versions_oldest_first(srv: Shared):
    response = srv.get(OPN + f"objects/{IND}/versions/")
    body = assert_taxii(response, 200)
    assert body == {"more": False, "versions": [IND_V1["modified"], IND_V2["modified"],
                                                 IND_V3["modified"]]}


def test_status_of_own_push(srv: Shared):
    body = assert_taxii(srv.send(Req("GET", f"{API_ROOT}/status/{{status}}/")), 200)
    assert body["id"] == srv.status and body["status"] == "complete"
    assert body["total_count"] == body["success_count"] == len(POSTED)
    assert body["failure_count"] == body["pending_count"] == 0
    assert {s["id"] for s in body["successes"]} == {o["id"] for o in POSTED}


@pytest.mark.parametrize("path", [
    pytest.param(p.rstrip("/"), id=name) for name, p in GET_ENDPOINTS.items()
])
def test_urls_without_trailing_slash(srv: Shared, path: str):
    with_slash = srv.send(Req("GET", path + "/"))
    without = srv.send(Req("GET", path))
    assert_taxii(without, 200)
    assert without.json() == with_slash.json()


# -- filters ----------------------------------------------------------------------------------
V1, V2, V3 = (o["modified"] for o in (IND_V1, IND_V2, IND_V3))
FILTERS = [
    pytest.param({}, LATEST[:DEFAULT_PAGE], id="no filter: latest, default page"),
    pytest.param({"match[id]": IND}, [IND_V3], id="id: last version by default"),
    pytest.param({"match[id]": IND, "match[version]": "last"}, [IND_V3], id="version=last"),
    pytest.param({"match[id]": IND, "match[version]": "first"}, [IND_V1], id="version=first"),
    pytest.param({"match[id]": IND, "match[version]": "all"}, [IND_V1, IND_V2, IND_V3],
                 id="version=all"),
    pytest.param({"match[id]": IND, "match[version]": "first,last"}, [IND_V1, IND_V3],
                 id="version=first,last"),
    pytest.param({"match[id]": IND, "match[version]": V2}, [IND_V2], id="version=timestamp"),
    pytest.param({"match[id]": IND, "match[version]": "2024-02-01T00:00:00Z"}, [IND_V2],
                 id="version=timestamp other precision"),
    pytest.param({"match[id]": IND, "match[version]": f"{V1},{V3}"}, [IND_V1, IND_V3],
                 id="version=two timestamps"),
    pytest.param({"match[id]": IND, "match[version]": "2024-02-01T00:00:00.001Z"}, [],
                 id="version=no such timestamp"),
    pytest.param({"match[id]": IND, "match[version]": f"first,{V2}"}, [IND_V1, IND_V2],
                 id="version=first and timestamp"),
    pytest.param({"match[id]": f"{MAL['id']},{REL['id']}"}, [MAL, REL], id="id list"),
    pytest.param({"match[id]": UNKNOWN_IND}, [], id="unknown id"),
    pytest.param({"match[type]": "malware"}, [MAL], id="type"),
    pytest.param({"match[type]": "relationship,malware"}, [MAL, REL], id="type list"),
    pytest.param({"match[type]": "ipv4-addr"}, [SCO], id="type of SCO"),
    pytest.param({"match[type]": "tool"}, [], id="type absent"),
    pytest.param({"match[type]": "indicator", "match[id]": MAL["id"]}, [], id="type AND id"),
    pytest.param({"match[type]": "indicator", "match[version]": "first", "limit": "3"},
                 [IND_V1, *FILLERS[:2]], id="type, first, limit"),
    pytest.param({"match[spec_version]": "2.1", "match[type]": "malware"}, [MAL],
                 id="spec_version=2.1"),
    pytest.param({"match[spec_version]": "2.0"}, [], id="spec_version=2.0"),
    pytest.param({"match[spec_version]": "2.0,2.1", "match[id]": IND}, [IND_V3],
                 id="spec_version list"),
    pytest.param({"limit": "1000", "match[version]": "all"}, POSTED[:MAX_PAGE],
                 id="limit capped at max_page_size"),
    pytest.param({"limit": "4"}, LATEST[:4], id="limit"),
]


@pytest.mark.parametrize(("params", "expected"), FILTERS)
def test_objects_filters(srv: Shared, params: dict[str, str], expected: list[dict[str, Any]]):
    body = assert_taxii(srv.get(OPN + "objects/", **params), 200)
    assert body.get("objects", []) == expected
    more = len(expected) == min(int(params.get("limit", DEFAULT_PAGE)), MAX_PAGE)
    assert body["more"] is more and ("next" in body) is more


@pytest.mark.parametrize(("params", "expected"), FILTERS)
def test_manifest_filters(srv: Shared, params: dict[str, str], expected: list[dict[str, Any]]):
    body = assert_taxii(srv.get(OPN + "manifest/", **params), 200)
    records = body.get("objects", [])
    assert [r["id"] for r in records] == [o["id"] for o in expected]
    assert [r["version"] for r in records if r["id"] != SCO["id"]] == \
        [o["modified"] for o in expected if o is not SCO]
    assert [r["date_added"] for r in records if r["id"] != SCO["id"]] == \
        [srv.added[key(o)] for o in expected if o is not SCO]


@pytest.mark.parametrize(("params", "expected"), [
    pytest.param({}, [IND_V3], id="latest by default"),
    pytest.param({"match[version]": "first"}, [IND_V1], id="first"),
    pytest.param({"match[version]": "all"}, [IND_V1, IND_V2, IND_V3], id="all"),
    pytest.param({"match[version]": f"{V3},{V1}"}, [IND_V1, IND_V3], id="timestamps"),
    pytest.param({"match[version]": "all", "limit": "2"}, [IND_V1, IND_V2], id="all, limit"),
    pytest.param({"match[version]": "all", "match[spec_version]": "2.1"},
                 [IND_V1, IND_V2, IND_V3], id="spec_version=2.1"),
    pytest.param({"match[spec_version]": "2.0"}, [], id="spec_version=2.0"),
    pytest.param({"match[version]": "2023-01-01T00:00:00Z"}, [], id="no such version"),
    pytest.param({"match[type]": "malware", "match[id]": MAL["id"]}, [IND_V3],
                 id="id and type filters do not apply"),
])
def test_object_filters(srv: Shared, params: dict[str, str], expected: list[dict[str, Any]]):
    body = assert_taxii(srv.get(OPN + f"objects/{IND}/", **params), 200)
    assert body.get("objects", []) == expected


@pytest.mark.parametrize(("params", "expected"), [
    pytest.param({}, [V1, V2, V3], id="all"),
    pytest.param({"match[spec_version]": "2.1"}, [V1, V2, V3], id="spec_version=2.1"),
    pytest.param({"match[spec_version]": "2.0"}, [], id="spec_version=2.0"),
    pytest.param({"match[version]": "first"}, [V1, V2, V3], id="match[version] does not apply"),
    pytest.param({"limit": "2"}, [V1, V2], id="limit"),
])
def test_versions_filters(srv: Shared, params: dict[str, str], expected: list[str]):
    body = assert_taxii(srv.get(OPN + f"objects/{IND}/versions/", **params), 200)
    assert body.get("versions", []) == expected


def test_added_after(srv: Shared):
    everything = {"match[version]": "all", "limit": str(MAX_PAGE)}
    cut = srv.added[key(POSTED[9])]
    body = srv.get(OPN + "objects/", added_after=cut, **everything).json()
    assert body["objects"] == POSTED[10:10 + MAX_PAGE]
    # Microsecond timestamps round-trip; a longer fraction means the same instant.
    body = srv.get(OPN + "objects/", added_after=cut[:-1] + "000Z", **everything).json()
    assert body["objects"] == POSTED[10:10 + MAX_PAGE]
    old = srv.get(OPN + "objects/", added_after="2000-01-01T00:00:00Z", **everything).json()
    assert old["objects"] == POSTED[:MAX_PAGE]
    future = srv.get(OPN + "objects/", added_after="2999-01-01T00:00:00Z")
    assert assert_taxii(future, 200) == {"more": False}
    assert "x-taxii-date-added-first" not in future.headers
    versions = srv.get(OPN + f"objects/{IND}/versions/", added_after=srv.added[key(IND_V1)]).json()
    assert versions["versions"] == [V2, V3]
    obj = srv.get(OPN + f"objects/{IND}/", added_after=srv.added[key(IND_V2)],
                  **{"match[version]": "all"}).json()
    assert obj["objects"] == [IND_V3]
    manifest = srv.get(OPN + "manifest/", added_after=cut, **everything).json()
    assert [m["id"] for m in manifest["objects"]] == [o["id"] for o in POSTED[10:10 + MAX_PAGE]]


# -- paging -----------------------------------------------------------------------------------
def walk(srv: Shared, path: str, **params: Any) -> list[httpx.Response]:
    """Every page of a listing, following `next` until `more` is false."""
    pages = [srv.get(path, **params)]
    while pages[-1].json()["more"]:
        assert len(pages) < 200, "paging does not end"
        pages.append(srv.get(path, next=pages[-1].json()["next"], **params))
    return pages


@pytest.mark.parametrize("limit", [1, 7, 22, 50])  # 66 versions: 22 pages end exactly
def test_paging_objects_sees_everything_once(srv: Shared, limit: int):
    pages = walk(srv, OPN + "objects/", limit=limit, **{"match[version]": "all"})
    seen = [o for page in pages for o in page.json().get("objects", [])]
    assert seen == POSTED
    assert all(len(p.json()["objects"]) == limit for p in pages[:-1])
    assert pages[-1].json()["objects"], "a last page that is empty: more was true for nothing"


def test_paging_default_page_size_and_manifest(srv: Shared):
    pages = walk(srv, OPN + "manifest/")
    assert [len(p.json()["objects"]) for p in pages] == [20, 20, 20, 4]
    assert [r["id"] for p in pages for r in p.json()["objects"]] == [o["id"] for o in LATEST]


def test_paging_versions(srv: Shared):
    pages = walk(srv, OPN + f"objects/{IND}/versions/", limit=1)
    assert [p.json()["versions"] for p in pages] == [[V1], [V2], [V3]]
    pages = walk(srv, OPN + f"objects/{IND}/", limit=2, **{"match[version]": "all"})
    assert [p.json()["objects"] for p in pages] == [[IND_V1, IND_V2], [IND_V3]]


def test_next_with_filters_and_added_after(srv: Shared):
    pages = walk(srv, OPN + "objects/", limit=9, added_after=srv.added[key(REL)],
                 **{"match[type]": "indicator"})
    seen = [o for p in pages for o in p.json()["objects"]]
    assert seen == [IND_V3, *FILLERS]


# -- X-TAXII-Date-Added-First / -Last ---------------------------------------------------------
@pytest.mark.parametrize(("path", "params", "expected"), [
    pytest.param(OPN + "objects/", {"limit": "5", "match[version]": "all"}, POSTED[:5],
                 id="objects"),
    pytest.param(OPN + "objects/", {"added_after": "{cut}", "limit": "3"}, LATEST[8:11],
                 id="objects after"),
    pytest.param(OPN + "manifest/", {"match[type]": "indicator"}, [IND_V3, *FILLERS[:19]],
                 id="manifest"),
    pytest.param(OPN + f"objects/{IND}/", {"match[version]": "all"}, [IND_V1, IND_V2, IND_V3],
                 id="object"),
    pytest.param(OPN + f"objects/{IND}/", {}, [IND_V3], id="object latest"),
    pytest.param(OPN + f"objects/{IND}/versions/", {}, [IND_V1, IND_V2, IND_V3], id="versions"),
    pytest.param(OPN + f"objects/{IND}/versions/", {"limit": "2"}, [IND_V1, IND_V2],
                 id="versions page"),
])
def test_date_added_headers(srv: Shared, path: str, params: dict[str, str],
                            expected: list[dict[str, Any]]):
    params = {k: v.format(cut=srv.added[key(LATEST[7])]) for k, v in params.items()}
    response = srv.get(path, **params)
    assert_taxii(response, 200)
    first, last = srv.added[key(expected[0])], srv.added[key(expected[-1])]
    assert response.headers["x-taxii-date-added-first"] == first
    assert response.headers["x-taxii-date-added-last"] == last
    assert first <= last


def test_date_added_is_ascending_and_distinct(srv: Shared):
    stamps = [srv.added[key(o)] for o in POSTED]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    pages = walk(srv, OPN + "objects/", limit=10)
    bounds = [(p.headers["x-taxii-date-added-first"], p.headers["x-taxii-date-added-last"])
              for p in pages]
    assert all(first <= last for first, last in bounds)
    assert all(a[1] < b[0] for a, b in pairwise(bounds))


def test_empty_listings_have_no_date_headers(srv: Shared):
    for path in (RDO + "objects/", RDO + "manifest/"):
        response = srv.get(path, who="bob")
        assert assert_taxii(response, 200) == {"more": False}
        assert "x-taxii-date-added-first" not in response.headers
        assert "x-taxii-date-added-last" not in response.headers


# -- pushing ----------------------------------------------------------------------------------
def alice(live: LiveServer) -> dict[str, str]:
    return live.env.bearer("alice")


def counts_add_up(status: dict[str, Any]) -> None:
    assert status["total_count"] == (status["success_count"] + status["failure_count"]
                                     + status["pending_count"])
    for details, count in (("successes", "success_count"), ("failures", "failure_count"),
                           ("pendings", "pending_count")):
        assert len(status.get(details, [])) == status[count]


@pytest.mark.parametrize("wrap", [
    pytest.param(lambda objects: {"objects": objects}, id="TAXII envelope"),
    pytest.param(lambda objects: {"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                                  "objects": objects}, id="STIX bundle"),
    pytest.param(lambda objects: {"more": False, "objects": objects}, id="envelope with more"),
])
def test_push_envelope_or_bundle(live: LiveServer, wrap: Any):
    objects = [IND_V1, MAL, SCO, REL]
    with httpx.Client(base_url=live.url, timeout=30) as client:
        response = client.post(OPN + "objects/", content=json.dumps(wrap(objects)),
                               headers={"Accept": TAXII, "Content-Type": TAXII, **alice(live)})
        status = assert_taxii(response, 202)
        counts_add_up(status)
        assert status["status"] == "complete"
        assert (status["total_count"], status["success_count"]) == (4, 4)
        assert {(s["id"], s["version"]) for s in status["successes"]} >= \
            {(IND, V1), (MAL["id"], T0), (REL["id"], T0)}
        assert get(client, OPN + "objects/", alice(live)).json()["objects"] == objects
        polled = get(client, f"{API_ROOT}/status/{status['id']}/", alice(live))
        assert assert_taxii(polled, 200) == status


def test_push_invalid_objects_fail_alone_and_are_never_stored(live: LiveServer):
    no_pattern = {k: v for k, v in indicator(sid("indicator", "no-pattern")).items()
                  if k != "pattern"}
    stix20 = {**indicator(sid("indicator", "old")), "spec_version": "2.0"}
    good = [indicator(sid("indicator", f"good-{i}"), ip=f"192.0.2.{i}") for i in range(3)]
    objects = [good[0], no_pattern, "not an object", good[1], stix20, {"type": "x"}, good[2]]
    with httpx.Client(base_url=live.url, timeout=30) as client:
        status = push(client, OPN + "objects/", objects, alice(live))
        counts_add_up(status)
        assert (status["total_count"], status["success_count"], status["failure_count"]) == \
            (7, 3, 4)
        assert {s["id"] for s in status["successes"]} == {g["id"] for g in good}
        assert {f["id"] for f in status["failures"]} >= {no_pattern["id"], stix20["id"]}
        assert all(f["message"] for f in status["failures"])
        assert get(client, OPN + "objects/", alice(live)).json()["objects"] == good
        for bad in (no_pattern, stix20):
            assert_error(get(client, OPN + f"objects/{bad['id']}/", alice(live)), 404)


def test_push_only_invalid_objects_completes_with_failures(live: LiveServer):
    with httpx.Client(base_url=live.url, timeout=30) as client:
        status = push(client, OPN + "objects/", [{"type": "indicator"}, 42], alice(live))
        counts_add_up(status)
        assert status["status"] == "complete"
        assert (status["total_count"], status["failure_count"]) == (2, 2)
        assert get(client, OPN + "objects/", alice(live)).json() == {"more": False}
        empty = push(client, OPN + "objects/", [], alice(live))
        assert (empty["status"], empty["total_count"]) == ("complete", 0)


def test_identical_repost_is_success_stored_once(live: LiveServer):
    with httpx.Client(base_url=live.url, timeout=30) as client:
        first = push(client, OPN + "objects/", [IND_V1, SCO], alice(live))
        assert first["success_count"] == 2
        # Same content with its keys in another order is the same object.
        reordered = dict(reversed(list(IND_V1.items())))
        again = push(client, OPN + "objects/", [reordered, SCO, IND_V1], alice(live))
        counts_add_up(again)
        assert (again["success_count"], again["failure_count"]) == (3, 0)
        manifest = get(client, OPN + "manifest/", alice(live),
                       **{"match[version]": "all"}).json()["objects"]
        assert sorted(m["id"] for m in manifest) == sorted([IND, SCO["id"]])
        assert get(client, OPN + f"objects/{IND}/versions/", alice(live)).json()["versions"] == [V1]


def test_backfilled_older_version_does_not_become_last(live: LiveServer):
    with httpx.Client(base_url=live.url, timeout=30) as client:
        push(client, OPN + "objects/", [IND_V3], alice(live))
        push(client, OPN + "objects/", [IND_V1], alice(live))  # an older version, added later
        assert get(client, OPN + f"objects/{IND}/", alice(live)).json()["objects"] == [IND_V3]
        assert get(client, OPN + "objects/", alice(live)).json()["objects"] == [IND_V3]
        first = get(client, OPN + f"objects/{IND}/", alice(live), **{"match[version]": "first"})
        assert first.json()["objects"] == [IND_V1]
        # Versions come in date_added order (the order paging walks), as the manifest has them.
        versions = get(client, OPN + f"objects/{IND}/versions/", alice(live))
        manifest = get(client, OPN + "manifest/", alice(live), **{"match[version]": "all"})
        assert versions.json()["versions"] == [m["version"] for m in manifest.json()["objects"]]
        assert sorted(versions.json()["versions"]) == [V1, V3]
        assert versions.headers["x-taxii-date-added-first"] == \
            manifest.json()["objects"][0]["date_added"]
        assert versions.headers["x-taxii-date-added-last"] == \
            manifest.json()["objects"][-1]["date_added"]


def test_non_ascii_content_round_trips_unchanged(live: LiveServer):
    report = indicator(sid("indicator", "unicode"), name="Phishing – Überweisung (Ümlaut, 日本)",
                       description="Faux portail « banque.example »")
    raw = json.dumps({"objects": [report]}, ensure_ascii=False).encode()
    with httpx.Client(base_url=live.url, timeout=30) as client:
        response = client.post(OPN + "objects/", content=raw,
                               headers={"Accept": TAXII, "Content-Type": TAXII, **alice(live)})
        assert assert_taxii(response, 202)["success_count"] == 1
        assert get(client, OPN + f"objects/{report['id']}/", alice(live)).json()["objects"] == \
            [report]


def test_conflicting_object_with_same_id_and_version_fails(live: LiveServer):
    changed = {**IND_V1, "name": "someone else's idea of this version"}
    with httpx.Client(base_url=live.url, timeout=30) as client:
        push(client, OPN + "objects/", [IND_V1], alice(live))
        status = push(client, OPN + "objects/", [changed, IND_V2], alice(live))
        counts_add_up(status)
        assert status["failures"][0]["id"] == IND
        assert status["failures"][0]["version"] == V1
        assert [s["id"] for s in status["successes"]] == [IND]  # v2 went in
        same_push = push(client, OPN + "objects/", [MAL, {**MAL, "name": "other"}], alice(live))
        assert (same_push["success_count"], same_push["failure_count"]) == (1, 1)
        stored = get(client, OPN + f"objects/{IND}/", alice(live),
                     **{"match[version]": "all"}).json()["objects"]
        assert stored == [IND_V1, IND_V2]
        assert get(client, OPN + f"objects/{MAL['id']}/", alice(live)).json()["objects"] == [MAL]


def test_push_to_write_only_collection(srv: Shared):
    bobs = {**MAL, "created_by_ref": BOB}
    status = assert_taxii(srv.send(Req("POST", DRP + "objects/", who="bob",
                                       body=json.dumps({"objects": [bobs]}).encode())), 202)
    assert (status["status"], status["success_count"]) == ("complete", 1)
    polled = srv.send(Req("GET", f"{API_ROOT}/status/{status['id']}/", who="bob"))
    assert assert_taxii(polled, 200)["id"] == status["id"]
    assert_error(srv.send(Req("GET", f"{API_ROOT}/status/{status['id']}/")), 404)


def test_pending_push_is_polled_to_completion(env: Env):
    settings = dataclasses.replace(env.settings, post_wait_seconds=0)
    live = start_server(dataclasses.replace(env, settings=settings))
    objects = [*FILLERS[:50], {"type": "indicator", "id": "indicator--bad"}]
    try:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            status = push(client, OPN + "objects", objects, alice(live))  # no trailing slash
            counts_add_up(status)
            assert status["status"] == "pending"
            assert (status["pending_count"], status["failure_count"]) == (50, 1)
            assert {p["id"] for p in status["pendings"]} == {o["id"] for o in FILLERS[:50]}
            deadline = time.monotonic() + 10
            while status["status"] == "pending":
                assert time.monotonic() < deadline, "the push never completed"
                time.sleep(0.05)
                polled = get(client, f"{API_ROOT}/status/{status['id']}", alice(live))
                status = assert_taxii(polled, 200)
                counts_add_up(status)
            assert (status["success_count"], status["failure_count"]) == (50, 1)
            objects_stored = get(client, OPN + "objects/", alice(live)).json()["objects"]
            assert objects_stored == FILLERS[:50]
    finally:
        live.stop()


def test_paging_while_objects_arrive(live: LiveServer):
    batch_one = [indicator(sid("indicator", f"early-{i}"), ip=f"192.0.2.{i}") for i in range(25)]
    batch_two = [indicator(sid("indicator", f"late-{i}"), ip=f"198.51.100.{i}") for i in range(7)]
    with httpx.Client(base_url=live.url, timeout=30) as client:
        push(client, OPN + "objects/", batch_one, alice(live))
        page = get(client, OPN + "objects/", alice(live), limit=10).json()
        seen = list(page["objects"])
        push(client, OPN + "objects/", batch_two, alice(live))
        new_version = {**batch_one[0], "modified": "2024-06-01T00:00:00.000Z"}
        push(client, OPN + "objects/", [new_version], alice(live))
        while page["more"]:
            page = get(client, OPN + "objects/", alice(live), limit=10, next=page["next"]).json()
            seen.extend(page.get("objects", []))
        assert seen == [*batch_one, *batch_two, new_version]
        assert len({key(o) for o in seen}) == len(seen)


# -- deleting ---------------------------------------------------------------------------------
def test_delete_object_removes_every_version(live: LiveServer):
    with httpx.Client(base_url=live.url, timeout=30) as client:
        push(client, OPN + "objects/", [IND_V1, IND_V2, IND_V3, MAL], alice(live))
        response = client.delete(OPN + f"objects/{IND}/", headers={"Accept": TAXII, **alice(live)})
        assert_taxii(response, 200)
        assert_error(get(client, OPN + f"objects/{IND}/", alice(live)), 404)
        assert_error(get(client, OPN + f"objects/{IND}/versions/", alice(live)), 404)
        listed = get(client, OPN + "objects/", alice(live), **{"match[version]": "all"}).json()
        assert listed["objects"] == [MAL]
        again = client.delete(OPN + f"objects/{IND}/", headers={"Accept": TAXII, **alice(live)})
        assert_error(again, 404)


def test_delete_one_version_moves_last_and_first(live: LiveServer):
    with httpx.Client(base_url=live.url, timeout=30) as client:
        push(client, OPN + "objects/", [IND_V1, IND_V2, IND_V3], alice(live))
        headers = {"Accept": TAXII, **alice(live)}
        response = client.delete(OPN + f"objects/{IND}", params={"match[version]": V3},
                                 headers=headers)  # no trailing slash either
        assert_taxii(response, 200)
        assert get(client, OPN + f"objects/{IND}/versions/", alice(live)).json()["versions"] == \
            [V1, V2]
        assert get(client, OPN + f"objects/{IND}/", alice(live)).json()["objects"] == [IND_V2]
        assert get(client, OPN + "objects/", alice(live)).json()["objects"] == [IND_V2]
        response = client.delete(OPN + f"objects/{IND}/", params={"match[version]": "first"},
                                 headers=headers)
        assert_taxii(response, 200)
        assert get(client, OPN + f"objects/{IND}/", alice(live),
                   **{"match[version]": "first"}).json()["objects"] == [IND_V2]
        missing = client.delete(OPN + f"objects/{IND}/", params={"match[version]": V1},
                                headers=headers)
        assert_error(missing, 404)
        assert get(client, OPN + f"objects/{IND}/versions/", alice(live)).json()["versions"] == \
            [V2]


def test_deleted_version_can_be_pushed_again(live: LiveServer):
    with httpx.Client(base_url=live.url, timeout=30) as client:
        push(client, OPN + "objects/", [IND_V1, IND_V2], alice(live))
        headers = {"Accept": TAXII, **alice(live)}
        assert_taxii(client.delete(OPN + f"objects/{IND}/", params={"match[version]": "last"},
                                   headers=headers), 200)
        status = push(client, OPN + "objects/", [IND_V2], alice(live))
        assert (status["success_count"], status["failure_count"]) == (1, 0)
        assert get(client, OPN + f"objects/{IND}/", alice(live)).json()["objects"] == [IND_V2]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"next": base64.urlsafe_b64encode(b"v1:99999999999999999999").decode()},
                     id="next beyond 64 bits -> 400"),
        pytest.param({"match[type]": ",".join(f"x-type-{n}" for n in range(101))},
                     id="101 types -> 400"),
        pytest.param({"match[id]": ",".join(f"indicator--{uuid.uuid4()}" for _ in range(101))},
                     id="101 ids -> 400"),
    ],
)
def test_oversized_filters_are_client_errors(live: LiveServer, query: dict[str, str]):
    with httpx.Client(headers={"Accept": TAXII, **live.env.bearer("alice")}) as client:
        answer = client.get(live.collection() + "objects/", params=query)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == TAXII
    assert answer.json()["http_status"] == "400"
