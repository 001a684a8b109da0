"""The OpenAPI document of the TAXII API: it describes the routes the server really has, and it
is served without credentials."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from starlette.routing import Route

from exchange.app import create_app
from exchange.store.sqlite import SQLiteStore
from exchange.taxii import openapi, params
from tests.conftest import OPEN, Env, LiveServer

TAXII = "application/taxii+json;version=2.1"
# FastAPI's path parameter names, as the document names them.
NAMES = {"root": "api_root", "collection": "collection_id", "object_id": "object_id",
         "status_id": "status_id", "extension_id": "extension_id"}


def routes(env: Env) -> set[tuple[str, str]]:
    app = create_app(env.settings, SQLiteStore(env.settings.store_path))
    found = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.include_in_schema is False:
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


def test_the_document_is_json_serialisable():
    assert json.loads(json.dumps(openapi.document())) == openapi.document()
