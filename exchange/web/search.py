"""Browse and search pages: a collection's objects newest first with filters and a search box,
and one search across every collection the analyst may read.

Reads go through the policy `Gate` like every page, with the filters and the search as terms
of the store's scan (web/filters.py): what a partner may not see is never found, counted or
hinted at. Paging is the keyset cursor, newest first; links keep the filters.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .. import audit
from . import filters, objects
from .pages import _audited, _base, _page, _pages, _to_sign_in, _visitor

PER_COLLECTION = 10  # hits shown per collection in a search across collections


async def browse(request: Request) -> Response:
    """A collection's objects, newest first, filtered and searched."""
    visitor = _visitor(request)
    if visitor is None:
        return _to_sign_in(request)
    root, key = request.path_params["root"], request.path_params["collection"]
    gate = _pages(request).gate
    with _audited(request, visitor, {}) as facts:
        target = gate.target(visitor.partner, root, key, read=True)
        facts["collection"] = target.collection.id
        form = filters.read(request.query_params, target.access.max_rank,
                            target.root.max_page_size)
        page = await run_in_threadpool(gate.read, visitor.partner, target, form.filters,
                                       with_body=True)
        facts["objects"] = audit.objects(page.entries)
    here = f"{_base(request)}/collections/{quote(root)}/{quote(key)}/"
    return _page(request, visitor, "browse.html", target=target, here=here, form=form,
                 values=form.values, tlps=filters.tlp_choices(target.access.max_rank),
                 rows=[objects.summary(e, target.collection.default_rank)
                       for e in page.entries],
                 every=form.values["versions"] == "all",
                 after=form.next_query(page.last_added, page.more),
                 first=bool(request.query_params.get("next")), kept=form.query())


async def search_all(request: Request) -> Response:
    """The first hits of a search in each collection the analyst may read, newest first,
    each with a link to the rest in that collection."""
    visitor = _visitor(request)
    if visitor is None:
        return _to_sign_in(request)
    pages = _pages(request)
    groups = []
    with _audited(request, visitor, {}) as facts:
        params = request.query_params
        asked = params.get("q", "").strip()
        form = filters.read(params, 4, 1000, page_size=PER_COLLECTION) if asked else None
        found = []
        for root in pages.settings.api_roots:
            for collection, access in pages.gate.granted(visitor.partner, root.name):
                if form is None or not access.read:
                    continue
                target = pages.gate.target(visitor.partner, root.name, collection.id,
                                           read=True)
                wanted = form.filters
                if wanted.ranks:  # each collection: only the ranks its reader receives
                    ranks = tuple(r for r in wanted.ranks if r <= access.max_rank)
                    if not ranks:
                        continue
                    wanted = dataclasses.replace(wanted, ranks=ranks)
                page = await run_in_threadpool(pages.gate.read, visitor.partner, target,
                                               wanted, with_body=True)
                found += page.entries
                if page.entries:
                    groups.append((target, [objects.summary(e, collection.default_rank)
                                            for e in page.entries], page.more))
        facts["objects"] = audit.objects(found)
    base = _base(request)
    return _page(request, visitor, "search.html", groups=groups, asked=asked,
                 kept=form.query() if form else "",
                 link=lambda t: f"{base}/collections/{quote(t.root.name)}/"
                                f"{quote(t.collection.id)}/")
