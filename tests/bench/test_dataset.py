"""The benchmark's events dataset: realistic, valid, reproducible (no broker)."""

from __future__ import annotations

import time
from collections import Counter

import orjson

from bench.dataset import DAY_MS, FUTURE_BASE_MS, LONG_TICK_MS, Spec, records
from processor.codec import decode
from processor.windows import Config, PartitionState, Tick, WindowRecord, process
from schemas.records import Event
from schemas.timestamps import parse_ms

SPEC = Spec(events=3_000, inputs=300, partitions=3)


def test_exactly_the_events_asked_for_plus_ticks_on_every_partition() -> None:
    found = list(records(SPEC))
    events = [(k, v) for k, v, p in found if p is None]
    ticks = Counter(p for _k, _v, p in found if p is not None)
    assert len(events) == SPEC.events
    assert set(ticks) == set(range(SPEC.partitions))
    assert len(set(ticks.values())) == 1  # each tick goes to every partition


def test_every_record_is_what_the_producer_and_worker_write() -> None:
    kinds: Counter[str] = Counter()
    providers: Counter[str] = Counter()
    received = []
    for key, value, partition in records(SPEC):
        record = decode(key, value)
        if partition is not None:
            assert isinstance(record, Tick)
            continue
        event = Event.model_validate_json(value)
        assert key == event.key.encode()
        kinds[event.kind] += 1
        providers[event.provider] += 1
        received.append(orjson.loads(value)["received_at"])
    assert set(kinds) == {"connected", "disconnected", "errored", "ended", "other"}
    assert set(providers) == {"cloudflare", "fastpix", "gjirafa"}
    assert received == sorted(received)  # appended in arrival order


def test_same_seed_same_bytes_and_windows_open_and_close() -> None:
    assert list(records(SPEC)) == list(records(SPEC))
    state, types = PartitionState(), Counter[str]()
    for key, value, _partition in records(SPEC):
        state, outputs = process(state, decode(key, value), Config(5000, 60))
        types.update(o.type for o in outputs if isinstance(o, WindowRecord))
    assert types["window.opened"] > SPEC.inputs // 2
    assert types["window.closed"] > 0.9 * types["window.opened"]


def test_the_long_lived_dataset_spreads_each_inputs_events_over_its_days() -> None:
    spec = Spec(events=100 * 30, inputs=30, partitions=3, days=30)
    found = list(records(spec))
    events = [orjson.loads(v) for _k, v, p in found if p is None]
    per_input = Counter(e["input_id"] for e in events)
    assert set(per_input.values()) == {100}
    received = sorted(parse_ms(e["received_at"]) for e in events)
    # in the future, so the wall-clock ticks a worker writes never move the watermark
    assert received[0] > FUTURE_BASE_MS - 1 > time.time() * 1000
    assert received[-1] - received[0] > 29 * DAY_MS
    ticks = [p for _k, _v, p in found if p is not None]
    assert len(ticks) <= 3 * (30 * DAY_MS // LONG_TICK_MS + 2)  # one per 5 minutes, not per second
