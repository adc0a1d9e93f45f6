"""`livewindows worker --engine kafka`: the runtime on a plain confluent-kafka consumer loop.

This module only moves bytes: `consume` up to `BATCH_RECORDS` records, hand them
to `processor.runtime.Runtime`, seek where it says after an abort, and write
ticks. Restore, batches, transactions and why they are exactly-once are the
runtime's (`processor.runtime`); here the writer is `transactions.GroupWriter`:
one producer, the consumer group's offsets in every transaction (KIP-447).

State lives in memory and is rebuilt from the changelog on every assignment, so
the data dir only holds a lock and the worker's stable `transactional.id`: a
restart with the same data dir fences its predecessor at once instead of
waiting out its transaction timeout.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from collections import defaultdict
from types import FrameType
from typing import TYPE_CHECKING, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from plumbing.clients import FETCH_MAX_BYTES, admin_config, reader_config
from plumbing.metrics import known_end_offsets
from plumbing.settings import Settings
from processor.counts import Counts, CountsLog
from processor.gauges import PartitionGauges, partition_gauges
from processor.group import FAUST_ASSIGNOR, GroupHeldByOtherEngine, held_by, patience_s
from processor.restore import ChangelogConsumer, EventsWatermarks
from processor.runner import Fetched
from processor.runtime import Runtime
from processor.ticks import Ticker
from processor.tracing import BatchTracer
from processor.transactions import (
    LIBRARY_LOG,
    GroupWriter,
    StopUncommitted,
    Transactions,
    destinations,
    producer_config,
)
from processor.windows import Config

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["BATCH_RECORDS", "KafkaWorker"]

log = logging.getLogger("livewindows.worker")

# A batch is what one consume() returns: up to this many records, or what came
# within POLL_TIMEOUT_S. One transaction commit (a few ms) per batch.
BATCH_RECORDS = 5000
POLL_TIMEOUT_S = 0.05


class KafkaWorker:
    """The consume → runtime loop, and the assignment callbacks."""

    def __init__(
        self, settings: Settings, txn_id: str, *, tracer_provider: TracerProvider | None = None
    ) -> None:
        self._settings = settings
        self._events = settings.events_topic
        self._stopping = False
        self._failed: Exception | None = None  # raised in a rebalance callback
        self._refused_since: float | None = None  # the group refused our join since then
        self._group_patience_s = patience_s(settings.processor_session_timeout_ms)
        bootstrap = settings.kafka_bootstrap_servers
        library = LIBRARY_LOG
        session_ms = settings.processor_session_timeout_ms
        self._consumer = Consumer(
            {
                **reader_config(bootstrap, settings.processor_app_id, library),
                "enable.auto.offset.store": False,
                "session.timeout.ms": session_ms,
                "heartbeat.interval.ms": max(100, session_ms // 5),
                "fetch.max.bytes": FETCH_MAX_BYTES,
            }
        )
        self._txn_config = producer_config(bootstrap, txn_id)
        self._topics = destinations(settings)
        self._changelog = ChangelogConsumer(bootstrap, self._topics["changelog"], library)
        self._ticker = Ticker(bootstrap, self._events, library)
        self._runtime: Runtime | None = None
        self._tracer = (
            None if tracer_provider is None else BatchTracer(tracer_provider, self._events)
        )
        # The counts with no batch in progress, for the metrics: a counter never goes back.
        self.stored_counts = Counts()
        self._ends: dict[int, int] = {}  # owned partition -> its end offset, for the metrics

    # ---- lifecycle ---------------------------------------------------------------

    def run(self) -> bool:
        """Until SIGTERM/SIGINT; then the batch in progress is committed and the group left.

        Returns False if Kafka could not take that last commit: the batch is left
        uncommitted (it runs again on restart) and the Kafka clients may be stuck, so
        the caller should end the process without waiting for them.
        """
        settings = self._settings
        transactions = Transactions(self._txn_config, self._topics, lambda: self._stopping)
        writer = GroupWriter(transactions, self._events, self._consumer.consumer_group_metadata)
        self._runtime = Runtime(
            Config(settings.window_grace_ms, settings.reconnect_window_s),
            self._events,
            self._changelog,
            EventsWatermarks(
                self._consumer, self._events, settings.kafka_bootstrap_servers, LIBRARY_LOG
            ),
            writer,
            self._tracer,
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        self._consumer.subscribe(
            [self._events],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            self._loop(self._runtime)
        except StopUncommitted as exc:
            log.warning(
                "stopped with the batch in progress not committed (%s); it runs again on restart",
                exc,
            )
            return False
        self._consumer.close()
        self._ticker.close()
        self._changelog.close()
        return True

    def _loop(self, runtime: Runtime) -> None:
        tick_every = self._settings.tick_interval_ms / 1000
        next_tick = time.monotonic()
        counts_log = CountsLog()
        try:
            while not self._stopping:
                messages = self._consumer.consume(BATCH_RECORDS, POLL_TIMEOUT_S)
                if self._failed is not None:
                    raise self._failed
                if messages:
                    self._handle(runtime, messages)
                now = time.monotonic()
                if now >= next_tick:
                    owned = runtime.owned()
                    self._ticker.tick(owned)
                    self._note_ends(owned)
                    next_tick = now + tick_every
                counts_log.maybe(runtime.counts)
        finally:
            counts_log.now(runtime.counts)

    def gauges(self, now_ms: int) -> list[PartitionGauges]:
        """The owned partitions' gauges (`processor.gauges`), for the metrics thread."""
        runtime = self._runtime
        return [] if runtime is None else partition_gauges(runtime.parts, self._end_offset, now_ms)

    def _end_offset(self, partition: int) -> int | None:
        return self._ends.get(partition)

    def _note_ends(self, partitions: list[int]) -> None:
        """The owned partitions' end offsets, for the metrics thread: read here, in
        the loop's thread, once per tick (`known_end_offsets` says why). The events
        topic has no transactions, so the high watermark is where the next record goes."""
        self._ends = known_end_offsets(self._consumer, self._events, partitions)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping after the batch in progress", signal.Signals(signum).name)
        self._stopping = True

    def _handle(self, runtime: Runtime, messages: list[Message]) -> None:
        fetched: defaultdict[int, list[Fetched]] = defaultdict(list)
        for message in messages:
            error = message.error()
            if error is not None:
                self._consumer_error(error)
                continue
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None
            _kind, timestamp_ms = message.timestamp()
            fetched[partition].append(
                Fetched(
                    offset,
                    message.key(),
                    message.value(),
                    max(timestamp_ms, 0),
                    cast("list[tuple[str, bytes]] | None", message.headers()),
                )
            )
        rewind = runtime.handle(fetched)
        if rewind is not None:
            for partition, offset in rewind.offsets.items():
                self._consumer.seek(TopicPartition(self._events, partition, offset))
            self._snapshot_counts()  # the abort shows at once, not after the next success
            resume_at = time.monotonic() + rewind.pause_s
            while not self._stopping and time.monotonic() < resume_at:
                time.sleep(min(0.2, max(0.0, resume_at - time.monotonic())))
            return
        self._snapshot_counts()

    def _snapshot_counts(self) -> None:
        assert self._runtime is not None
        self.stored_counts = dataclasses.replace(self._runtime.counts)

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        if error.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL:
            # Faust workers joined the group (the check before start raced them):
            # librdkafka would retry the join forever.
            now = time.monotonic()
            if self._refused_since is None:
                self._refused_since = now
            elif now - self._refused_since >= self._group_patience_s:
                group_id = self._settings.processor_app_id
                admin = AdminClient(admin_config(self._settings.kafka_bootstrap_servers))
                assignor = held_by(admin, group_id) or FAUST_ASSIGNOR
                raise GroupHeldByOtherEngine(group_id, "kafka", assignor)
        log.warning("consumer: %s", error.str())

    # ---- assignment ---------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Restore the assigned partitions, then start each at its stored position.

        An error is kept for the loop to raise: raised from a librdkafka callback it
        would come out of `consume()` with a mangled type. Without the assign below,
        the client assigns at the committed offsets, and the loop skips the records
        of partitions that have no state.
        """
        self._refused_since = None
        assert self._runtime is not None
        try:
            offsets = self._runtime.assign([tp.partition for tp in partitions])
            for tp in partitions:
                tp.offset = offsets[tp.partition]
            consumer.assign(partitions)
            self._snapshot_counts()  # batches redone at restore
        except Exception as exc:
            self._failed = exc

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._runtime is not None
        self._runtime.revoke(tp.partition for tp in partitions)
        consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning(
            "partitions %s lost (session timed out)", sorted(tp.partition for tp in partitions)
        )
        self._on_revoke(consumer, partitions)
