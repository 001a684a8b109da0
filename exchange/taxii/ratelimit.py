"""Requests per partner: a token bucket each, in this process.

Applied after authentication, so one partner's burst never spends another's allowance (nor
that of everyone behind the same proxy address). Memory is bounded: at most `most` buckets are
kept, the least recently used forgotten first (a forgotten partner starts again with a full
bucket, which is only ever more lenient).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: int, *, most: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.most, self.clock = rate, burst, most, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()  # endpoints run on a thread pool

    def take(self, key: str) -> float:
        """Spend one request of `key`: 0 when it may go ahead, else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.most:
                self._buckets.popitem(last=False)
            return wait
