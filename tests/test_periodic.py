"""The background loop the audit trail, token usage, federation and the purge share."""

from __future__ import annotations

import threading
from typing import cast

from exchange.periodic import Periodic
from exchange.store import Store


class ClosedFrom:
    """Stands in for a store: only `close` is called, by the loop's thread as it ends."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def close(self) -> None:
        self.threads.append(threading.current_thread().name)


def test_a_failing_round_is_retried_and_the_thread_closes_its_connection() -> None:
    store, rounds, second = ClosedFrom(), list[str](), threading.Event()

    def work() -> None:
        rounds.append("ran")
        if len(rounds) == 1:
            raise RuntimeError("the store was busy")
        second.set()

    loop = Periodic("test-loop", 0.01, work, cast(Store, store))
    loop.start()
    assert second.wait(10), "the round after a failure did not run"
    loop.stop()
    assert store.threads == ["test-loop"]


def test_wake_runs_a_round_before_the_interval() -> None:
    ran = threading.Event()
    loop = Periodic("test-loop", 3600, ran.set, cast(Store, ClosedFrom()))
    loop.start()
    loop.wake()
    assert ran.wait(10)
    loop.stop()
