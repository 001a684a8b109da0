"""The STIX extension definitions this server defines, and the identity that authors them,
served without authentication: they are public (TLP:CLEAR), and a consumer that meets an
extension on an object needs to resolve it."""

from __future__ import annotations

import json

import orjson
from fastapi import FastAPI
from starlette.responses import Response

from ..errors import NotFound
from ..markings import HANDLING_EXTENSION
from ..schemas import SCHEMAS_DIR
from ..stix_extensions import published, schema_name

STIX_21 = "application/stix+json;version=2.1"


def _schema_name(extension_id: str) -> str | None:
    return "handling-extension" if extension_id == HANDLING_EXTENSION else \
        schema_name(extension_id)


def definitions() -> Response:
    """GET /extensions/: the project identity and every extension definition, as a STIX
    bundle-like list."""
    return Response(orjson.dumps({"objects": published()}), media_type=STIX_21)


def definition(extension_id: str) -> Response:
    """GET /extensions/{id}/: one extension definition object (or the identity authoring
    them)."""
    found = next((o for o in published() if o["id"] == extension_id), None)
    if found is None:
        raise NotFound(f"no extension definition {extension_id!r}")
    return Response(orjson.dumps(found), media_type=STIX_21)


def schema(extension_id: str) -> Response:
    """GET /extensions/{id}/schema/: the JSON Schema of its property."""
    name = _schema_name(extension_id)
    if name is None:
        raise NotFound(f"no extension definition {extension_id!r}")
    document = json.loads((SCHEMAS_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    return Response(orjson.dumps(document), media_type="application/schema+json")


def install(app: FastAPI) -> None:
    app.add_api_route("/extensions/", definitions, methods=["GET"], include_in_schema=False)
    app.add_api_route("/extensions/{extension_id}/", definition, methods=["GET"],
                      include_in_schema=False)
    app.add_api_route("/extensions/{extension_id}/schema/", schema, methods=["GET"],
                      include_in_schema=False)
