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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
