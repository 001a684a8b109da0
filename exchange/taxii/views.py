"""TAXII 2.1 endpoints (sections 4 and 5). Each handler authenticates, then reads through
the policy gate or writes through ingest; nothing else. Every request for objects or statuses
leaves an audit record, whatever its result."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from .. import audit
from ..collections import CollectionDef
from ..errors import ExchangeError, NotFound, RateLimited, TooLarge
from ..model import COMPLETE, AuditEntry, Page, Status
from ..policy.access import Access
from ..policy.partners import Partner
from . import bodylimits, client, params, responses
from .context import Services
from .media import check_accept, check_content_type


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _partner(request: Request, seen: Seen | None = None) -> Partner:
    check_accept(request.headers.get("accept"))
    services = _services(request)
    partner = client.authenticate(request, services.auth, services.settings.client_cert_header)
    if seen is not None:
        seen.partner = partner.id
    wait = services.limiter.take(partner.id)  # after authentication: per partner
    if wait:
        raise RateLimited(f"more than {services.settings.rate_limit_per_second:g} requests per "
                          f"second (rate_limit_per_second, burst rate_limit_burst "
                          f"{services.settings.rate_limit_burst}); try again later",
                          math.ceil(wait))
    return partner


@dataclass
class Seen:
    """What an audited request came to: filled in as the handler learns it."""

    partner: str = ""
    collection: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    recorded: bool = False  # a write recorded itself, in its own transaction


def _facts(request: Request, seen: Seen, result: int, **fields: Any) -> dict[str, Any]:
    scope = request.scope  # read directly: Request.url builds a URL on every call
    client = scope.get("client")
    return {"result": result, "endpoint": f"{scope['method']} {scope['path']}",
            "query": scope["query_string"][:2000].decode("latin-1") or None,
            "address": client[0] if client else None, "collection": seen.collection,
            **seen.fields, **fields}


def _entry(request: Request, kind: str, seen: Seen, result: int, **fields: Any) -> AuditEntry:
    """A write's record, for the write's own transaction."""
    return audit.entry(kind, seen.partner, **_facts(request, seen, result, **fields))


@contextmanager
def _audited(request: Request, kind: str) -> Iterator[Seen]:
    seen = Seen()
    trail = _services(request).trail
    try:
        yield seen
    except ExchangeError as exc:
        trail.later(kind, seen.partner,
                    **_facts(request, seen, responses.http_status(exc), error=exc.title))
        raise
    except Exception:
        trail.later(kind, seen.partner, **_facts(request, seen, 500, error="server error"))
        raise
    if not seen.recorded:
        trail.later(kind, seen.partner, **_facts(request, seen, 200))


def _url(request: Request, path: str) -> str:
    """A URL for discovery: under the configured public URL, else relative to this server.
    Never built from the request's Host or forwarding headers, which a client controls."""
    public = _services(request).settings.public_url
    return f"{public}{path}" if public else path


def discovery(request: Request) -> Response:
    """4.1 Server Discovery: GET /taxii2/. API root URLs are relative or under `public_url`
    (4.1.1 allows relative URLs or HTTPS ones)."""
    _partner(request)
    settings = _services(request).settings
    document: dict[str, Any] = {"title": settings.title, "description": settings.description,
                                "api_roots": [_url(request, f"/{r.name}/")
                                              for r in settings.api_roots]}
    if settings.contact:
        document["contact"] = settings.contact
    if settings.default_api_root:
        document["default"] = _url(request, f"/{settings.default_api_root}/")
    return responses.taxii(document)


def api_root(request: Request, root: str) -> Response:
    """4.2 Get API Root Information: GET /{api-root}/."""
    _partner(request)
    info = _services(request).gate.root(root)
    document: dict[str, Any] = {"title": info.title, "versions": [responses.TAXII_21],
                                "max_content_length": info.max_content_length}
    if info.description:
        document["description"] = info.description
    return responses.taxii(document)


def get_status(request: Request, root: str, status_id: str) -> Response:
    """4.3 Get Status: GET /{api-root}/status/{status-id}/ (only for the partner who pushed)."""
    with _audited(request, "status") as seen:
        partner = _partner(request, seen)
        record = _services(request).gate.status(partner, root, status_id)
        seen.collection, seen.fields["status"] = record.collection, record.id
        return responses.status(record)


def _collection_resource(collection: CollectionDef, access: Access) -> dict[str, Any]:
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
    gate = _services(request).gate
    gate.root(root)
    found = [_collection_resource(c, a) for c, a in gate.granted(partner, root)]
    return responses.taxii({"collections": found} if found else {})


def get_collection(request: Request, root: str, collection: str) -> Response:
    """5.2 Get a Collection."""
    target = _services(request).gate.target(_partner(request), root, collection)
    return responses.taxii(_collection_resource(target.collection, target.access))


def _collection_page(request: Request, seen: Seen, root: str, collection: str, *,
                     with_body: bool) -> Page:
    """The one read of a collection's objects, shared by the objects and manifest endpoints."""
    gate = _services(request).gate
    partner = _partner(request, seen)
    target = gate.target(partner, root, collection, read=True)
    seen.collection = target.collection.id
    filters = params.build_filters(request.query_params, target.root, params.OBJECTS)
    page = gate.read(partner, target, filters, with_body=with_body)
    seen.fields["objects"] = audit.objects(page.entries)
    return page


def get_objects(request: Request, root: str, collection: str) -> Response:
    """5.4 Get Objects: filters, keyset paging, bodies joined from stored bytes."""
    with _audited(request, "read") as seen:
        page = _collection_page(request, seen, root, collection, with_body=True)
        _services(request).metrics.objects_served(seen.collection or "", len(page.entries))
        return responses.envelope(page)


def get_manifest(request: Request, root: str, collection: str) -> Response:
    """5.3 Get Object Manifests."""
    with _audited(request, "read") as seen:
        page = _collection_page(request, seen, root, collection, with_body=False)
        return responses.manifest(page)


async def add_objects(request: Request, root: str, collection: str) -> Response:
    """5.5 Add Objects: recorded durably, answered 202 with a status resource.

    Processing runs on the ingest worker; the answer waits for it up to post_wait_seconds,
    so most pushes come back complete and the rest are pending with a status to poll.
    """
    services = _services(request)
    with _audited(request, "push") as seen:
        partner = await run_in_threadpool(_partner, request, seen)
        check_content_type(request.headers.get("content-type"))
        target = services.gate.target(partner, root, collection, write=True)
        seen.collection = target.collection.id
        body = await _read_body(request, target.root.max_content_length)
        settings = services.settings

        def accepted(status: Status) -> AuditEntry:
            seen.recorded = True
            return _entry(request, "push", seen, 202, status=status.id,
                          total=status.total_count, refused=len(status.failures))

        def accept() -> Status:
            bodylimits.check(body, settings.max_json_depth, settings.max_string_bytes,
                             settings.max_json_containers)
            return services.ingest.accept(
                api_root=root, collection=target.collection.id,
                writer=services.gate.writer(partner, target.collection), body=body,
                record=accepted)

        record = await run_in_threadpool(accept)
    if record.status != COMPLETE:
        future = asyncio.wrap_future(services.worker.submit(record.id))
        try:
            done = await asyncio.wait_for(asyncio.shield(future),
                                          services.settings.post_wait_seconds)
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


def _object_page(request: Request, seen: Seen, root: str, collection: str, object_id: str,
                 allowed: frozenset[str], *, with_body: bool, all_versions: bool = False) -> Page:
    gate = _services(request).gate
    partner = _partner(request, seen)
    target = gate.target(partner, root, collection, read=True)
    seen.collection = target.collection.id
    filters = params.build_filters(request.query_params, target.root, allowed,
                                   object_id=object_id, all_versions=all_versions)
    page = gate.read_object(partner, target, object_id, filters, with_body=with_body)
    seen.fields["objects"] = audit.objects(page.entries)
    return page


def get_object(request: Request, root: str, collection: str, object_id: str) -> Response:
    """5.6 Get an Object: its versions that match (the latest by default)."""
    with _audited(request, "read") as seen:
        page = _object_page(request, seen, root, collection, object_id, params.OBJECT,
                            with_body=True)
        _services(request).metrics.objects_served(seen.collection or "", len(page.entries))
        return responses.envelope(page)


def get_versions(request: Request, root: str, collection: str, object_id: str) -> Response:
    """5.8 Get Object Versions: every version, oldest date_added first."""
    with _audited(request, "read") as seen:
        page = _object_page(request, seen, root, collection, object_id, params.VERSIONS,
                            with_body=False, all_versions=True)
        return responses.versions(page)


def delete_object(request: Request, root: str, collection: str, object_id: str) -> Response:
    """5.7 Delete an Object: the matching versions (all, unless match[version] narrows)."""
    gate = _services(request).gate
    with _audited(request, "delete") as seen:
        partner = _partner(request, seen)
        target = gate.target(partner, root, collection, read=True, write=True)
        seen.collection = target.collection.id
        filters = params.build_filters(request.query_params, target.root, params.OBJECT,
                                       object_id=object_id, all_versions=True)

        def deleted(count: int) -> AuditEntry:
            seen.recorded = True
            return _entry(request, "delete", seen, 200, id=object_id, deleted=count)

        if not gate.delete(partner, target, filters, deleted):
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
