"""Serving a Prometheus collector on its own port: the worker's and billing's `/metrics`.

A collector reads what the service already keeps when Prometheus asks, so
serving metrics adds no work per record; this only starts the HTTP thread, and
reads the end offsets a consumer's lag is computed from.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.registry import Collector

from plumbing.settings import ConfigError

__all__ = ["METRICS_HOST", "known_end_offsets", "serve_collector"]

METRICS_HOST = "0.0.0.0"  # as `serve`: a scraper in another container or host reaches it


def serve_collector(host: str, port: int, collector: Collector, what: str) -> None:
    """Serve `collector` at http://host:port/metrics from a daemon thread;
    `ConfigError` naming `what` if it cannot listen."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve {what} metrics on {host}:{port}: {exc.strerror or exc}"
        ) from None


def known_end_offsets(consumer: Consumer, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """Each partition's end offset as `consumer`'s last fetch response gave it (its high
    watermark: a local read, no request); partitions it knows none for are left out.

    Call it from the thread that calls `consume()` (e.g. once a second) and keep the
    result for the metrics thread: called from another thread while `consume()`
    runs, `get_watermark_offsets` waits for it to return, for seconds (measured here).
    """
    ends = {}
    for partition in partitions:
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True
            )
        except KafkaException:
            continue
        if high >= 0:
            ends[partition] = int(high)
    return ends
