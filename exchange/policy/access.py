"""The one access decision: what a partner may do with a collection."""

from __future__ import annotations

from dataclasses import dataclass

from ..collections import CollectionDef
from .partners import Partner


@dataclass(frozen=True, slots=True)
class Access:
    read: bool
    write: bool

    @property
    def visible(self) -> bool:
        """A collection a partner can neither read nor write does not exist for it."""
        return self.read or self.write


def decide(partner: Partner, collection: CollectionDef) -> Access:
    principals = partner.principals
    return Access(read=not principals.isdisjoint(collection.readers),
                  write=not principals.isdisjoint(collection.writers))
