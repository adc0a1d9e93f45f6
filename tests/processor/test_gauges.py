"""Whether a worker is behind: its partitions' gauges, computed at the scrape (no broker)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from processor.counts import Counts
from processor.gauges import PartitionGauges, partition_gauges
from processor.metrics import WorkerMetrics
from processor.runtime import Runtime
from processor.windows import Config
from tests.kafkakit import event_value, tick_value
from tests.processor.fakes import FakeKafka, fetched

CONFIG = Config(grace_ms=1000, reconnect_window_s=5)
T = 1_790_000_000_000

# in1 disconnects (a window opens once the tick releases it); in2's event arrives
# last and waits out the grace; the tick sets the watermark to T + 1200.
RECORDS = [
    event_value("a", "connected", T, input_id="in1"),
    event_value("b", "disconnected", T + 100, input_id="in1"),
    event_value("c", "connected", T + 1100, input_id="in2"),
    tick_value(T + 1200),
]


def owning(*partitions: int) -> Runtime:
    kafka = FakeKafka()
    runtime = Runtime(CONFIG, "events", kafka, kafka, kafka)
    runtime.assign(list(partitions))
    return runtime


def test_the_gauges_of_a_partition_say_how_far_behind_it_is() -> None:
    runtime = owning(0, 1)
    assert runtime.handle({0: fetched(RECORDS)}) is None
    ends = {0: 10, 1: 0}  # 6 records written to partition 0 after these 4
    gauges = partition_gauges(runtime.parts, ends.get, now_ms=T + 3700)
    assert gauges == [
        PartitionGauges(0, lag_records=6, watermark_age_s=2.5, open_windows=1, buffered_events=1),
        PartitionGauges(1, lag_records=0, watermark_age_s=None, open_windows=0, buffered_events=0),
    ]
    runtime.handle({0: fetched([tick_value(T + 2100)], first_offset=4)})
    [zero, _one] = partition_gauges(runtime.parts, ends.get, now_ms=T + 3700)
    assert (zero.lag_records, zero.buffered_events, zero.watermark_age_s) == (5, 0, 1.6)


def test_an_end_offset_not_known_yet_is_no_lag_rather_than_a_guess() -> None:
    runtime = owning(0)
    [gauges] = partition_gauges(runtime.parts, lambda _p: None, now_ms=T)
    assert gauges.lag_records is None


def _exposed(runtime: Runtime, ends: dict[int, int]) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(
        WorkerMetrics(Counts, lambda now_ms: partition_gauges(runtime.parts, ends.get, now_ms))
    )
    return {
        (sample.name, sample.labels.get("partition", "")): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
        if family.type == "gauge"
    }


def test_each_owned_partition_is_a_series_and_a_revoked_ones_disappear() -> None:
    runtime = owning(0, 1)
    runtime.handle({0: fetched(RECORDS)})
    exposed = _exposed(runtime, {0: 4, 1: 3})
    assert exposed == {
        ("livewindows_worker_consumer_lag_records", "0"): 0,
        ("livewindows_worker_consumer_lag_records", "1"): 3,
        ("livewindows_worker_watermark_age_seconds", "0"): exposed[
            ("livewindows_worker_watermark_age_seconds", "0")
        ],
        ("livewindows_worker_open_windows", "0"): 1,
        ("livewindows_worker_open_windows", "1"): 0,
        ("livewindows_worker_buffered_events", "0"): 1,
        ("livewindows_worker_buffered_events", "1"): 0,
    }
    assert exposed[("livewindows_worker_watermark_age_seconds", "0")] > 0  # T + 1200 is past
    runtime.revoke([0])
    assert {partition for _name, partition in _exposed(runtime, {0: 4, 1: 3})} == {"1"}
