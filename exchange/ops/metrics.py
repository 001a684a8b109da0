"""Prometheus metrics: one registry per app, and what a scrape of /metrics answers.

Labels are bounded: the endpoint is the matched route's template (`/{root}/collections/`),
never the path a client sent, and a collection label takes only configured collection ids.

With several server processes (`serve --workers N`) each has its own counters. `serve` then
points PROMETHEUS_MULTIPROC_DIR at a fresh folder before prometheus-client is imported, so
every process writes its values there, and a scrape answered by any process adds up all of
them (prometheus-client's multiprocess mode). Pending pushes are not kept per process: the
store holds them for every process, so the gauge is read from the store at scrape time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ..errors import ExchangeError

log = logging.getLogger(__name__)

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"
# From a sub-millisecond match[id] to a slow push; Prometheus adds +Inf.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0)


class StoreGauges(Collector):
    """Read from the store when scraped: whether it answers, and the pushes it holds
    pending (accepted, not yet processed, whichever process accepted them)."""

    def __init__(self, ping: Callable[[], int]) -> None:
        self.ping = ping

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            pending: int | None = self.ping()
        except ExchangeError as exc:
            log.warning("metrics: the store did not answer: %s", exc)
            pending = None
        yield GaugeMetricFamily("taxii_exchange_store_up",
                                "1 when the store answered this scrape, else 0",
                                value=0 if pending is None else 1)
        if pending is not None:
            yield GaugeMetricFamily("taxii_exchange_pending_pushes",
                                    "Pushes accepted and not yet processed (all processes)",
                                    value=pending)


class Metrics:
    def __init__(self, ping: Callable[[], int]) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROCESS))
        self.registry = CollectorRegistry()
        self.store = StoreGauges(ping)
        self.requests = Counter(
            "taxii_exchange_requests", "HTTP requests answered, by route template and status",
            ["method", "endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "taxii_exchange_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template",
            ["method", "endpoint"], buckets=BUCKETS, registry=self.registry)
        self.served = Counter(
            "taxii_exchange_objects_served", "Objects in TAXII objects responses, by collection",
            ["collection"], registry=self.registry)
        self.ingested = Counter(
            "taxii_exchange_objects_ingested",
            "Object versions stored (pushes and federation pulls), by collection",
            ["collection"], registry=self.registry)
        self.failed_logins = Counter(
            "taxii_exchange_failed_logins", "Credentials refused (TAXII API and pages)",
            registry=self.registry)
        if not self.multiprocess:
            self.registry.register(self.store)
        # Labelled children by label values: labels() takes a lock and builds a tuple.
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        key = (method, endpoint, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(method, endpoint, str(status)),
                        self.latency.labels(method, endpoint))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def objects_served(self, collection: str, count: int) -> None:
        if count:
            self.served.labels(collection).inc(count)

    def objects_ingested(self, collection: str, count: int) -> None:
        if count:
            self.ingested.labels(collection).inc(count)

    def failed_login(self) -> None:
        self.failed_logins.inc()

    def scrape(self) -> bytes:
        """The text exposition of every metric: of all processes in multiprocess mode."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(self.store)
        return generate_latest(registry)
