"""The replay loop: assigned partitions of the events topic through the runner, to their ends.

`processor.replay` plans a replay and runs this loop in its own process or, with
`--jobs N`, in N job processes (`processor.replay_jobs`); both import it from
here. Each partition gets a fresh `processor.runner.PartitionRunner` that stores
nothing, the runner the workers drive, so a replay computes what they compute.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from plumbing import logs
from plumbing.clients import FETCH_MAX_BYTES, reader_config, writer_config
from processor.counts import Counts
from processor.runner import Fetched, PartitionRunner, Written
from processor.windows import Config

__all__ = [
    "STALL_S",
    "Progress",
    "ReplayFailed",
    "ReplaySummary",
    "Report",
    "assign_ranges",
    "configure_logging",
    "consumer_config",
    "producer_config",
    "records_left",
    "replay_partitions",
]

# Records per `consume()` call: larger batches cost fewer calls into the client.
_CONSUME_BATCH = 5000
# No record for this long with records left: Kafka is gone (librdkafka would retry
# for ever); the replay fails instead of hanging.
STALL_S = 60.0


class ReplayFailed(Exception):
    """A replay job failed (its one-line reason); the other jobs have been stopped."""


@dataclass(slots=True)
class ReplaySummary:
    counts: Counts = field(default_factory=Counts)  # the core's, as a worker counts
    seconds: float = 0.0
    partitions: dict[int, tuple[int, int]] = field(default_factory=dict)  # p -> (start, end)
    jobs: int = 1  # processes that replayed (1: this one)
    # From the beginning: partitions whose first records are gone (retention), and
    # the first offset still there. Their windows cannot be reproduced.
    deleted: dict[int, int] = field(default_factory=dict)
    output_records: int = 0  # records the output topic held before this replay

    @property
    def records(self) -> int:
        return self.counts.records

    @property
    def windows(self) -> int:
        return self.counts.opened + self.counts.closed

    @property
    def late(self) -> int:
        return self.counts.late

    @property
    def duplicates(self) -> int:
        return self.counts.duplicates

    @property
    def undecodable(self) -> int:
        return self.counts.dead_letters

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[ReplaySummary, int], None]


def consumer_config(bootstrap: str) -> dict[str, Any]:
    return {
        **reader_config(bootstrap, f"livewindows-replay-{uuid.uuid4().hex}", _LIBRARY_LOG),
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "fetch.max.bytes": FETCH_MAX_BYTES,
        "queued.max.messages.kbytes": 262_144,
    }


def producer_config(bootstrap: str) -> dict[str, Any]:
    """The output producer: every job uses this, so the partitioner is the same."""
    return {
        **writer_config(bootstrap, _LIBRARY_LOG),
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        # Delivery reports only for failures: no Python callback per window record.
        "delivery.report.only.error": True,
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

    runners: dict[int, PartitionRunner] = {}
    consume, produce, poll = consumer.consume, producer.produce, producer.poll
    partition_eof = KafkaError._PARTITION_EOF
    monotonic = time.monotonic
    counts = summary.counts
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
            fetched: defaultdict[int, list[Fetched]] = defaultdict(list)
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
                if partition not in runners:
                    runners[partition] = PartitionRunner.fresh(
                        partition, message.topic() or "", config, 0
                    )
                # The headers go through: the runner carries an event's trace context
                # (`traceparent`) onto the windows it causes, in a replay too.
                headers = cast("list[tuple[str, bytes]] | None", message.headers())
                fetched[partition].append(
                    Fetched(offset, message.key(), message.value(), 0, headers)
                )
                if offset >= end - 1:
                    del ends[partition]
            for partition, records in fetched.items():
                batch = runners[partition].run(records)
                if batch is None:
                    continue
                counts.add(batch.counts)
                for written in batch.outputs:
                    if written.destination == "windows":
                        try:
                            produce(
                                output_topic,
                                written.value,
                                written.key,
                                on_delivery=delivered,
                                headers=cast(Any, written.headers),  # a list is invariant
                            )
                        except BufferError:
                            _produce(producer, output_topic, written, delivered)
            poll(0)
            if failures:
                raise KafkaException(failures[0])
            if report is not None:
                now = monotonic()
                if now - last_report >= report_every_s:
                    summary.seconds = now - began
                    report(summary, consumer, ends)
                    last_report = now
    finally:
        if gc_was_enabled:
            gc.enable()
    remaining = producer.flush(30)
    summary.seconds = monotonic() - began
    if remaining:
        raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "output not flushed"))
    if failures:
        raise KafkaException(failures[0])


def assign_ranges(consumer: Consumer, topic: str, ranges: dict[int, tuple[int, int]]) -> None:
    """Assign each partition of `ranges` at its start offset."""
    assignment = [
        TopicPartition(topic, p, begin if begin > 0 else OFFSET_BEGINNING)
        for p, (begin, _end) in sorted(ranges.items())
    ]
    if assignment:
        consumer.assign(assignment)


def _produce(
    producer: Producer,
    topic: str,
    written: Written,
    on_delivery: Callable[[KafkaError | None, Any], None],
) -> None:
    while True:
        try:
            producer.produce(
                topic,
                value=written.value,
                key=written.key,
                on_delivery=on_delivery,
                headers=cast(Any, written.headers),
            )
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
