"""Failed logins, throttled per source address and per (partner id, address) pair.

After too many failures in a window, a source is refused (429 with Retry-After) before any
credential is checked: a flood of wrong passwords then costs one argon2 check per allowed
failure, not one per request, and cannot stall other partners' logins. Counting per address and
per (partner, address), never per partner alone, means an attacker who knows a partner's id
locks out only its own address, not the partner at the partner's address.

Memory is bounded: each table keeps at most `max_entries` sources, dropping the least recently
failed first. IPv6 sources count per /64 (one host usually holds a whole /64, so counting single
addresses would let it try 2**64 times).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ..errors import Throttled

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4096)  # asked on every request: parsing is most of its cost
def source_key(address: str) -> str:
    """The unit failures are counted by: the address, or its /64 for IPv6."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP address (a Unix socket, a test client): itself
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def log_throttled(address: str, partner_id: str | None) -> None:
    if partner_id is None:
        log.warning("failed logins from %s: throttled", address)
    else:
        log.warning("failed logins as %r from %s: throttled", partner_id, address)


class _Window:
    """Failures per key in fixed windows that start at a key's first failure."""

    def __init__(self, limit: int, seconds: float, max_entries: int) -> None:
        self.limit, self.seconds, self.max_entries = limit, seconds, max_entries
        self.entries: OrderedDict[object, list[float]] = OrderedDict()  # key -> [start, count]

    def retry_after(self, key: object, now: float) -> float:
        entry = self.entries.get(key)
        if entry is None or entry[1] < self.limit:
            return 0.0
        return max(0.0, entry[0] + self.seconds - now)

    def fail(self, key: object, now: float) -> bool:
        """Count a failure; True when it is the one that reaches the limit."""
        entry = self.entries.get(key)
        if entry is None or now - entry[0] >= self.seconds:
            entry = [now, 0.0]
        entry[1] += 1
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return entry[1] == self.limit

    def forget(self, key: object) -> None:
        self.entries.pop(key, None)


class Throttle:
    def __init__(self, *, per_address: int = 30, per_partner_and_address: int = 10,
                 window_seconds: float = 300.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic,
                 on_throttled: Callable[[str, str | None], None] = log_throttled,
                 on_failed: Callable[[], None] | None = None) -> None:
        self._addresses = _Window(per_address, window_seconds, max_entries)
        self._pairs = _Window(per_partner_and_address, window_seconds, max_entries)
        self._lock = threading.Lock()
        self.clock = clock
        # The one place a throttle event is reported (an audit trail can hook it): called once
        # when an address, or a partner id at an address, reaches its limit.
        self.on_throttled = on_throttled
        self.on_failed = on_failed  # each failed login (the metrics count them)

    def __len__(self) -> int:
        return len(self._addresses.entries) + len(self._pairs.entries)

    def check(self, address: str, partner_id: str | None) -> None:
        """Raise Throttled when this source may not try now."""
        source = source_key(address)
        now = self.clock()
        with self._lock:
            wait = self._addresses.retry_after(source, now)
            if partner_id is not None:
                wait = max(wait, self._pairs.retry_after((partner_id, source), now))
        if wait > 0:
            raise Throttled(math.ceil(wait))

    def failed(self, address: str, partner_id: str | None) -> None:
        source = source_key(address)
        now = self.clock()
        with self._lock:
            events: list[str | None] = [None] if self._addresses.fail(source, now) else []
            if partner_id is not None and self._pairs.fail((partner_id, source), now):
                events.append(partner_id)
        if self.on_failed is not None:
            self.on_failed()
        for who in events:
            self.on_throttled(source, who)

    def succeeded(self, address: str, partner_id: str | None) -> None:
        """A good login clears its pair, never its address: a partner that logs in between
        guesses at other partners' passwords must not reset its own count."""
        if partner_id is not None:
            with self._lock:
                self._pairs.forget((partner_id, source_key(address)))
