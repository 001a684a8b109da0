"""The collections a running server serves, re-read when collections_dir changes.

As the partners file is (policy/auth.py): at most once per `reload_seconds`, a request looks
at the folder's listing (each file's name, mtime, inode and size: one scandir, no reads); when
it changed, every file is read and checked again. A broken set (a YAML error, a schema
error, a duplicate alias, an unconfigured API root, the folder gone) is logged once and the
last good set stays in force: a typo never turns into errors for every partner.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from .collections import CollectionDef, Collections, load_collections
from .config import Settings
from .errors import ConfigError

log = logging.getLogger(__name__)

Stamp = tuple[tuple[str, int, int, int], ...]


def _stamp(directory: str) -> Stamp | None:
    try:
        with os.scandir(directory) as entries:
            found = []
            for entry in entries:
                if entry.name.endswith((".yaml", ".yml")):
                    info = entry.stat()  # through symlinks (a Kubernetes ConfigMap's files)
                    found.append((entry.name, info.st_mtime_ns, info.st_ino, info.st_size))
    except OSError:
        return None
    return tuple(sorted(found))


class WatchedCollections(Collections):
    def __init__(self, settings: Settings, *, reload_seconds: float = 1.0) -> None:
        self.settings = settings
        self.reload_seconds = reload_seconds
        self._stamp = _stamp(str(settings.collections_dir))
        super().__init__(dict(load_collections(settings)._current()))  # at start: must load
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        # Called with the collections after each reload once set (the audit trail's hook).
        self.on_load: Callable[[list[CollectionDef]], object] | None = None

    def _current(self) -> dict[str, CollectionDef]:
        if time.monotonic() - self._checked > self.reload_seconds:
            self.reload()
        return self._by_id

    def reload(self) -> bool:
        """Re-read the folder when it changed; True when a new set is in force. A request
        that finds another one reloading goes on with the set in force."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._checked = time.monotonic()
            stamp = _stamp(str(self.settings.collections_dir))
            if stamp == self._stamp:
                return False
            self._stamp = stamp  # a broken set is reported once, not on every check
            try:
                loaded = load_collections(self.settings)._current()
            except ConfigError as exc:
                log.error("collections not reloaded: %s; the %d collections loaded before "
                          "stay in force", exc.description, len(self._by_id))
                return False
            self._by_id = dict(loaded)
            log.info("collections reloaded from %s: %d", self.settings.collections_dir,
                     len(loaded))
        finally:
            self._lock.release()
        if self.on_load is not None:
            self.on_load(list(self._by_id.values()))
        return True
