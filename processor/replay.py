"""`livewindows replay`: recompute windows from the events topic with fresh state.

The same pure core as the worker, fed each partition in offset order, including
the ticks the live worker wrote, so a replay from the beginning reproduces the
live windows exactly (same ids, same content). Replay reads the topic with
`assign` (no consumer group, no commits) and stops at the end offsets it saw
when it started, so it always terminates.

Starting anywhere but the beginning starts with *empty* state: a window opened
before the start offset is unknown to the replay, so its close is not emitted,
and the first disconnect seen for an input opens a window even if the live run
had already opened one. Such a replay is for inspection, not for billing.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from livewindows.settings import ConfigError, Settings
from processor.codec import DecodeError, decode, encode_window
from processor.windows import (
    Config,
    DuplicateEvent,
    LateEvent,
    PartitionState,
    WindowRecord,
    process,
)
from schemas.timestamps import InvalidTimestamp, parse_ms

__all__ = ["ReplaySummary", "StartAt", "replay_command", "run_replay"]

_METADATA_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where every partition starts: the beginning, an offset, or a timestamp."""

    offset: int | None = None
    timestamp_ms: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StartAt:
        if args.from_beginning:
            return cls()
        if args.from_offset is not None:
            if args.from_offset < 0:
                raise ConfigError("--from-offset must be >= 0")
            return cls(offset=args.from_offset)
        return cls(timestamp_ms=_parse_timestamp(args.from_timestamp))


@dataclass(slots=True)
class ReplaySummary:
    records: int = 0
    windows: int = 0
    late: int = 0
    duplicates: int = 0
    undecodable: int = 0
    seconds: float = 0.0
    partitions: dict[int, tuple[int, int]] = field(default_factory=dict)  # p -> (start, end)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[ReplaySummary, int], None]


def replay_command(args: argparse.Namespace, settings: Settings) -> int:
    start = StartAt.from_args(args)
    if args.output_topic in (settings.events_topic, settings.late_topic, settings.dlq_topic):
        raise ConfigError(f"--output-topic {args.output_topic!r} is an input or side topic")
    try:
        summary = run_replay(settings, start, args.output_topic, progress=_print_progress)
    except KafkaException as exc:
        print(f"livewindows replay: Kafka error: {exc.args[0]}", file=sys.stderr)
        return 1
    print(
        f"replay: done: {summary.records:,} records in {summary.seconds:.1f}s "
        f"({summary.rate:,.0f}/s); {summary.windows:,} window records written to "
        f"{args.output_topic}; {summary.late:,} late, {summary.duplicates:,} duplicates, "
        f"{summary.undecodable:,} undecodable (skipped)",
        file=sys.stderr,
    )
    return 0


def run_replay(
    settings: Settings,
    start: StartAt,
    output_topic: str,
    *,
    progress: Progress | None = None,
) -> ReplaySummary:
    """Replay the events topic into `output_topic`; returns when every partition is caught up."""
    config = Config(settings.window_grace_ms, settings.reconnect_window_s)
    bootstrap = settings.kafka_bootstrap_servers
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"livewindows-replay-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "fetch.max.bytes": 52_428_800,
            "queued.max.messages.kbytes": 262_144,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
        }
    )
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    summary = ReplaySummary()
    try:
        _ensure_output_topic(bootstrap, output_topic, settings)
        ends = _plan(consumer, settings.events_topic, start, summary)
        states = {p: PartitionState() for p in ends}
        began = time.monotonic()
        last_report = began
        while ends:
            for message in consumer.consume(num_messages=2000, timeout=0.5):
                error = message.error()
                if error is not None:
                    # EOF also ends a partition whose last offsets are control records.
                    if error.code() == KafkaError._PARTITION_EOF:
                        ends.pop(message.partition() or 0, None)
                        continue
                    raise KafkaException(error)
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None, "a fetched record"
                end = ends.get(partition)
                if end is None or offset >= end:
                    continue
                summary.records += 1
                try:
                    record = decode(message.key(), message.value())
                except DecodeError:
                    summary.undecodable += 1
                else:
                    states[partition], outputs = process(states[partition], record, config)
                    for out in outputs:
                        if isinstance(out, WindowRecord):
                            _produce(producer, output_topic, *encode_window(out), delivered)
                            summary.windows += 1
                        elif isinstance(out, LateEvent):
                            summary.late += 1
                        elif isinstance(out, DuplicateEvent):
                            summary.duplicates += 1
                if offset >= end - 1:
                    del ends[partition]
            producer.poll(0)
            now = time.monotonic()
            if progress is not None and now - last_report >= 1.0:
                summary.seconds = now - began
                progress(summary, _remaining(consumer, ends))
                last_report = now
        remaining = producer.flush(30)
        summary.seconds = time.monotonic() - began
        if remaining:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "output not flushed"))
        if failures:
            raise KafkaException(failures[0])
    finally:
        consumer.close()
    return summary


def _plan(consumer: Consumer, topic: str, start: StartAt, summary: ReplaySummary) -> dict[int, int]:
    """Assign each partition at its start offset; returns the end offset of those with work."""
    metadata = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        raise ConfigError(
            f"events topic {topic!r} does not exist (run 'livewindows topics create')"
        )
    partitions = sorted(described.partitions)
    starts: dict[int, int] = {}
    if start.timestamp_ms is not None:
        wanted = [TopicPartition(topic, p, start.timestamp_ms) for p in partitions]
        for tp in consumer.offsets_for_times(wanted, timeout=_METADATA_TIMEOUT_S):
            starts[tp.partition] = tp.offset
    ends: dict[int, int] = {}
    assignment = []
    for p in partitions:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=_METADATA_TIMEOUT_S
        )
        if start.offset is not None:
            begin = min(max(start.offset, low), high)
        elif start.timestamp_ms is not None:
            found = starts.get(p, -1)
            begin = high if found < 0 else found
        else:
            begin = low
        summary.partitions[p] = (begin, high)
        if begin < high:
            ends[p] = high
            assignment.append(TopicPartition(topic, p, begin if begin > 0 else OFFSET_BEGINNING))
    if assignment:
        consumer.assign(assignment)
    return ends


def _ensure_output_topic(bootstrap: str, topic: str, settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=_METADATA_TIMEOUT_S)
    if topic in metadata.topics:
        return
    new = NewTopic(topic, settings.topic_partitions, settings.topic_replication)
    try:
        admin.create_topics([new])[topic].result(_METADATA_TIMEOUT_S)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def _produce(
    producer: Producer,
    topic: str,
    key: bytes,
    value: bytes,
    on_delivery: Callable[[KafkaError | None, Any], None],
) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.1)


def _remaining(consumer: Consumer, ends: dict[int, int]) -> int:
    if not ends:
        return 0
    total = 0
    topic_partitions = consumer.assignment()
    for tp in consumer.position(topic_partitions):
        end = ends.get(tp.partition)
        if end is not None and tp.offset >= 0:
            total += max(0, end - tp.offset)
    return total


def _print_progress(summary: ReplaySummary, remaining: int) -> None:
    print(
        f"replay: {summary.records:,} records ({summary.rate:,.0f}/s), "
        f"{remaining:,} remaining, {summary.windows:,} window records",
        file=sys.stderr,
        flush=True,
    )


def _parse_timestamp(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return parse_ms(text)
    except InvalidTimestamp:
        raise ConfigError(
            f"--from-timestamp {text!r} is neither RFC 3339 nor epoch milliseconds"
        ) from None
