"""Prometheus metrics of one producer app, in a registry of its own.

A registry per app (not the process-global one) so several apps in one test
process, or one process serving twice, never clash over metric names.

The counts are plain ints behind a custom collector, not prometheus_client's
`Counter` and `Histogram`: those take a lock and look up a labelled child per
update, ~3 µs per webhook for the three updates (measured at saturation; see
bench/notes.md), where plain ints cost ~0.3 µs. Nothing but the event loop's
thread updates or reads them, so no lock is needed. The exposition is the same
series as before, without the optional `_created` samples.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["CONTENT_TYPE", "Histogram", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

PUBLISH_SECONDS_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BODY_BYTES_BUCKETS = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)


class Histogram:
    """Observations of one label set: a count per bucket (not cumulative) and the sum.

    Bucket i counts values <= bounds[i] (Prometheus' `le`), the last one the rest.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum: float = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """(`le`, count of values <= le) per bucket, `+Inf` last, as the exposition wants."""
        out, total = [], 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += count
            out.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
        return out


class Metrics(Collector):
    def __init__(self) -> None:
        # (provider, status) -> answers; provider -> histogram
        self.requests: dict[tuple[str, int], int] = {}
        self.publish_seconds: dict[str, Histogram] = {}
        self.body_bytes: dict[str, Histogram] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def count_request(self, provider: str, status: int) -> None:
        key = (provider, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def observe_body_bytes(self, provider: str, size: int) -> None:
        histogram = self.body_bytes.get(provider)
        if histogram is None:
            histogram = self.body_bytes[provider] = Histogram(BODY_BYTES_BUCKETS)
        histogram.observe(size)

    def observe_publish_seconds(self, provider: str, seconds: float) -> None:
        histogram = self.publish_seconds.get(provider)
        if histogram is None:
            histogram = self.publish_seconds[provider] = Histogram(PUBLISH_SECONDS_BUCKETS)
        histogram.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "livewindows_http_requests",
            "HTTP requests answered, by provider (none: not a webhook route) and status",
            labels=["provider", "status"],
        )
        for (provider, status), count in sorted(self.requests.items()):
            requests.add_metric([provider, str(status)], float(count))
        yield requests
        yield _histogram(
            "livewindows_publish_seconds",
            "Time from produce() to the broker's acknowledgement (or giving up)",
            self.publish_seconds,
        )
        yield _histogram(
            "livewindows_request_body_bytes",
            "Size of webhook bodies read in full (within MAX_BODY_BYTES)",
            self.body_bytes,
        )


def _histogram(name: str, documentation: str, by_provider: dict[str, Histogram]) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=["provider"])
    for provider, histogram in sorted(by_provider.items()):
        family.add_metric([provider], histogram.cumulative(), histogram.sum)
    return family
