"""The one door every face goes through: which collections a partner has, what it may do
there, and which object versions it sees.

The TAXII views, the web pages, federation and exports all call `Gate.read`: it resolves the
collection (by id or alias, within the API root), checks the right, and reads through the
store with the partner's visibility applied inside the index scans. No face queries the
store itself, so no face can serve something the policy withholds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..collections import CollectionDef, Collections
from ..config import ApiRootSettings, Settings
from ..errors import Forbidden, NotFound
from ..ingest import Writer
from ..model import ALL, AuditEntry, Filters, Page, Query, Status, Visibility
from ..store import Store
from .access import Access, decide, visibility
from .partners import Partner


@dataclass(frozen=True, slots=True)
class Target:
    """A collection resolved for one partner, with what the partner may do with it."""

    root: ApiRootSettings
    collection: CollectionDef
    access: Access


class Gate:
    def __init__(self, settings: Settings, collections: Collections, store: Store) -> None:
        self.settings = settings
        self.collections = collections
        self.store = store

    def root(self, name: str) -> ApiRootSettings:
        root = self.settings.api_root(name)
        if root is None:
            raise NotFound(f"no API root {name!r}")
        return root

    def granted(self, partner: Partner, root: str) -> list[tuple[CollectionDef, Access]]:
        """The collections of an API root the partner may read or write, with its access."""
        found = []
        for collection in self.collections.in_root(root):
            access = decide(partner, collection)
            if access.visible:
                found.append((collection, access))
        return found

    def target(self, partner: Partner, root_name: str, key: str, *, write: bool = False,
               read: bool = False) -> Target:
        """Resolve a collection by id or alias; 404 unless visible, 403 unless allowed."""
        root = self.root(root_name)
        collection = self.collections.find(root_name, key)
        access = decide(partner, collection) if collection else None
        if collection is None or access is None or not access.visible:
            raise NotFound(f"no collection {key!r} in API root {root_name!r}")
        if read and not access.read:
            raise Forbidden("this partner may not read this collection")
        if write and not access.write:
            raise Forbidden("this partner may not write to this collection")
        return Target(root, collection, access)

    def read(self, partner: Partner, target: Target, filters: Filters, *,
             with_body: bool) -> Page:
        """The one read: what `filters` select in the partner's view of the collection."""
        if not target.access.read:
            raise Forbidden("this partner may not read this collection")
        query = Query.of(target.collection.id, filters, visibility(partner, target.access))
        return self.store.query(query, with_body=with_body)

    def read_object(self, partner: Partner, target: Target, object_id: str, filters: Filters,
                    *, with_body: bool) -> Page:
        """One object's versions; 404 when the partner sees no version of it at all, exactly
        as for an id that was never stored."""
        page = self.read(partner, target, filters, with_body=with_body)
        if not page.entries:
            probe = Filters(limit=1, ids=(object_id,), versions=(ALL,),
                            spec_versions=("2.0", "2.1"))
            if not self.read(partner, target, probe, with_body=False).entries:
                raise NotFound(f"no object {object_id!r} in this collection")
        return page

    def delete(self, partner: Partner, target: Target, filters: Filters,
               audit: Callable[[int], AuditEntry] | None = None) -> int:
        """Delete the versions `filters` select that the partner sees (it needs read and
        write); a version it does not see is not there for it. `audit` makes the record of
        how many went, written with the deletion."""
        if not (target.access.read and target.access.write):
            raise Forbidden("deleting needs the right to read and to write this collection")
        query = Query.of(target.collection.id, filters, visibility(partner, target.access))
        return self.store.delete(query, audit)

    def status(self, partner: Partner, root: str, status_id: str) -> Status:
        """A push's status, only for the partner who pushed."""
        self.root(root)
        record = self.store.get_status(root, status_id)
        if record is None or record.partner != partner.id:
            raise NotFound(f"no status {status_id!r}")
        return record

    def access(self, partner: Partner, collection: CollectionDef) -> Access:
        return decide(partner, collection)

    def transfer(self, peer: Partner, collection: CollectionDef, filters: Filters, *,
                 send_h2: bool = False) -> Page:
        """An onward transfer to a peer (a federation push): what the peer could read here
        as a partner, less H2 (unless its providers consented) and less what the peer itself
        stored here, which is never sent back."""
        access = decide(peer, collection)
        if not access.read:
            raise Forbidden(f"peer {peer.id} may not read {collection.id}: add "
                            f"partner:{peer.id} to the collection's read list")
        view = Visibility(max_rank=access.max_rank, onward=not send_h2, not_from=peer.id)
        return self.store.query(Query.of(collection.id, filters, view), with_body=True)

    def writer(self, partner: Partner, collection: CollectionDef) -> Writer:
        """How the partner's pushes into a collection are checked and recorded."""
        return Writer(default_rank=collection.default_rank,
                      require_marking=collection.require_marking,
                      custom=collection.custom_properties, pusher=partner.id,
                      identity=partner.identity, identities=partner.identities)
