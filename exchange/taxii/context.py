"""What the endpoints share: built once per app by create_app."""

from __future__ import annotations

from dataclasses import dataclass

from ..collections import CollectionDef
from ..config import ApiRootSettings, Settings
from ..errors import Forbidden, NotFound
from ..ingest import Ingest, Worker
from ..policy.access import Access, decide
from ..policy.auth import Authenticator
from ..policy.partners import Partner
from ..store import Store


@dataclass(frozen=True, slots=True)
class Target:
    """A collection resolved for one partner, with what the partner may do with it."""

    root: ApiRootSettings
    collection: CollectionDef
    access: Access


@dataclass(frozen=True)
class Context:
    settings: Settings
    store: Store
    collections: dict[str, CollectionDef]
    auth: Authenticator
    ingest: Ingest
    worker: Worker

    def root(self, name: str) -> ApiRootSettings:
        root = self.settings.api_root(name)
        if root is None:
            raise NotFound(f"no API root {name!r}")
        return root

    def visible(self, partner: Partner, root: str) -> list[tuple[CollectionDef, Access]]:
        found = []
        for collection in self.collections.values():
            if collection.api_root == root:
                access = decide(partner, collection)
                if access.visible:
                    found.append((collection, access))
        return found

    def target(self, partner: Partner, root_name: str, key: str, *, write: bool = False,
               read: bool = False) -> Target:
        """Resolve a collection by id or alias; 404 unless visible, 403 unless allowed."""
        root = self.root(root_name)
        for collection, access in self.visible(partner, root_name):
            if key in (collection.id, collection.alias):
                if read and not access.read:
                    raise Forbidden("this partner may not read this collection")
                if write and not access.write:
                    raise Forbidden("this partner may not write to this collection")
                return Target(root, collection, access)
        raise NotFound(f"no collection {key!r} in API root {root_name!r}")
