"""Work a server process does in the background, every few seconds, on a thread of its own.

The audit trail's flush, the token-usage flush, federation's ticks and the retention purge
share one loop: a failing round (an exception, or `work` answering False) is logged and the
next one runs an interval later (serving goes on; a round early from `wake` waits too), `wake`
runs a round early, and the store connection the thread opened is closed when it ends (the
stores keep one connection per thread).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .store import Store

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval: float, work: Callable[[], object],
                 store: Store) -> None:
        self.name = name
        self.interval = interval
        self.work = work
        self.store = store
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """For long rounds: stop between steps when the server is shutting down."""
        return self._stop.is_set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self.interval)
                self._wake.clear()
                if self._stop.is_set():
                    return
                try:
                    failed = self.work() is False
                except Exception:
                    log.exception("%s failed; the next round tries again", self.name)
                    failed = True
                if failed:
                    self._stop.wait(self.interval)
        finally:
            self.store.close()
