"""Prometheus metrics of `livewindows billing`: is it behind, and when did it last bill?

Read from the consumer when Prometheus asks (nothing per record): the records of
each owned partition of the windows topic after the last one in the database,
and when a batch with a window record was last committed to the database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from plumbing.metrics import serve_collector

__all__ = ["BillingMetrics", "serve_metrics"]

log = logging.getLogger("livewindows.billing")


class _Consumer(Protocol):
    @property
    def last_window_s(self) -> float | None: ...

    def lag(self) -> dict[int, int]: ...


class BillingMetrics(Collector):
    def __init__(self, consumer: _Consumer) -> None:
        self._consumer = consumer

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "livewindows_billing_consumer_lag_records",
            "Window records of the partition not yet in the database (end offset - done)",
            labels=["partition"],
        )
        for partition, records in self._consumer.lag().items():
            lag.add_metric([str(partition)], records)
        yield lag
        last = GaugeMetricFamily(
            "livewindows_billing_last_window_timestamp_seconds",
            "When (Unix time) a batch with a window record was last committed to the database",
        )
        if self._consumer.last_window_s is not None:
            last.add_metric([], self._consumer.last_window_s)
        yield last


def serve_metrics(host: str, port: int, consumer: _Consumer) -> None:
    """Serve /metrics on `host:port` from a daemon thread; `ConfigError` if it cannot listen."""
    serve_collector(host, port, BillingMetrics(consumer), "billing")
    log.info("billing: metrics at http://%s:%d/metrics", host, port)
