"""Prometheus metrics of a worker: its `Counts` and its partitions' gauges, read at each scrape.

Both engines already keep what they did in a `Counts` for the periodic log line;
a collector reads it when Prometheus asks instead of updating counters per
record. The kafka engine hands over a copy made between batches (after a commit,
an abort or a restore: an aborted batch counts nothing, and a counter must never
go back), hence a function that returns the current one. Reading plain ints
from the HTTP thread needs no lock: each is read whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from plumbing.metrics import METRICS_HOST, serve_collector
from processor.counts import Counts
from processor.gauges import PartitionGauges

__all__ = ["METRICS_HOST", "WorkerMetrics", "serve_metrics"]

log = logging.getLogger("livewindows.worker")

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
# (metric name without prefix, the `PartitionGauges` field, help): one series per owned partition.
_GAUGES = (
    (
        "consumer_lag_records",
        "lag_records",
        "Records of the events partition after the worker's position (end offset - position)",
    ),
    (
        "watermark_age_seconds",
        "watermark_age_s",
        "Wall clock minus the partition's watermark: how late its windows are released",
    ),
    ("open_windows", "open_windows", "Inputs of the partition with a window open"),
    ("buffered_events", "buffered_events", "Events of the partition waiting out the grace"),
)
Gauges = Callable[[int], Iterable[PartitionGauges]]  # now (epoch ms) -> each owned partition's


def _no_partitions(_now_ms: int) -> Iterable[PartitionGauges]:
    return ()


class WorkerMetrics(Collector):
    def __init__(self, counts: Callable[[], Counts], gauges: Gauges = _no_partitions) -> None:
        self._counts = counts
        self._gauges = gauges

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
        partitions = list(self._gauges(time.time_ns() // 1_000_000))
        for name, field, documentation in _GAUGES:
            family = GaugeMetricFamily(f"{_PREFIX}_{name}", documentation, labels=["partition"])
            for gauges in partitions:
                value = getattr(gauges, field)
                if value is not None:
                    family.add_metric([str(gauges.partition)], value)
            yield family


def serve_metrics(
    host: str, port: int, counts: Callable[[], Counts], gauges: Gauges = _no_partitions
) -> None:
    """Serve /metrics on `host:port` from a daemon thread; `ConfigError` if it cannot listen."""
    serve_collector(host, port, WorkerMetrics(counts, gauges), "worker")
    log.info("metrics at http://%s:%d/metrics", host, port)
