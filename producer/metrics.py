"""Prometheus metrics of one producer app, in a registry of its own.

A registry per app (not the process-global one) so several apps in one test
process, or one process serving twice, never clash over metric names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "livewindows_http_requests",
            "HTTP requests answered, by provider (none: not a webhook route) and status",
            ["provider", "status"],
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            "livewindows_publish_seconds",
            "Time from produce() to the broker's acknowledgement (or giving up)",
            ["provider"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.body_bytes = Histogram(
            "livewindows_request_body_bytes",
            "Size of webhook bodies read in full (within MAX_BODY_BYTES)",
            ["provider"],
            buckets=(256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072),
            registry=self.registry,
        )

        # Labelled children, by label values: `labels()` checks and looks up its
        # arguments on every call, and each webhook would make three calls.
        self._requests: dict[tuple[str, int], Counter] = {}
        self._body_bytes: dict[str, Histogram] = {}
        self._publish_seconds: dict[str, Histogram] = {}

    def count_request(self, provider: str, status: int) -> None:
        """`requests.labels(provider, str(status)).inc()`."""
        child = self._requests.get((provider, status))
        if child is None:
            child = self._requests[provider, status] = self.requests.labels(provider, str(status))
        child.inc()

    def observe_body_bytes(self, provider: str, size: int) -> None:
        """`body_bytes.labels(provider).observe(size)`."""
        child = self._body_bytes.get(provider)
        if child is None:
            child = self._body_bytes[provider] = self.body_bytes.labels(provider)
        child.observe(size)

    def observe_publish_seconds(self, provider: str, seconds: float) -> None:
        """`publish_seconds.labels(provider).observe(seconds)`."""
        child = self._publish_seconds.get(provider)
        if child is None:
            child = self._publish_seconds[provider] = self.publish_seconds.labels(provider)
        child.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
