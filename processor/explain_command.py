"""`livewindows explain <provider>:<input_id>`: the Kafka shell around `processor.explain`.

The key's partition is computed as every writer partitions (`plumbing.partitioner`,
librdkafka's `murmur2_random`), then read as replay reads: replay's consumer
(`assign`, no group commits, read_committed), from the start offset to the end
offsets it saw when it started, so it always terminates.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from plumbing import logs
from plumbing.partitioner import key_partition
from plumbing.settings import ConfigError, Settings
from plumbing.topics import TopicsError, reach
from processor.explain import Explainer, Timeline, parse_key
from processor.explain_format import render_json, render_text
from processor.replay import parse_timestamp
from processor.replay_loop import STALL_S, assign_ranges, consumer_config
from processor.restore import watermark_offsets
from processor.runner import Fetched
from processor.windows import Config
from schemas.timestamps import format_ms

__all__ = ["ExplainFailed", "explain_command", "read_timeline"]

_NAME = "livewindows explain"
_CONSUME_BATCH = 5000
_METADATA_TIMEOUT_S = 10.0
_REACH_TIMEOUT_S = 5.0
_PROGRESS_EVERY_S = 2.0

Progress = Callable[[int, int], None]  # records read, records in the range


class ExplainFailed(Exception):
    """The timeline could not be read: a one-line reason for the operator."""


@dataclass(frozen=True, slots=True)
class Range:
    partition: int
    begin: int
    end: int
    low: int  # the partition's first offset still in Kafka


def explain_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        parse_key(args.input)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    from_ms = None if args.from_timestamp is None else parse_timestamp(args.from_timestamp)
    logs.configure_logging(service="explain")
    try:
        reach(settings.kafka_bootstrap_servers, _REACH_TIMEOUT_S)
        timeline = read_timeline(settings, args.input, from_ms, progress=_print_progress)
    except KafkaException as exc:
        return _fail(f"Kafka error: {exc.args[0]}")
    except (TopicsError, ExplainFailed) as exc:
        return _fail(str(exc))
    if not timeline.events:
        since = "" if from_ms is None else f" at or after {format_ms(from_ms)}"
        return _fail(
            f"no events of {args.input}{since} in partition {timeline.partition} of "
            f"{settings.events_topic} (offsets {timeline.start_offset}-{timeline.end_offset - 1})"
            if timeline.end_offset > timeline.start_offset
            else f"no events of {args.input}{since}: partition {timeline.partition} of "
            f"{settings.events_topic} has no records there"
        )
    if args.format == "json":
        print(render_json(timeline))
    else:
        print(render_text(timeline, settings.events_topic))
    return 0


def read_timeline(
    settings: Settings, key: str, from_ms: int | None, *, progress: Progress | None = None
) -> Timeline:
    """The timeline of `key` from the beginning (or from `from_ms`) to the end offsets now."""
    topic = settings.events_topic
    config = Config(settings.window_grace_ms, settings.reconnect_window_s)
    consumer = Consumer(consumer_config(settings.kafka_bootstrap_servers))  # read_committed
    try:
        where = _plan(consumer, topic, key, from_ms)
        if from_ms is not None:
            unknown: str | None = f"read from {format_ms(from_ms)} (offset {where.begin})"
        elif where.low > 0:
            unknown = f"offsets 0-{where.low - 1} were deleted (retention)"
        else:
            unknown = None
        explainer = Explainer(
            key, where.partition, topic, config, where.begin, state_unknown=unknown
        )
        if where.begin < where.end:
            _read(consumer, topic, where, explainer, progress)
        return explainer.finish()
    finally:
        consumer.close()


def _plan(consumer: Consumer, topic: str, key: str, from_ms: int | None) -> Range:
    metadata = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        raise ExplainFailed(
            f"events topic {topic!r} does not exist (run 'livewindows topics create')"
        )
    partition = key_partition(key.encode(), len(described.partitions))
    low, high = watermark_offsets(consumer, TopicPartition(topic, partition))
    begin = low
    if from_ms is not None:
        [found] = consumer.offsets_for_times(
            [TopicPartition(topic, partition, from_ms)], timeout=_METADATA_TIMEOUT_S
        )
        begin = high if found.offset < 0 else max(found.offset, low)
    return Range(partition, begin, high, low)


def _read(
    consumer: Consumer, topic: str, where: Range, explainer: Explainer, progress: Progress | None
) -> None:
    """Feed [begin, end) of the partition to `explainer`; fails after STALL_S without a record."""
    assign_ranges(consumer, topic, {where.partition: (where.begin, where.end)})
    total, read = where.end - where.begin, 0
    last_record = last_report = time.monotonic()
    done = False
    while not done:
        messages = consumer.consume(_CONSUME_BATCH, 0.5)
        now = time.monotonic()
        if messages:
            last_record = now
        elif now - last_record >= STALL_S:
            raise ExplainFailed(f"no record for {STALL_S:.0f} s: is Kafka reachable?")
        fetched: list[Fetched] = []
        for message in messages:
            error = message.error()
            if error is not None:
                # EOF also ends a partition whose last offsets are control records.
                if error.code() == KafkaError._PARTITION_EOF:
                    done = True
                    continue
                raise KafkaException(error)
            offset = message.offset()
            assert offset is not None, "a fetched record"
            if offset >= where.end:
                done = True
                continue
            fetched.append(Fetched(offset, message.key(), message.value(), 0))
            done = done or offset >= where.end - 1
        explainer.feed(fetched)
        read += len(fetched)
        if progress is not None and now - last_report >= _PROGRESS_EVERY_S:
            progress(read, total)
            last_report = now


def _print_progress(read: int, total: int) -> None:
    print(f"explain: {read:,} of {total:,} records read", file=sys.stderr, flush=True)


def _fail(message: str) -> int:
    print(f"{_NAME}: {message}", file=sys.stderr)
    return 1
