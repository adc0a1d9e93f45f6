"""`livewindows replay`: recompute windows from the events topic with fresh state.

The runner the workers drive (`processor.runner`), fed each partition in offset order, including
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
same loop (`processor.replay_loop`) and its own producer. A key lives in one
partition, so each output key gets the same records in the same order whatever N is.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from plumbing.clients import admin_config
from plumbing.settings import ConfigError, Settings
from plumbing.topics import TopicsError, ensure_topics, reach
from processor.replay_jobs import run_jobs
from processor.replay_loop import (
    Progress,
    ReplayFailed,
    ReplaySummary,
    Report,
    assign_ranges,
    configure_logging,
    consumer_config,
    producer_config,
    records_left,
    replay_partitions,
)
from processor.restore import watermark_offsets
from processor.windows import Config
from schemas.timestamps import InvalidTimestamp, parse_ms

__all__ = [
    "ReplayFailed",
    "ReplaySummary",
    "StartAt",
    "parse_timestamp",
    "replay_command",
    "run_replay",
]

_METADATA_TIMEOUT_S = 10.0
_REACH_TIMEOUT_S = 5.0  # before anything else: an unreachable Kafka in one line


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
        return cls(timestamp_ms=parse_timestamp(args.from_timestamp))


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
    except (ReplayFailed, TopicsError) as exc:
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
                watermark_offsets(consumer, TopicPartition(output_topic, p)) for p in partitions
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
    return run_jobs(settings, output_topic, ranges, summary, progress)


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
        low, high = watermark_offsets(consumer, TopicPartition(topic, p))
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


def _ensure_output_topic(bootstrap: str, topic: str, settings: Settings) -> list[int]:
    """Create the output topic if it is missing; the partitions it already had."""
    admin = AdminClient(admin_config(bootstrap))
    metadata = admin.list_topics(timeout=_METADATA_TIMEOUT_S)
    if topic in metadata.topics:
        return sorted(metadata.topics[topic].partitions)
    ensure_topics(bootstrap, [topic], settings.topic_partitions, settings.topic_replication)
    return []


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


def parse_timestamp(text: str) -> int:
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
