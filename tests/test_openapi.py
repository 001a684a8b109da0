"""The OpenAPI document of the TAXII API: it describes the routes the server really has, it is
served without credentials, and the server keeps to it under schemathesis (a real server on
loopback, a few synthetic objects, signed in as a partner)."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from starlette.routing import Route

from exchange.app import create_app
from exchange.store.sqlite import SQLiteStore
from exchange.taxii import openapi, params
from tests.conftest import (
    ALICE,
    API_ROOT,
    HIDDEN,
    OPEN,
    READONLY,
    Env,
    LiveServer,
    start_server,
    write_env,
)

TAXII = "application/taxii+json;version=2.1"
# FastAPI's path parameter names, as the document names them.
NAMES = {"root": "api_root", "collection": "collection_id", "object_id": "object_id",
         "status_id": "status_id", "extension_id": "extension_id"}


# Probes and the scrape are the operators', not the TAXII API's (README, Operations).
OPERATIONS = frozenset({"/healthz/", "/readyz/", "/metrics/"})


def routes(env: Env) -> set[tuple[str, str]]:
    app = create_app(env.settings, SQLiteStore(env.settings.store_path))
    found = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.include_in_schema is False \
                and route.path not in OPERATIONS:
            path = re.sub(r"\{(\w+)\}", lambda m: "{" + NAMES[m.group(1)] + "}", route.path)
            path = "/openapi.json" if path == "/openapi.json/" else path
            found |= {(path, method.lower()) for method in route.methods or ()
                      if method != "HEAD"}
    return found


def test_the_document_describes_every_route_and_no_other(env: Env):
    documented = {(path, method) for path, item in openapi.document()["paths"].items()
                  for method in item}
    assert documented == routes(env)


def test_every_parameter_security_scheme_and_header_is_described():
    document = openapi.document()
    assert set(document["components"]["parameters"]) >= {
        "limit", "next", "added_after", "match[id]", "match[type]", "match[version]",
        "match[spec_version]"}
    assert document["components"]["securitySchemes"] == {
        "basic": {"type": "http", "scheme": "basic", "description": "partner id and password"},
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "the partner's API token"}}
    objects = document["paths"]["/{api_root}/collections/{collection_id}/objects/"]
    assert set(objects["get"]["responses"]["200"]["headers"]) == {
        "X-TAXII-Date-Added-First", "X-TAXII-Date-Added-Last"}
    assert set(objects["post"]["requestBody"]["content"]) == {TAXII}
    assert str(params.MAX_VALUES) in document["components"]["parameters"]["match[id]"][
        "description"]
    error = {TAXII: {"schema": {"$ref": "#/components/schemas/error"}}}
    for code, response in document["components"]["responses"].items():
        assert response["content"] == error, code


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="without credentials or Accept"),
    pytest.param({"Authorization": "Bearer wrong"}, id="with a wrong token"),
])
def test_the_document_is_served_to_anyone(live: LiveServer, headers: dict[str, str]):
    for path in ("openapi.json", "openapi.json/"):
        answer = httpx.get(live.url + path, headers=headers)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == openapi.document()
        assert OPEN not in answer.text and "alice" not in answer.text


# -- schemathesis against a live server -------------------------------------------------------

def sid(kind: str, n: int) -> str:
    return f"{kind}--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://contract.example/{n}')}"


def indicator(n: int, modified: str = "2026-01-01T00:00:00.000Z") -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": sid("indicator", n),
            "created": "2026-01-01T00:00:00.000Z", "modified": modified,
            "created_by_ref": ALICE, "pattern": f"[ipv4-addr:value = '192.0.2.{n}']",
            "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z"}


SEEDED = [indicator(n) for n in range(5)] + [indicator(0, "2026-02-01T00:00:00.000Z")] + [
    {"type": "ipv4-addr", "spec_version": "2.1", "id": sid("ipv4-addr", 9),
     "value": "198.51.100.9"}]


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A live server holding a few synthetic objects, and the id of alice's push."""
    env = write_env(tmp_path_factory.mktemp("contract"), max_page_size=5, default_page_size=3)
    # Unthrottled, so every generated request reaches its endpoint (429 is in the document).
    env = Env(dataclasses.replace(env.settings, rate_limit_per_second=0), env.credentials)
    server = start_server(env)
    pushed = httpx.post(server.collection() + "objects/", json={"objects": SEEDED},
                        headers={"Accept": TAXII, "Content-Type": TAXII, **env.bearer("alice")})
    assert pushed.json()["success_count"] == len(SEEDED), pushed.text
    yield server, pushed.json()["id"]
    server.stop()


PUSHED = "the-status-of-the-seeded-push"  # replaced by its id when a request is made


def steered(document: dict[str, Any]) -> dict[str, Any]:
    """The document, with path parameters drawn from what the server holds (and one unknown
    value each), so generated requests reach real objects instead of a 404 each. Only what is
    generated changes: responses are checked against the document as it is served (the same
    document: see test_the_document_is_served_to_anyone)."""
    values = {
        "api_root": [API_ROOT, "nowhere"],
        "collection_id": [OPEN, "open", READONLY, HIDDEN, "no-such-collection"],
        "object_id": [SEEDED[0]["id"], SEEDED[3]["id"], SEEDED[-1]["id"],
                      sid("malware", 1), "not-an-id"],
        "status_id": [PUSHED, "4c7bd1f4-5a2e-4a57-9a55-6d5c2a8e1f00"],
    }
    for name, choices in values.items():
        document["components"]["parameters"][name]["schema"] = {"enum": choices}
    return document


schema = schemathesis.openapi.from_dict(steered(openapi.document()))


# One test per operation, each with up to 100 generated requests (valid and invalid ones):
# about 15 s in all on two cores.
@schema.parametrize()
@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_server_keeps_to_its_document(case: Any, contract: tuple[LiveServer, str]):
    server, status_id = contract
    if (case.path_parameters or {}).get("status_id") == PUSHED:
        case.path_parameters["status_id"] = status_id
    headers = {"Accept": TAXII, **server.env.bearer("alice")}
    if case.method == "POST" and case.media_type == TAXII:
        headers["Content-Type"] = TAXII
    case.call_and_validate(base_url=server.url.rstrip("/"), headers=headers, checks=[
        checks.not_a_server_error, checks.status_code_conformance,
        checks.content_type_conformance, checks.response_schema_conformance,
        checks.response_headers_conformance])


def test_the_document_is_json_serialisable():
    assert json.loads(json.dumps(openapi.document())) == openapi.document()
