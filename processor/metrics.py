"""Prometheus metrics of a worker: its `Counts`, read at each scrape.

Both engines already keep what they did in a `Counts` for the periodic log line;
a collector reads it when Prometheus asks instead of updating counters per
record. The kafka engine hands over a copy made between batches (after a commit,
an abort or a restore: an aborted batch counts nothing, and a counter must never
go back), hence a function that returns the current one. Reading plain ints from the HTTP thread
needs no lock: each is read whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from livewindows.settings import ConfigError
from processor.counts import Counts

__all__ = ["WorkerMetrics", "serve_metrics"]

_PREFIX = "livewindows_worker"


class WorkerMetrics(Collector):
    def __init__(self, counts: Callable[[], Counts]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self._counts()
        yield _counter("records", "Records of the events topic processed", counts.records)
        windows = CounterMetricFamily(
            f"{_PREFIX}_windows", "Window records written, by type", labels=["type"]
        )
        windows.add_metric(["window.opened"], counts.opened)
        windows.add_metric(["window.closed"], counts.closed)
        yield windows
        yield _counter("late_events", "Events written to the late topic", counts.late)
        yield _counter("duplicate_events", "Duplicate events (counted, never written)",
                       counts.duplicates)  # fmt: skip
        yield _counter("dead_letters", "Undecodable records written to the DLQ",
                       counts.dead_letters)  # fmt: skip
        yield _counter("batches", "Batches stored", counts.batches)
        yield _counter("batches_redone", "Batches a crash left half-stored, redone at restore",
                       counts.redone)  # fmt: skip
        yield _counter("rewinds", "Partitions sought back after Faust skipped records",
                       counts.rewinds)  # fmt: skip
        yield _counter("transactions_aborted", "Kafka transactions aborted (the batch runs again)",
                       counts.aborts)  # fmt: skip


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(f"{_PREFIX}_{name}", documentation, value=value)


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
