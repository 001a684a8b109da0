"""TAXII 2.1 endpoints (sections 4 and 5). Each handler authenticates, resolves, then reads
through the store query or writes through ingest; nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ..errors import NotFound, TooLarge
from ..model import ALL, COMPLETE, Page, Query
from ..policy.partners import Partner
from . import params, responses
from .context import Context
from .media import check_accept, check_content_type


def _context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


def _partner(request: Request) -> Partner:
    check_accept(request.headers.get("accept"))
    return _context(request).auth.authenticate(request.headers.get("authorization"))


def discovery(request: Request) -> Response:
    """4.1 Server Discovery: GET /taxii2/."""
    _partner(request)
    settings = _context(request).settings
    base = str(request.base_url)
    document: dict[str, Any] = {"title": settings.title, "description": settings.description,
                                "api_roots": [f"{base}{r.name}/" for r in settings.api_roots]}
    if settings.contact:
        document["contact"] = settings.contact
    if settings.default_api_root:
        document["default"] = f"{base}{settings.default_api_root}/"
    return responses.taxii(document)


def api_root(request: Request, root: str) -> Response:
    """4.2 Get API Root Information: GET /{api-root}/."""
    _partner(request)
    info = _context(request).root(root)
    document: dict[str, Any] = {"title": info.title, "versions": [responses.TAXII_21],
                                "max_content_length": info.max_content_length}
    if info.description:
        document["description"] = info.description
    return responses.taxii(document)


def get_status(request: Request, root: str, status_id: str) -> Response:
    """4.3 Get Status: GET /{api-root}/status/{status-id}/ (only for the partner who pushed)."""
    partner = _partner(request)
    context = _context(request)
    context.root(root)
    record = context.store.get_status(root, status_id)
    if record is None or record.partner != partner.id:
        raise NotFound(f"no status {status_id!r}")
    return responses.status(record)


def _collection_resource(collection: Any, access: Any) -> dict[str, Any]:
    document = {"id": collection.id, "title": collection.title,
                "can_read": access.read, "can_write": access.write,
                "media_types": list(collection.media_types)}
    if collection.description:
        document["description"] = collection.description
    if collection.alias:
        document["alias"] = collection.alias
    return document


def list_collections(request: Request, root: str) -> Response:
    """5.1 Get Collections: only those the partner may read or write are listed."""
    partner = _partner(request)
    context = _context(request)
    context.root(root)
    found = [_collection_resource(c, a) for c, a in context.visible(partner, root)]
    return responses.taxii({"collections": found} if found else {})


def get_collection(request: Request, root: str, collection: str) -> Response:
    """5.2 Get a Collection."""
    target = _context(request).target(_partner(request), root, collection)
    return responses.taxii(_collection_resource(target.collection, target.access))


def _collection_page(request: Request, root: str, collection: str, *, with_body: bool) -> Page:
    """The one read of a collection's objects, shared by the objects and manifest endpoints."""
    context = _context(request)
    target = context.target(_partner(request), root, collection, read=True)
    query = params.build_query(request.query_params, target.root, target.collection.id,
                               params.OBJECTS)
    return context.store.query(query, with_body=with_body)


def get_objects(request: Request, root: str, collection: str) -> Response:
    """5.4 Get Objects: filters, keyset paging, bodies joined from stored bytes."""
    return responses.envelope(_collection_page(request, root, collection, with_body=True))


def get_manifest(request: Request, root: str, collection: str) -> Response:
    """5.3 Get Object Manifests."""
    return responses.manifest(_collection_page(request, root, collection, with_body=False))


async def add_objects(request: Request, root: str, collection: str) -> Response:
    """5.5 Add Objects: recorded durably, answered 202 with a status resource.

    Processing runs on the ingest worker; the answer waits for it up to post_wait_seconds,
    so most pushes come back complete and the rest are pending with a status to poll.
    """
    context = _context(request)
    partner = await run_in_threadpool(_partner, request)
    check_content_type(request.headers.get("content-type"))
    target = context.target(partner, root, collection, write=True)
    body = await _read_body(request, target.root.max_content_length)
    record = await run_in_threadpool(context.ingest.accept, api_root=root,
                                     collection=target.collection.id, partner=partner.id,
                                     body=body)
    if record.status != COMPLETE:
        future = asyncio.wrap_future(context.worker.submit(record.id))
        try:
            done = await asyncio.wait_for(asyncio.shield(future),
                                          context.settings.post_wait_seconds)
            record = done or record
        except TimeoutError:
            pass
    return responses.status(record, 202)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body exceeds this API root's max_content_length of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body exceeds this API root's max_content_length of {limit} "
                           "bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _object_page(request: Request, root: str, collection: str, object_id: str,
                 allowed: frozenset[str], *, with_body: bool, all_versions: bool = False) -> Any:
    context = _context(request)
    target = context.target(_partner(request), root, collection, read=True)
    query = params.build_query(request.query_params, target.root, target.collection.id,
                               allowed, object_id=object_id, all_versions=all_versions)
    page = context.store.query(query, with_body=with_body)
    if not page.entries and not _exists(context, target.collection.id, object_id):
        raise NotFound(f"no object {object_id!r} in this collection")
    return page


def _exists(context: Context, collection: str, object_id: str) -> bool:
    probe = Query(collection=collection, limit=1, ids=(object_id,), versions=(ALL,),
                  spec_versions=("2.0", "2.1"))
    return bool(context.store.query(probe, with_body=False).entries)


def get_object(request: Request, root: str, collection: str, object_id: str) -> Response:
    """5.6 Get an Object: its versions that match (the latest by default)."""
    page = _object_page(request, root, collection, object_id, params.OBJECT, with_body=True)
    return responses.envelope(page)


def get_versions(request: Request, root: str, collection: str, object_id: str) -> Response:
    """5.8 Get Object Versions: every version, oldest date_added first."""
    page = _object_page(request, root, collection, object_id, params.VERSIONS, with_body=False,
                        all_versions=True)
    return responses.versions(page)


def delete_object(request: Request, root: str, collection: str, object_id: str) -> Response:
    """5.7 Delete an Object: the matching versions (all, unless match[version] narrows)."""
    context = _context(request)
    target = context.target(_partner(request), root, collection, read=True, write=True)
    query = params.build_query(request.query_params, target.root, target.collection.id,
                               params.OBJECT, object_id=object_id, all_versions=True)
    if not context.store.delete(target.collection.id, object_id, query.versions,
                                query.spec_versions):
        raise NotFound(f"no matching version of {object_id!r} in this collection")
    return responses.raw(b"", 200)


def install(app: FastAPI) -> None:
    routes: list[tuple[str, Callable[..., Any], list[str]]] = [
        ("/taxii2/", discovery, ["GET"]),
        ("/{root}/", api_root, ["GET"]),
        ("/{root}/status/{status_id}/", get_status, ["GET"]),
        ("/{root}/collections/", list_collections, ["GET"]),
        ("/{root}/collections/{collection}/", get_collection, ["GET"]),
        ("/{root}/collections/{collection}/objects/", get_objects, ["GET"]),
        ("/{root}/collections/{collection}/objects/", add_objects, ["POST"]),
        ("/{root}/collections/{collection}/manifest/", get_manifest, ["GET"]),
        ("/{root}/collections/{collection}/objects/{object_id}/", get_object, ["GET"]),
        ("/{root}/collections/{collection}/objects/{object_id}/", delete_object, ["DELETE"]),
        ("/{root}/collections/{collection}/objects/{object_id}/versions/", get_versions,
         ["GET"]),
    ]
    for path, endpoint, methods in routes:
        app.add_api_route(path, endpoint, methods=methods, include_in_schema=False)
