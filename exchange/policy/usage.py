"""When each API token was last used, kept in the store's named state.

The server never writes the partners file (an operator edits it; a write from the server could
undo theirs). A request only notes the time in memory; a background thread writes what was
noted once per interval (a minute by default), so a token costs at most one store write a
minute however often it is used, and none on the request's path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from ..periodic import Periodic
from ..store import Store

log = logging.getLogger(__name__)

STATE_PREFIX = "token-used:"


def state_name(digest: str) -> str:
    return STATE_PREFIX + digest


def last_used(store: Store, digest: str) -> str | None:
    """The recorded last use of a token (RFC 3339, UTC), or None."""
    doc = store.get_state(state_name(digest))
    return doc.get("at") if doc else None


class TokenUsage:
    def __init__(self, store: Store, *, interval: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.interval = interval
        self.clock = clock
        self._noted: dict[str, tuple[str, float]] = {}  # digest -> (partner, when)
        self._lock = threading.Lock()
        self._flusher = Periodic("token-usage", interval, self.flush, store)

    def seen(self, digest: str, partner_id: str) -> None:
        """Called on every request with a token: a dict assignment, nothing more."""
        now = self.clock()
        with self._lock:
            self._noted[digest] = (partner_id, now)

    def flush(self) -> int:
        """Write what was noted since the last flush; return how many records were written."""
        with self._lock:
            noted, self._noted = self._noted, {}
        written = 0
        for digest, (partner_id, when) in noted.items():
            at = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            try:
                # Several server processes share the store: keep the latest of their times.
                before = last_used(self.store, digest)
                if before is not None and before >= at:
                    continue
                self.store.put_state(state_name(digest), {"partner": partner_id, "at": at})
                written += 1
            except Exception:  # a busy or failing store must not end the recording thread
                log.exception("could not record the last use of a token of %s", partner_id)
        return written

    def start(self) -> None:
        self._flusher.start()

    def stop(self) -> None:
        """Stop the thread and write what is still noted (a clean shutdown loses nothing)."""
        self._flusher.stop(timeout=10)
        self.flush()
