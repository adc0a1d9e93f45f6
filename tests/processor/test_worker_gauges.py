"""Is a worker behind? Its gauges on /metrics, either engine, against the real broker.

A known scenario on two partitions: inputs whose disconnect opened a window that
stays open (a two-hour reconnect window) and events that wait out a ten-minute
grace, so once the worker has caught up the open windows and buffered events
per partition are fixed numbers, and the watermark follows the worker's ticks.
To see a backlog without racing the worker, the windows topic first refuses
every batch (its max.message.bytes is below any window record): each transaction
aborts and the worker stays at its stored position, behind the records written.
"""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from livewindows.kafka.launcher import free_ports
from tests.kafkakit import event_value
from tests.processor.workerkit import (
    Worker,
    new_app_id,
    new_topics,
    set_topic_config,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

GRACE_MS = 600_000
MINUTE_MS = 60_000
# partition -> (inputs with a window open, events buffered) once caught up
EXPECTED = {0: (3, 2), 1: (1, 3)}
GAUGES = (
    "livewindows_worker_consumer_lag_records",
    "livewindows_worker_watermark_age_seconds",
    "livewindows_worker_open_windows",
    "livewindows_worker_buffered_events",
)


def scenario(partition: int, now_ms: int) -> list[tuple[bytes, bytes]]:
    """Half an hour ago: each "old" input connected, then disconnected (a window opens
    once the grace passed, for two hours); now: each "new" input connects (buffered)."""
    opened, buffered = EXPECTED[partition]
    old = now_ms - 30 * MINUTE_MS
    records = []
    for n in range(opened):
        input_id = f"p{partition}-old{n}"
        for suffix, kind, at in (("c", "connected", old), ("d", "disconnected", old + 1000)):
            records.append(
                event_value(
                    f"{input_id}-{suffix}",
                    kind,
                    at + n,
                    input_id=input_id,
                    provider="fastpix",
                    reconnect_window_s=7200,
                )
            )
    for n in range(buffered):
        input_id = f"p{partition}-new{n}"
        records.append(event_value(f"{input_id}-c", "connected", now_ms + n, input_id=input_id))
    return records


def produce_to(bootstrap: str, topic: str, by_partition: dict[int, list[tuple[bytes, bytes]]]):
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for partition, records in by_partition.items():
        for key, value in records:
            producer.produce(topic, value=value, key=key, partition=partition)
    assert producer.flush(30) == 0


def gauges(port: int) -> dict[str, dict[int, float]]:
    """name -> partition -> value of the worker's partition gauges (none while the
    worker is starting)."""
    found: dict[str, dict[int, float]] = defaultdict(dict)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            text = page.read().decode()
    except OSError:
        return found
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in GAUGES:
                found[sample.name][int(sample.labels["partition"])] = sample.value
    return found


def test_worker_gauges_show_a_backlog_then_the_scenario_caught_up(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    start_worker: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    topics = new_topics(make_topics, partitions=2)
    set_topic_config(kafka_bootstrap, topics.windows, "max.message.bytes", "200")
    now_ms = int(time.time() * 1000)
    produce_to(kafka_bootstrap, topics.events, {p: scenario(p, now_ms) for p in EXPECTED})
    (port,) = free_ports(1)
    worker = start_worker(
        topics,
        new_app_id(),
        tmp_path / "data",
        {"PROCESSOR_METRICS_PORT": str(port), "WINDOW_GRACE_MS": str(GRACE_MS)},
    )

    # Every batch aborts: between its attempts the worker is back at its stored
    # position (nothing stored yet), behind every record of the scenario.
    lag = "livewindows_worker_consumer_lag_records"
    written = {p: len(scenario(p, now_ms)) for p in EXPECTED}
    wait_until(
        lambda: all(gauges(port)[lag].get(p, 0) >= written[p] for p in EXPECTED),
        90,
        f"the lag of each partition to count its scenario (worker log: {worker.log_path})",
    )

    set_topic_config(kafka_bootstrap, topics.windows, "max.message.bytes", "1048588")
    caught_up = {
        lag: {0: 0.0, 1: 0.0},
        "livewindows_worker_open_windows": {p: float(n) for p, (n, _) in EXPECTED.items()},
        "livewindows_worker_buffered_events": {p: float(n) for p, (_, n) in EXPECTED.items()},
    }

    def scenario_shows() -> bool:
        found = gauges(port)
        return all(found[name] == values for name, values in caught_up.items())

    wait_until(scenario_shows, 90, "lag 0 and the scenario's windows and buffers")
    # The worker's ticks (every 100 ms) keep the watermark about their age.
    ages = gauges(port)["livewindows_worker_watermark_age_seconds"]
    assert set(ages) == {0, 1} and all(-1 < age < 5 for age in ages.values()), ages
    assert worker.stop() == 0
