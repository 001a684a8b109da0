"""The object page: one version of an object, readably, with its versions, the difference
from another version (`?version=...&compare=...`), what it references, what references it
(`?refs_after=` pages the latter) and a small graph of both, drawn by static/graph.js."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .. import audit
from ..errors import NotFound
from ..model import ALL, LAST, Filters
from ..stix import IDENTIFIER_RE, version_key
from ..store import cursor
from . import objects, pages, related


async def object_page(request: Request) -> Response:
    visitor = pages._visitor(request)
    if visitor is None:
        return pages._to_sign_in(request)
    root, key = request.path_params["root"], request.path_params["collection"]
    object_id = request.path_params["object_id"]
    gate = pages._pages(request).gate
    params = request.query_params
    version, compare = params.get("version"), params.get("compare")
    with pages._audited(request, visitor, {}) as facts:
        target = gate.target(visitor.partner, root, key, read=True)
        facts["collection"] = target.collection.id
        if not IDENTIFIER_RE.match(object_id):
            raise NotFound(f"no object {object_id!r} in this collection")
        after = cursor.decode(params["refs_after"]) if params.get("refs_after") else None

        def one(chosen: str | None) -> Filters:
            return Filters(limit=1, ids=(object_id,),
                           versions=(version_key(chosen),) if chosen else (LAST,))

        page = await run_in_threadpool(gate.read_object, visitor.partner, target, object_id,
                                       one(version), with_body=True)
        if not page.entries:  # the object is there for this partner, this version is not
            raise NotFound(f"no version {version!r} of {object_id}")
        handed = list(page.entries)
        entry = page.entries[0]
        obj = objects.parse(entry)
        changes = None
        if compare:
            other = await run_in_threadpool(gate.read_object, visitor.partner, target,
                                            object_id, one(compare), with_body=True)
            if not other.entries:
                raise NotFound(f"no version {compare!r} of {object_id}")
            handed += other.entries
            changes = related.diff(objects.parse(other.entries[0]), obj)
        every = Filters(limit=target.root.max_page_size, ids=(object_id,), versions=(ALL,))
        versions = await run_in_threadpool(gate.read, visitor.partner, target, every,
                                           with_body=False)
        around = await run_in_threadpool(related.gather, gate, visitor.partner, target, obj,
                                         target.collection.default_rank, after)
        facts["objects"] = audit.objects(handed + around.entries)
    base = pages._base(request)
    collection_url = f"{base}/collections/{quote(root)}/{quote(key)}/"
    here = f"{collection_url}objects/{quote(object_id)}/"
    more = "?" + urlencode({**({"version": version} if version else {}),
                            "refs_after": cursor.encode(around.incoming_after)}) \
        if around.incoming_after is not None else ""
    return pages._page(request, visitor, "object.html", target=target, entry=entry,
                       summary=objects.summary(entry, target.collection.default_rank),
                       markings=objects.markings(obj), handling=objects.handling(obj),
                       fields=objects.fields(obj), raw=objects.raw(obj), versions=versions,
                       here=here, objects_url=f"{collection_url}objects/", related=around,
                       compare=compare, changes=changes, more_incoming=more,
                       graph=around.graph)
