"""Prometheus metrics of a worker: its `Counts`, read at each scrape.

Both engines already keep what they did in a `Counts` for the periodic log line;
a collector reads it when Prometheus asks instead of updating counters per
record. The kafka engine hands over a copy made between batches (after a commit,
an abort or a restore: an aborted batch counts nothing, and a counter must never
go back), hence a function that returns the current one. Reading plain ints
from the HTTP thread needs no lock: each is read whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from plumbing.settings import ConfigError
from processor.counts import Counts

__all__ = ["METRICS_HOST", "WorkerMetrics", "serve_metrics"]

log = logging.getLogger("livewindows.worker")

METRICS_HOST = "0.0.0.0"  # as `serve`: a scraper in another container or host reaches it
_PREFIX = "livewindows_worker"
# (metric name without prefix and suffix, the `Counts` field, help); windows apart.
_COUNTERS = (
    ("records", "records", "Records of the events topic processed"),
    ("late_events", "late", "Events written to the late topic"),
    ("duplicate_events", "duplicates", "Duplicate events (counted, never written)"),
    ("dead_letters", "dead_letters", "Undecodable records written to the DLQ"),
    ("batches", "batches", "Batches stored"),
    ("batches_redone", "redone", "Batches a crash left half-stored, redone at restore"),
    ("rewinds", "rewinds", "Partitions sought back after Faust skipped records"),
    ("transactions_aborted", "aborts", "Kafka transactions aborted (the batch runs again)"),
)


class WorkerMetrics(Collector):
    def __init__(self, counts: Callable[[], Counts]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self._counts()
        windows = CounterMetricFamily(
            f"{_PREFIX}_windows", "Window records written, by type", labels=["type"]
        )
        windows.add_metric(["window.opened"], counts.opened)
        windows.add_metric(["window.closed"], counts.closed)
        yield windows
        for name, field, documentation in _COUNTERS:
            yield CounterMetricFamily(
                f"{_PREFIX}_{name}", documentation, value=getattr(counts, field)
            )


def serve_metrics(host: str, port: int, counts: Callable[[], Counts]) -> None:
    """Serve /metrics on `host:port` from a daemon thread; `ConfigError` if it cannot listen."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(WorkerMetrics(counts))
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve worker metrics on {host}:{port}: {exc.strerror or exc}"
        ) from None
    log.info("metrics at http://%s:%d/metrics", host, port)
