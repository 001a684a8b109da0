"""The STIX extension definitions this server defines, served without authentication: they are
public (TLP:CLEAR), and a consumer that meets an extension on an object needs to resolve it."""

from __future__ import annotations

import json

import orjson
from fastapi import FastAPI
from starlette.responses import Response

from ..errors import NotFound
from ..markings import HANDLING_EXTENSION, handling_extension_definition
from ..schemas import SCHEMAS_DIR

STIX_21 = "application/stix+json;version=2.1"
_SCHEMAS = {HANDLING_EXTENSION: "handling-extension"}


def definitions() -> Response:
    """GET /extensions/: every extension definition, as a STIX bundle-like list."""
    return Response(orjson.dumps({"objects": [handling_extension_definition()]}),
                    media_type=STIX_21)


def definition(extension_id: str) -> Response:
    """GET /extensions/{id}/: one extension definition object."""
    if extension_id != HANDLING_EXTENSION:
        raise NotFound(f"no extension definition {extension_id!r}")
    return Response(orjson.dumps(handling_extension_definition()), media_type=STIX_21)


def schema(extension_id: str) -> Response:
    """GET /extensions/{id}/schema/: the JSON Schema of its property."""
    name = _SCHEMAS.get(extension_id)
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
