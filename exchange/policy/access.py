"""The one access decision: what a partner may do with a collection, and see in it."""

from __future__ import annotations

from dataclasses import dataclass

from ..collections import CollectionDef
from ..model import AMBER_STRICT, RED, Visibility
from .partners import Partner


@dataclass(frozen=True, slots=True)
class Access:
    read: bool
    write: bool
    max_rank: int  # the highest TLP rank it receives here

    @property
    def visible(self) -> bool:
        """A collection a partner can neither read nor write does not exist for it."""
        return self.read or self.write


def decide(partner: Partner, collection: CollectionDef) -> Access:
    """Rights from the collection's lists; the rank from the partner's clearance, or the
    collection's override for it (a partner entry over its groups' entries, the highest group
    entry among several). TLP:RED goes only to the collection's RED recipients."""
    principals = partner.principals
    clearance = partner.clearance
    mine = f"partner:{partner.id}"
    if mine in collection.clearances:
        clearance = collection.clearances[mine]
    else:
        groups = [rank for who, rank in collection.clearances.items() if who in principals]
        clearance = max(groups, default=clearance)
    if clearance >= RED and principals.isdisjoint(collection.red_recipients):
        clearance = AMBER_STRICT
    return Access(read=not principals.isdisjoint(collection.readers),
                  write=not principals.isdisjoint(collection.writers), max_rank=clearance)


def visibility(partner: Partner, access: Access) -> Visibility:
    """What the partner sees when it reads: up to its rank, and always what it pushed."""
    return Visibility(max_rank=access.max_rank, pusher=partner.id)
