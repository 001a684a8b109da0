"""The one place a store backend is chosen: from the settings' `store`, or from a URL a
command names (`store copy --from URL --to URL`)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..config import Settings
from ..errors import ConfigError
from . import Store

MONGODB = ("mongodb://", "mongodb+srv://")


def open_store(settings: Settings, *, bulk: bool = False) -> Store:
    """The configured store, not yet opened (`Store.open` connects, in the process that uses
    it). `bulk`: a local load from input files, which stay the durable copy (SQLite only: a
    MongoDB store writes every transaction with majority write concern)."""
    if settings.store_url:
        return open_url(settings.store_url)
    from .sqlite import SQLiteStore

    return SQLiteStore(settings.store_path, bulk=bulk)


def existing_store(settings: Settings) -> Store | None:
    """The configured store, not yet opened, when there is one to read or record in: a
    MongoDB store always (the database is the server's; opening it reaches it), a SQLite
    store when its file exists (a command never creates an empty file where a server would
    start a new store)."""
    if not settings.store_url and not settings.store_path.exists():
        return None
    return open_store(settings)


def open_url(url: str, *, base: Path | None = None, bulk: bool = False) -> Store:
    """The store a URL names, not yet opened: `sqlite:///PATH` (a relative PATH from `base`,
    the current directory by default; `sqlite:////abs/path` for an absolute one) or a
    `mongodb://` URI."""
    if url.startswith("sqlite:///") and url != "sqlite:///":
        from .sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(url, base), bulk=bulk)
    if url.startswith(MONGODB):
        from .mongo import MongoStore  # pymongo is imported only by a process that uses it

        return MongoStore(url)
    raise ConfigError(f"a store URL is sqlite:///PATH or mongodb://..., not {describe(url)!r}")


def sqlite_path(url: str, base: Path | None = None) -> Path:
    return (base or Path.cwd()) / url.removeprefix("sqlite:///")


def describe(url: str) -> str:
    """The URL as it may be shown and kept (a copy's bookmark is keyed by it): a SQLite file
    by its absolute path, and never the password a MongoDB URI may carry."""
    if url.startswith("sqlite:///") and url != "sqlite:///":
        return f"sqlite:///{sqlite_path(url).resolve()}"
    parts = urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    return urlunsplit(parts)
