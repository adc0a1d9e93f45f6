"""A reproducible, realistic events topic: canonical events of all three providers, with ticks.

Each input lives one session in provider-shaped event types: it connects, has some
`other` events, drops (disconnected, or errored on Cloudflare) and reconnects,
sometimes only after its reconnect window (a time-out), and ends (FastPix and
Gjirafa; Cloudflare has no end event). Arrivals lag occurrence by 50-800 ms, 2 % by
2-8 s (so some come late), and 1 % of events are sent twice (a provider's retry).
Records are appended in arrival order, as the producer appends them, with a tick
to every partition each simulated second, as the worker writes them.

Values are the producer's exact record shape (field order of `Event.model_dump`),
built from templates rather than through pydantic so a million cost seconds.

`Spec.days` > 0 makes the long-lived dataset instead (`bench.state_bench`): every
input has `events / inputs` events in short sessions spread over that many days,
a tick to every partition each simulated `LONG_TICK_MS`, and times from
`FUTURE_BASE_MS` on, so the wall-clock ticks a worker writes into the topic are
always behind its watermark and change nothing.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from plumbing.clients import KEY_PARTITIONER
from processor.codec import encode_tick
from producer.normalize import derived_event_id
from producer.sample_webhooks import cloudflare_document
from schemas.timestamps import format_ms

# Simulated time starts here (fixed, so a dataset is the same bytes on every run).
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00.000Z
TICK_MS = 1000
FUTURE_BASE_MS = 1_893_456_000_000  # 2030-01-01T00:00:00.000Z
LONG_TICK_MS = 300_000
DAY_MS = 86_400_000
PROVIDERS = ("cloudflare", "fastpix", "gjirafa")
PROVIDER_WEIGHTS = (0.4, 0.35, 0.25)

# kind -> the provider event types that map to it (SPEC §3); "status:<S>" is
# Gjirafa's live.video.status.changed with data.Status S.
_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "cloudflare": {
        "connected": ("live_input.connected",),
        "disconnected": ("live_input.disconnected",),
        "errored": ("live_input.errored",),
        "ended": (),
        "other": (),
    },
    "fastpix": {
        "connected": ("video.live_stream.connected", "video.live_stream.active"),
        "disconnected": ("video.live_stream.disconnected",),
        "errored": (),
        "ended": ("video.live_stream.idle", "video.live_stream.disabled"),
        "other": ("video.live_stream.recording", "video.live_stream.updated"),
    },
    "gjirafa": {
        "connected": ("live.video.started", "status:Live"),
        "disconnected": ("status:Interrupted",),
        "errored": (),
        "ended": ("live.video.stopped", "status:Offline"),
        "other": ("live.video.updated", "live.video.thumbnail.changed", "status:Processing"),
    },
}


@dataclass(frozen=True, slots=True)
class Spec:
    """What to generate; the same spec and seed give the same records."""

    events: int
    inputs: int
    partitions: int = 6
    seed: int = 20260101
    days: int = 0  # > 0: the long-lived dataset over that many days

    @property
    def base_ms(self) -> int:
        return FUTURE_BASE_MS if self.days else BASE_MS

    @property
    def tick_ms(self) -> int:
        return LONG_TICK_MS if self.days else TICK_MS

    @property
    def span_ms(self) -> int:
        """Simulated time over which inputs start: ~1,000 events per simulated second."""
        return max(10_000, self.events)


@dataclass(frozen=True, slots=True)
class _Planned:
    received_ms: int
    order: int  # ties in arrival time keep generation order
    input_no: int
    occurred_ms: int
    kind: str
    event_type: str
    event_id: str


def _input_id(provider: str, n: int, seed: int) -> str:
    digest = hashlib.blake2b(f"{seed}/{n}".encode(), digest_size=16).hexdigest()
    if provider == "gjirafa":
        return f"lv{digest[:14]}"
    return digest


def _session(
    rng: random.Random, provider: str, start_ms: int, length: int
) -> list[tuple[int, str]]:
    """(occurred_ms, kind) of one input's session, `length` events long."""
    events = [(start_ms, "connected")]
    t = start_ms
    live = True
    has_other = bool(_TYPES[provider]["other"])
    has_end = bool(_TYPES[provider]["ended"])
    while len(events) < length - (1 if has_end else 0):
        if live:
            if has_other and rng.random() < 0.35:
                t += rng.randint(1_000, 20_000)
                events.append((t, "other"))
                continue
            t += rng.randint(5_000, 90_000)
            errored = provider == "cloudflare" and rng.random() < 0.2
            events.append((t, "errored" if errored else "disconnected"))
            live = False
        else:
            # 80 % reconnect within the 60 s reconnect window, 20 % after it (a time-out).
            gap = rng.randint(500, 45_000) if rng.random() < 0.8 else rng.randint(61_000, 150_000)
            t += gap
            events.append((t, "connected"))
            live = True
    if has_end:
        t += rng.randint(1_000, 30_000)
        events.append((t, "ended"))
    return events


def _sessions_over_days(
    rng: random.Random, provider: str, spec: Spec, length: int
) -> list[tuple[int, str]]:
    """`length` events of one input: sessions of 3-6 events, each starting at a random
    time of the `spec.days` days (a session lasts minutes)."""
    lengths = []
    while sum(lengths) < length:
        lengths.append(min(rng.randint(3, 6), length - sum(lengths)))
    starts = sorted(rng.randrange(spec.days * DAY_MS) for _ in lengths)
    events: list[tuple[int, str]] = []
    for start, n in zip(starts, lengths, strict=True):
        events += _session(rng, provider, spec.base_ms + start, n)[:n]
    return events


def _plan(spec: Spec) -> tuple[list[_Planned], list[tuple[str, str]]]:
    """Every event of the dataset in arrival order, and (provider, input_id) per input."""
    rng = random.Random(spec.seed)
    inputs: list[tuple[str, str]] = []
    planned: list[_Planned] = []
    order = 0
    remaining = spec.events
    for n in range(spec.inputs):
        provider = rng.choices(PROVIDERS, PROVIDER_WEIGHTS)[0]
        input_id = _input_id(provider, n, spec.seed)
        inputs.append((provider, input_id))
        left = spec.inputs - n
        if left == 1:
            length = remaining  # the last input absorbs the rounding
        elif spec.days:
            length = spec.events // spec.inputs
        else:
            mean = remaining / left
            length = min(max(3, round(rng.gauss(mean, mean / 3))), remaining - 3 * (left - 1))
        retries = min(length - 3, sum(1 for _ in range(length) if rng.random() < 0.01))
        if spec.days:
            session = _sessions_over_days(rng, provider, spec, length - retries)
        else:
            session = _session(
                rng, provider, BASE_MS + rng.randrange(spec.span_ms), length - retries
            )
        sent: list[_Planned] = []
        for occurred_ms, kind in session:
            delay = rng.randint(50, 800) if rng.random() < 0.98 else rng.randint(2_000, 8_000)
            event_type = rng.choice(_TYPES[provider][kind])
            if provider == "fastpix":
                event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            else:
                event_id = derived_event_id(
                    provider, input_id, _provider_event_type(event_type), format_ms(occurred_ms)
                )
            sent.append(
                _Planned(occurred_ms + delay, order, n, occurred_ms, kind, event_type, event_id)
            )
            order += 1
        for _ in range(max(0, retries)):
            first = rng.choice(sent)
            retry_ms = first.received_ms + rng.randint(1_000, 10_000)
            planned.append(
                _Planned(
                    retry_ms,
                    order,
                    n,
                    first.occurred_ms,
                    first.kind,
                    first.event_type,
                    first.event_id,
                )
            )
            order += 1
        planned += sent
        remaining -= len(sent) + max(0, retries)
    planned.sort(key=lambda p: (p.received_ms, p.order))
    return planned, inputs


def _provider_event_type(event_type: str) -> str:
    return "live.video.status.changed" if event_type.startswith("status:") else event_type


def records(spec: Spec) -> Iterator[tuple[bytes, bytes, int | None]]:
    """(key, value, partition) in append order; partition is set for ticks only."""
    planned, inputs = _plan(spec)
    tick_key, _ = encode_tick(0)
    tick_ms = spec.tick_ms
    next_tick = (planned[0].received_ms // tick_ms + 1) * tick_ms if planned else 0
    for p in planned:
        while p.received_ms >= next_tick:
            _, value = encode_tick(next_tick)
            for partition in range(spec.partitions):
                yield tick_key, value, partition
            next_tick += tick_ms
        provider, input_id = inputs[p.input_no]
        yield f"{provider}:{input_id}".encode(), _event_value(p, provider, input_id), None
    # A last tick far enough ahead that every buffered event is released.
    _, value = encode_tick(next_tick + 10 * TICK_MS)
    for partition in range(spec.partitions):
        yield tick_key, value, partition


def _event_value(p: _Planned, provider: str, input_id: str) -> bytes:
    occurred_at = format_ms(p.occurred_ms)
    event_type = _provider_event_type(p.event_type)
    reconnect_window_s = None
    if provider == "cloudflare":
        payload = _cloudflare_payload(input_id, event_type, p.occurred_ms)
    elif provider == "fastpix":
        payload = _fastpix_payload(input_id, p.event_type, p.event_id, occurred_at)
        reconnect_window_s = 60
    else:
        payload = _gjirafa_payload(input_id, p.event_type, p.occurred_ms)
    return orjson.dumps(
        {
            "schema": "livewindows/event/v1",
            "event_id": p.event_id,
            "provider": provider,
            "input_id": input_id,
            "kind": p.kind,
            "provider_event_type": event_type,
            "occurred_at": occurred_at,
            "received_at": format_ms(p.received_ms),
            "reconnect_window_s": reconnect_window_s,
            "payload": payload,
        }
    )


def _cloudflare_payload(input_id: str, event_type: str, at_ms: int) -> dict[str, Any]:
    nanos = (at_ms * 104_729) % 1_000_000
    return cloudflare_document(input_id, event_type, at_ms, nanos, "Live input notification")


_FASTPIX_ENV = {"name": "production", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "env"))}
_FASTPIX_WEBHOOK = str(uuid.uuid5(uuid.NAMESPACE_URL, "livewindows-bench-webhook"))


def _fastpix_payload(input_id: str, event_type: str, event_id: str, at: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": "active" if event_type.endswith(("connected", "active")) else "idle",
        "audioOnly": False,
        "streamKey": "[redacted]",
        "maxResolution": "1080p",
        "createdAt": "2025-12-31T23:00:00.000Z",
        "reconnectWindow": 60,
        "maxDuration": 43_200,
        "playback_ids": [{"id": "public", "accessPolicy": "public"}],
    }
    data["id" if event_type.endswith(".disconnected") else "streamId"] = input_id
    return {
        "type": event_type,
        "id": event_id,
        "webhookId": _FASTPIX_WEBHOOK,
        "object": {"name": "live", "id": input_id},
        "environment": _FASTPIX_ENV,
        "data": data,
        "created_at": at,
        "attempts": [],
        "accessor_source": "",
        "accessor": "",
    }


def _gjirafa_payload(input_id: str, event_type: str, at_ms: int) -> dict[str, Any]:
    event_time = f"{format_ms(at_ms)[:-1]}{(at_ms * 7919) % 10_000:04d}Z"
    data: dict[str, Any] = {"Id": input_id}
    if event_type.startswith("status:"):
        status = event_type.partition(":")[2]
        data |= {"StatusId": {"Live": 1, "Interrupted": 3, "Offline": 4}.get(status, 2)}
        data |= {"Status": status, "HealthStatusId": 1, "HealthStatus": "Healthy"}
    elif event_type == "live.video.started":
        data["LiveStartDateUTC"] = event_time
    else:
        data |= {"LiveCutStartDate": format_ms(at_ms - 600_000)[:-1], "LiveCutEndDate": event_time}
    return {
        "eventTime": event_time,
        "eventType": _provider_event_type(event_type),
        "data": data,
        "projectId": "livewindows-bench",
    }


@dataclass(frozen=True, slots=True)
class Filled:
    """A pre-filled events topic."""

    topic: str
    events: int
    ticks: int
    bytes: int
    seconds: float
    ends: dict[int, int]  # partition -> end offset after the fill

    @property
    def records(self) -> int:
        return self.events + self.ticks


def fill(bootstrap: str, topic: str, spec: Spec) -> Filled:
    """Write the dataset to `topic` (which must exist with `spec.partitions` partitions)."""
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            failures.append(error)

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            # Keys land where the producer puts them (producer.publisher: murmur2).
            "partitioner": KEY_PARTITIONER,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    started = time.monotonic()
    events = ticks = size = 0
    produce = producer.produce
    for key, value, partition in records(spec):
        while True:
            try:
                if partition is None:
                    produce(topic, value, key, on_delivery=delivered)
                    events += 1
                else:
                    produce(topic, value, key, partition, on_delivery=delivered)
                    ticks += 1
                break
            except BufferError:
                producer.poll(0.05)
        size += len(key) + len(value)
        if (events + ticks) % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left or failures:
        raise RuntimeError(f"pre-fill failed: {left} undelivered, errors {failures[:3]}")
    seconds = time.monotonic() - started
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-fill"})
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(spec.partitions)
        }
    finally:
        consumer.close()
    return Filled(topic, events, ticks, size, seconds, ends)
