"""The one place a store backend is chosen: from the settings' `store`."""

from __future__ import annotations

from ..config import Settings
from . import Store


def open_store(settings: Settings, *, bulk: bool = False) -> Store:
    """The configured store, not yet opened (`Store.open` connects, in the process that uses
    it). `bulk`: a local load from input files, which stay the durable copy (SQLite only: a
    MongoDB store writes every transaction with majority write concern)."""
    if settings.store_url:
        from .mongo import MongoStore  # pymongo is imported only by a server that uses it

        return MongoStore(settings.store_url)
    from .sqlite import SQLiteStore

    return SQLiteStore(settings.store_path, bulk=bulk)
