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

The state is per partition, so partitions replay in parallel: `--jobs N` runs N
processes (`processor.replay_jobs`), each with its own group of partitions, the
same loop and its own producer. A key lives in one partition, so each output key
gets the same records in the same order whatever N is.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
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

from plumbing import logs
from plumbing.settings import ConfigError, Settings
from plumbing.topics import KEY_PARTITIONER, TopicsError, reach
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

__all__ = ["ReplayFailed", "ReplaySummary", "StartAt", "replay_command", "run_replay"]

_METADATA_TIMEOUT_S = 10.0
_REACH_TIMEOUT_S = 5.0  # before anything else: an unreachable Kafka in one line
# Records per `consume()` call: larger batches cost fewer calls into the client.
_CONSUME_BATCH = 5000
# No record for this long with records left: Kafka is gone (librdkafka would retry
# for ever); the replay fails instead of hanging.
STALL_S = 60.0


class ReplayFailed(Exception):
    """A replay job failed (its one-line reason); the other jobs have been stopped."""


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
    jobs: int = 1  # processes that replayed (1: this one)
    # From the beginning: partitions whose first records are gone (retention), and
    # the first offset still there. Their windows cannot be reproduced.
    deleted: dict[int, int] = field(default_factory=dict)
    output_records: int = 0  # records the output topic held before this replay

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[ReplaySummary, int], None]


def replay_command(args: argparse.Namespace, settings: Settings) -> int:
    jobs: int | None = args.jobs
    if jobs is not None and jobs < 1:
        raise ConfigError("--jobs must be >= 1")
    start = StartAt.from_args(args)
    if args.output_topic in (settings.events_topic, settings.late_topic, settings.dlq_topic):
        raise ConfigError(f"--output-topic {args.output_topic!r} is an input or side topic")
    configure_logging()
    if args.output_topic == settings.windows_topic:
        # Billing reads it: a replay from an offset or a time starts with empty
        # state and would add windows the live run never had.
        raise ConfigError(
            f"--output-topic {args.output_topic!r} is the live windows topic (WINDOWS_TOPIC); "
            "replay into a topic of its own"
        )
    try:
        reach(settings.kafka_bootstrap_servers, _REACH_TIMEOUT_S)
    except TopicsError as exc:
        print(f"livewindows replay: {exc}", file=sys.stderr)
        return 1
    try:
        summary = run_replay(
            settings,
            start,
            args.output_topic,
            progress=_print_progress,
            jobs=jobs,
            started=_print_start,
        )
    except KafkaException as exc:
        print(f"livewindows replay: Kafka error: {exc.args[0]}", file=sys.stderr)
        return 1
    except ReplayFailed as exc:
        print(f"livewindows replay: {exc}", file=sys.stderr)
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
    jobs: int | None = 1,
    started: Callable[[ReplaySummary], None] | None = None,
) -> ReplaySummary:
    """Replay the events topic into `output_topic`; returns when every partition is caught up.

    `jobs` processes share the partitions that have records to replay (never more
    processes than such partitions); `None` means one per CPU. With one, the replay
    runs in this process. A failed job raises `ReplayFailed` after stopping the others.
    `started` is called once the plan (partitions, jobs) is known.
    """
    config = Config(settings.window_grace_ms, settings.reconnect_window_s)
    bootstrap = settings.kafka_bootstrap_servers
    consumer = Consumer(consumer_config(bootstrap))
    summary = ReplaySummary()
    try:
        partitions = _ensure_output_topic(bootstrap, output_topic, settings)
        summary.output_records = sum(
            high - low
            for low, high in (
                consumer.get_watermark_offsets(
                    TopicPartition(output_topic, p), timeout=_METADATA_TIMEOUT_S
                )
                for p in partitions
            )
        )
        ranges = _plan(consumer, settings.events_topic, start, summary)
        wanted = jobs if jobs is not None else (os.cpu_count() or 1)
        summary.jobs = max(1, min(wanted, len(ranges)))
        if started is not None:
            started(summary)
        if summary.jobs == 1:
            assign_ranges(consumer, settings.events_topic, ranges)
            producer = Producer(producer_config(bootstrap))
            replay_partitions(
                consumer,
                producer,
                output_topic,
                {p: end for p, (_begin, end) in ranges.items()},
                config,
                summary,
                report=None if progress is None else _local_progress(consumer, progress, ranges),
            )
            return summary
    finally:
        consumer.close()
    # Only now, with no Kafka client left in this process, start the job processes.
    from processor.replay_jobs import run_jobs

    return run_jobs(settings, output_topic, ranges, summary, progress)


def consumer_config(bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": f"livewindows-replay-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "fetch.max.bytes": 52_428_800,
        "queued.max.messages.kbytes": 262_144,
        "logger": _LIBRARY_LOG,
    }


def producer_config(bootstrap: str) -> dict[str, Any]:
    """The output producer: every job uses this, so the partitioner is the same."""
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "partitioner": KEY_PARTITIONER,  # a key's records on the partition live ones use
        # Delivery reports only for failures: no Python callback per window record.
        "delivery.report.only.error": True,
        "logger": _LIBRARY_LOG,
    }


# librdkafka's lines (every reconnect attempt while a broker is down) go through
# `logging`, where `configure_logging` holds back repeats.
_LIBRARY_LOG = logging.getLogger("livewindows.replay.librdkafka")


def configure_logging() -> None:
    """Warnings on stderr, a repeated library line once per 10 s (command and jobs)."""
    logs.configure_logging(service="replay")


Report = Callable[[ReplaySummary, Consumer, dict[int, int]], None]


def replay_partitions(
    consumer: Consumer,
    producer: Producer,
    output_topic: str,
    ends: dict[int, int],
    config: Config,
    summary: ReplaySummary,
    *,
    report: Report | None = None,
    report_every_s: float = 1.0,
    stall_s: float = STALL_S,
) -> None:
    """Replay the assigned partitions up to `ends` (emptied on the way) and flush the output.

    Counts and `seconds` go into `summary`, brought up to date before each `report`
    (at most every `report_every_s`) and at the end. Raises `KafkaException` on a
    fetch error or an undelivered window record, `ReplayFailed` when no record came
    for `stall_s` while some were left.
    """
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    # The loop below runs once per record: everything it touches is a local.
    states = {p: PartitionState() for p in ends}
    consume, produce, poll = consumer.consume, producer.produce, producer.poll
    partition_eof = KafkaError._PARTITION_EOF
    window_record, late_event, duplicate_event = WindowRecord, LateEvent, DuplicateEvent
    decode_, process_, encode_window_, decode_error = decode, process, encode_window, DecodeError
    monotonic = time.monotonic
    records = windows = late = duplicates = undecodable = 0
    began = last_report = last_record = monotonic()
    # No cyclic GC during the loop: its collections cost ~15% of the CPU here (the
    # state of 100k inputs is scanned again and again), and the loop makes no
    # cyclic garbage (after a 1M-record replay, gc.collect() found none).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while ends:
            messages = consume(_CONSUME_BATCH, 0.5)
            if messages:
                last_record = monotonic()
            elif monotonic() - last_record >= stall_s:
                raise ReplayFailed(
                    f"no record for {stall_s:.0f} s with {len(ends)} partition(s) not done: "
                    "is Kafka reachable?"
                )
            for message in messages:
                error = message.error()
                if error is not None:
                    # EOF also ends a partition whose last offsets are control records.
                    if error.code() == partition_eof:
                        ends.pop(message.partition() or 0, None)
                        continue
                    raise KafkaException(error)
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None, "a fetched record"
                end = ends.get(partition)
                if end is None or offset >= end:
                    continue
                records += 1
                try:
                    record = decode_(message.key(), message.value())
                except decode_error:
                    undecodable += 1
                else:
                    states[partition], outputs = process_(states[partition], record, config)
                    for out in outputs:
                        if isinstance(out, window_record):
                            key, value = encode_window_(out)
                            try:
                                produce(output_topic, value, key, on_delivery=delivered)
                            except BufferError:
                                _produce(producer, output_topic, key, value, delivered)
                            windows += 1
                        elif isinstance(out, late_event):
                            late += 1
                        elif isinstance(out, duplicate_event):
                            duplicates += 1
                if offset >= end - 1:
                    del ends[partition]
            poll(0)
            if failures:
                raise KafkaException(failures[0])
            if report is not None:
                now = monotonic()
                if now - last_report >= report_every_s:
                    summary.records, summary.windows, summary.late = records, windows, late
                    summary.duplicates, summary.undecodable = duplicates, undecodable
                    summary.seconds = now - began
                    report(summary, consumer, ends)
                    last_report = now
    finally:
        if gc_was_enabled:
            gc.enable()
    summary.records, summary.windows, summary.late = records, windows, late
    summary.duplicates, summary.undecodable = duplicates, undecodable
    remaining = producer.flush(30)
    summary.seconds = monotonic() - began
    if remaining:
        raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "output not flushed"))
    if failures:
        raise KafkaException(failures[0])


def _local_progress(
    consumer: Consumer, progress: Progress, ranges: dict[int, tuple[int, int]]
) -> Report:
    def report(summary: ReplaySummary, _consumer: Consumer, ends: dict[int, int]) -> None:
        progress(summary, records_left(consumer, ends, ranges))

    return report


def _plan(
    consumer: Consumer, topic: str, start: StartAt, summary: ReplaySummary
) -> dict[int, tuple[int, int]]:
    """Each partition's (start, end) offsets; returns those of the partitions with work."""
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
    ranges: dict[int, tuple[int, int]] = {}
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
            if low > 0:
                summary.deleted[p] = low
        summary.partitions[p] = (begin, high)
        if begin < high:
            ranges[p] = (begin, high)
    return ranges


def assign_ranges(consumer: Consumer, topic: str, ranges: dict[int, tuple[int, int]]) -> None:
    """Assign each partition of `ranges` at its start offset."""
    assignment = [
        TopicPartition(topic, p, begin if begin > 0 else OFFSET_BEGINNING)
        for p, (begin, _end) in sorted(ranges.items())
    ]
    if assignment:
        consumer.assign(assignment)


def _ensure_output_topic(bootstrap: str, topic: str, settings: Settings) -> list[int]:
    """Create the output topic if it is missing; the partitions it already had."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=_METADATA_TIMEOUT_S)
    if topic in metadata.topics:
        return sorted(metadata.topics[topic].partitions)
    new = NewTopic(topic, settings.topic_partitions, settings.topic_replication)
    try:
        admin.create_topics([new])[topic].result(_METADATA_TIMEOUT_S)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    return []


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


def records_left(
    consumer: Consumer, ends: dict[int, int], ranges: dict[int, tuple[int, int]]
) -> int:
    """Records still to replay: from each partition's position (its start offset in
    `ranges` until the first fetch) to its end in `ends` (partitions not done yet)."""
    if not ends:
        return 0
    total = 0
    for tp in consumer.position(consumer.assignment()):
        end = ends.get(tp.partition)
        if end is not None:
            at = tp.offset if tp.offset >= 0 else ranges[tp.partition][0]
            total += max(0, end - at)
    return total


def _print_start(summary: ReplaySummary) -> None:
    for partition, low in sorted(summary.deleted.items()):
        print(
            f"replay: WARNING: partition {partition} begins at offset {low}: offsets 0-{low - 1} "
            "were deleted (retention), so windows they opened or changed are missing or "
            "different; this replay does not reproduce the live windows",
            file=sys.stderr,
            flush=True,
        )
    if summary.output_records:
        print(
            f"replay: WARNING: the output topic already holds {summary.output_records:,} "
            "records; this replay's are appended after them",
            file=sys.stderr,
            flush=True,
        )
    if summary.jobs > 1:
        print(
            f"replay: {summary.jobs} jobs over {len(summary.partitions)} partitions",
            file=sys.stderr,
            flush=True,
        )


def _print_progress(summary: ReplaySummary, remaining: int) -> None:
    print(
        f"replay: {summary.records:,} records ({summary.rate:,.0f}/s), "
        f"{remaining:,} remaining, {summary.windows:,} window records",
        file=sys.stderr,
        flush=True,
    )


def _parse_timestamp(text: str) -> int:
    if text.isascii() and text.isdigit():
        if int(text) >= 2**63:  # Kafka's timestamps are int64
            raise ConfigError(f"--from-timestamp {text!r} is past any Kafka timestamp")
        return int(text)
    try:
        return parse_ms(text)
    except InvalidTimestamp:
        raise ConfigError(
            f"--from-timestamp {text!r} is neither RFC 3339 nor epoch milliseconds"
        ) from None
