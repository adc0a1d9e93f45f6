"""`livewindows worker --engine kafka`: the processor on a plain confluent-kafka loop.

The same core, topics and changelog (`processor.changelog`) as the Faust engine
(`processor.app`), for one reason: speed. A bare faust-streaming 0.15.3 agent
tops out at ~7k records/s here, whatever it does per record; this loop's
ceiling is the core's own (see BENCHMARKS.md).

Each batch of records is one Kafka transaction (exactly-once, KIP-447):
1. `consume` up to `BATCH_RECORDS` records of the partitions this worker owns;
2. run each partition's records through the core in offset order, in memory
   (an undecodable record goes to the DLQ), producing every window, late and
   DLQ record inside the transaction;
3. write, in the same transaction, to changelog partition p: every input of p
   the batch changed (its last value) and p's position `{next_offset, watermark}`;
4. add the consumer's next offsets to the transaction and commit it.

Outputs, state and offsets are therefore committed together or not at all:
read_committed consumers (librdkafka's default; billing's) see each window
record exactly once, and a crash anywhere leaves the changelog at the state of
the last committed batch, whose position says where to resume. An aborted
batch (a rebalance fenced it, or the broker failed it) is forgotten: the owned
partitions are restored from the changelog and sought back to their positions,
so the batch runs again from the same state and produces the same records
(read_uncommitted consumers see the aborted copies, byte-identical).

State lives in memory and is rebuilt from the changelog partition on every
assignment, so the data dir only holds a lock and the worker's stable
`transactional.id`: a restart with the same data dir fences its predecessor at
once instead of waiting out its transaction timeout. A WAL left by the Faust
engine's crash is redone (`changelog.fold`), so a deployment can move from the
Faust engine to this one with the same app id. Going back is not supported:
Faust's recovery reads the changelog read_uncommitted and would apply aborted writes.

Known gap: a previous owner's last transaction can be decided (committed) and yet
not visible to read_committed reads for a moment when its partitions move; a
restore in that moment runs the batch again from older state, and the changelog
then holds both. Waiting for stable committed offsets (`Consumer.committed` with
KIP-447's require_stable) closes it, but made the abort test's librdkafka
sequence error (OUT_OF_ORDER_SEQUENCE_NUMBER, then an abort that cannot flush)
appear in 1-3 runs of 8 instead of none, so it is not done yet. `fold` names
inputs stored past the position and the restore logs them as an error.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from plumbing.settings import ConfigError, Settings
from plumbing.topics import KEY_PARTITIONER, ensure_topics
from processor.changelog import (
    CHANGELOG_CONFIG,
    Position,
    StoredPartition,
    changelog_topic,
    encode_input,
    fold,
    input_key,
    position_key,
)
from processor.codec import dead_letter_headers, decode, encode_output, encode_tick
from processor.counts import Counts
from processor.group import FAUST_ASSIGNOR, GroupHeldByOtherEngine, held_by, patience_s
from processor.windows import Config, InputState, Output, PartitionState, process
from schemas.timestamps import format_ms

__all__ = ["BATCH_RECORDS", "KafkaWorker"]

log = logging.getLogger("livewindows.worker")

# A batch is what one consume() returns: up to this many records, or what came
# within POLL_TIMEOUT_S. One transaction commit (a few ms) per batch.
BATCH_RECORDS = 5000
POLL_TIMEOUT_S = 0.05
_TIMEOUT_S = 30.0  # transaction calls and metadata requests
_WAIT_S = 1.0  # one wait of a transaction call that is made again until it succeeds
_STATS_INTERVAL_S = 30.0
# Pause before running an aborted batch again: doubles per abort in a row, so a
# lasting refusal (a topic's config, an ACL) is retried without flooding the log.
_ABORT_PAUSE_FIRST_S = 0.5
_ABORT_PAUSE_MAX_S = 30.0
_RESTORE_PROGRESS_S = 5.0
_NO_LEADER_YET = (
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
)


class _StopUncommitted(Exception):
    """Asked to stop while Kafka could not take the batch in progress: leave it uncommitted."""


class _TrackedInputs(dict[str, InputState]):
    """A partition's inputs; remembers which keys the core wrote since the last batch."""

    __slots__ = ("changed",)

    def __init__(self, inputs: dict[str, InputState]) -> None:
        super().__init__(inputs)
        self.changed: set[str] = set()

    def __setitem__(self, key: str, value: InputState) -> None:
        self.changed.add(key)
        super().__setitem__(key, value)


@dataclass(slots=True)
class _Partition:
    state: PartitionState
    inputs: _TrackedInputs
    next_offset: int


class KafkaWorker:
    """The consume → core → transaction loop, and the restore on each assignment."""

    def __init__(self, settings: Settings, partitions: int, txn_id: str) -> None:
        self._settings = settings
        self._config = Config(settings.window_grace_ms, settings.reconnect_window_s)
        self._events = settings.events_topic
        self._changelog = changelog_topic(settings.processor_app_id)
        self._topics = {"windows": settings.windows_topic, "late": settings.late_topic}
        self._partition_count = partitions
        self._parts: dict[int, _Partition] = {}
        self._stopping = False
        self.counts = Counts()
        # The counts with no batch in progress, for the metrics: that batch may
        # still be aborted, and a counter must never go back.
        self.stored_counts = Counts()
        bootstrap = settings.kafka_bootstrap_servers
        quiet = {"logger": _library_logger()}
        session_ms = settings.processor_session_timeout_ms
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": settings.processor_app_id,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": session_ms,
                "heartbeat.interval.ms": max(100, session_ms // 5),
                "fetch.max.bytes": 52_428_800,
                **quiet,
            }
        )
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "transactional.id": txn_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "batch.size": 1_000_000,
                "transaction.timeout.ms": 60_000,
                "partitioner": KEY_PARTITIONER,  # window records land where Faust's would
                **quiet,
            }
        )
        # Ticks are input, not output: written outside the transactions, like webhooks.
        self._ticker = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", **quiet}
        )
        self._restorer: Consumer | None = None
        self._failed: Exception | None = None  # raised in a rebalance callback
        self._aborts_in_a_row = 0
        self._refused_since: float | None = None  # the group refused our join since then
        self._group_patience_s = patience_s(session_ms)

    # ---- lifecycle ---------------------------------------------------------------

    def run(self) -> bool:
        """Until SIGTERM/SIGINT; then the batch in progress is committed and the group left.

        Returns False if Kafka could not take that last commit: the batch is left
        uncommitted (it runs again on restart) and the Kafka clients may be stuck, so
        the caller should end the process without waiting for them.
        """
        self._ensure_changelog()
        self._producer.init_transactions(_TIMEOUT_S)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        self._consumer.subscribe(
            [self._events],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            self._loop()
        except _StopUncommitted as exc:
            log.warning(
                "stopped with the batch in progress not committed (%s); it runs again on restart",
                exc,
            )
            return False
        self._consumer.close()
        self._ticker.flush(5)
        if self._restorer is not None:
            self._restorer.close()
        return True

    def _loop(self) -> None:
        tick_every = self._settings.tick_interval_ms / 1000
        next_tick = next_stats = time.monotonic()
        last_summary = ""
        try:
            while not self._stopping:
                messages = self._consumer.consume(BATCH_RECORDS, POLL_TIMEOUT_S)
                if self._failed is not None:
                    raise self._failed
                if messages:
                    self._handle(messages)
                now = time.monotonic()
                if now >= next_tick:
                    self._tick()
                    next_tick = now + tick_every
                self._ticker.poll(0)
                if now >= next_stats:
                    last_summary = self._log_counts(last_summary)
                    next_stats = now + _STATS_INTERVAL_S
        finally:
            self._log_counts(last_summary)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping after the batch in progress", signal.Signals(signum).name)
        self._stopping = True

    def _log_counts(self, last: str) -> str:
        summary = self.counts.summary()
        if summary != last:
            log.info("%s", summary)
        return summary

    # ---- the batch: core, outputs, state and offsets in one transaction ---------

    def _handle(self, messages: list[Message]) -> None:
        first: dict[int, int] = {}  # partition -> first offset of the batch
        counted = dataclasses.replace(self.counts)  # an aborted batch counts nothing
        try:
            for message in messages:
                error = message.error()
                if error is not None:
                    self._consumer_error(error)
                    continue
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None
                part = self._parts.get(partition)
                if part is None or offset < part.next_offset:
                    continue  # not ours any more, or done already
                if not first:
                    self._producer.begin_transaction()
                if partition not in first:
                    first[partition] = offset
                self._run(part, message, offset)
            if not first:
                return
            self._store(first)
            self._commit(first)
        except KafkaException as exc:
            self.counts = counted
            self._abandon(exc)
            return
        self.counts.batches += 1
        self._snapshot_counts()
        self._aborts_in_a_row = 0

    def _run(self, part: _Partition, message: Message, offset: int) -> None:
        self.counts.records += 1
        try:
            record = decode(message.key(), message.value())
        except Exception as exc:  # any decoding failure is the record's fault, not ours
            self._dead_letter(message, exc)
        else:
            part.state, outputs = process(part.state, record, self._config)
            if outputs:
                self._emit(outputs, _timestamp(message))
        part.next_offset = offset + 1

    def _emit(self, outputs: Iterable[Output], timestamp: int) -> None:
        """Every output into the transaction, stamped with the source record's time, so
        a batch run again after an abort sends byte-identical records."""
        counts, topics = self.counts, self._topics
        for out in outputs:
            counts.tally(out)
            encoded = encode_output(out)
            if encoded is not None:  # None: a duplicate, counted and dropped
                destination, key, value = encoded
                self._produce(topics[destination], key, value, timestamp=timestamp)

    def _store(self, first: dict[int, int]) -> None:
        """Each batch partition's changed inputs, then its position, to its changelog partition."""
        for partition in first:
            part = self._parts[partition]
            last = part.next_offset - 1
            inputs = part.inputs
            for key in inputs.changed:
                value = encode_input(inputs[key], last)
                self._produce(
                    self._changelog, input_key(partition, key), value, partition=partition
                )
            inputs.changed.clear()
            position = Position(part.next_offset, part.state.watermark_ms)
            self._produce(
                self._changelog, position_key(partition), position.encode(), partition=partition
            )

    def _commit(self, first: dict[int, int]) -> None:
        offsets = [TopicPartition(self._events, p, self._parts[p].next_offset) for p in first]
        producer, group = self._producer, self._consumer.consumer_group_metadata()
        self._retrying(lambda t: producer.send_offsets_to_transaction(offsets, group, t))
        self._retrying(producer.commit_transaction)

    def _retrying(self, call: Callable[[float], object]) -> None:
        """`call(timeout)` until it succeeds; a retriable failure (a broker outage) is retried.

        Each call waits at most `_WAIT_S`, then is made again (librdkafka resumes a
        timed-out transaction call): a commit waits for every record of the batch,
        and once one is refused the transaction can only be aborted, which a
        waiting commit reported only at the end of its timeout (30 s, measured by
        the abort test); a new call reports it at once.
        """
        warned_at = time.monotonic()
        while True:
            try:
                self._interruptible(lambda: call(_WAIT_S))
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if not error.retriable():
                    raise
                if self._stopping:
                    raise _StopUncommitted(error.str()) from None
                if time.monotonic() - warned_at >= _TIMEOUT_S:
                    log.warning("transaction not committed yet, retrying: %s", error.str())
                    warned_at = time.monotonic()

    def _interruptible(self, call: Callable[[], object]) -> None:
        """Run a transaction call in a daemon thread and wait for it in slices.

        librdkafka's transaction calls block in C, past their timeout while the
        coordinator is unreachable (60 s here), and Python runs signal handlers only
        between bytecodes: waiting here keeps a SIGTERM effective during an outage.
        """
        done = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            try:
                call()
            except BaseException as exc:
                failed.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name="kafka-transaction", daemon=True).start()
        while not done.wait(0.2):
            if self._stopping:
                raise _StopUncommitted("Kafka did not answer")
        if failed:
            raise failed[0]

    def _abandon(self, exc: KafkaException) -> None:
        """Abort the batch's transaction and rewind every owned partition to its stored state.

        A fatal error (this producer was fenced by a newer one with its id) is raised:
        the process ends, and a restart restores from the changelog.
        """
        error: KafkaError = exc.args[0]
        if not error.txn_requires_abort():
            raise exc
        pause_s = _abort_pause_s(self._aborts_in_a_row)
        self._aborts_in_a_row += 1
        log.warning(
            "transaction aborted (%s); rewinding to the stored state, retrying in %.1f s",
            error.str(),
            pause_s,
        )
        self._interruptible(lambda: self._producer.abort_transaction(_TIMEOUT_S))
        self.counts.aborts += 1
        owned = sorted(self._parts)
        self._parts.clear()
        for partition, part in self._restore(owned).items():
            self._parts[partition] = part
            self._consumer.seek(TopicPartition(self._events, partition, part.next_offset))
        self._snapshot_counts()  # the abort shows at once, not after the next success
        resume_at = time.monotonic() + pause_s
        while not self._stopping and time.monotonic() < resume_at:
            time.sleep(min(0.2, max(0.0, resume_at - time.monotonic())))

    def _produce(
        self, topic: str, key: bytes | None, value: bytes, *, partition: int = -1, **kw: Any
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, partition=partition, **kw)
                return
            except BufferError:  # the local queue is full: let librdkafka send some
                if self._stopping:
                    raise _StopUncommitted("the producer's queue is full") from None
                self._producer.poll(0.05)

    def _dead_letter(self, message: Message, exc: Exception) -> None:
        self.counts.dead_letters += 1
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        headers = dead_letter_headers(exc, topic, partition, offset)
        self._produce(
            self._settings.dlq_topic,
            message.key(),
            message.value() or b"",
            headers=headers,
            timestamp=_timestamp(message),
        )
        log.warning(
            "%s[%d]@%d is not a valid event or tick (%s: %s); sent to %s",
            topic,
            partition,
            offset,
            type(exc).__name__,
            (str(exc) or repr(exc))[:200],
            self._settings.dlq_topic,
        )

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
                admin = AdminClient({"bootstrap.servers": self._settings.kafka_bootstrap_servers})
                assignor = held_by(admin, group_id) or FAUST_ASSIGNOR
                raise GroupHeldByOtherEngine(group_id, "kafka", assignor)
        log.warning("consumer: %s", error.str())

    def _tick(self) -> None:
        """A tick to each events partition this worker owns: one clock per partition."""
        if not self._parts:
            return
        key, value = encode_tick(int(time.time() * 1000))
        for partition in sorted(self._parts):
            try:
                self._ticker.produce(
                    self._events, value=value, key=key, partition=partition, on_delivery=_tick_sent
                )
            except BufferError:
                log.warning("tick not written: the producer's queue is full")
                return

    # ---- assignment and restore ---------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Restore each assigned partition's state, then start it at its stored position.

        An error is kept for the loop to raise: raised from a librdkafka callback it
        would come out of `consume()` with a mangled type. Without the assign below,
        the client assigns at the committed offsets, and the loop skips the records
        of partitions that have no state.
        """
        self._refused_since = None
        try:
            self._assign(consumer, partitions)
        except Exception as exc:
            self._failed = exc

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        mine = sorted(tp.partition for tp in partitions)
        log.info("assigned partitions %s of %s; recovering state", mine, self._events)
        restored = self._restore(mine)
        self._parts.update(restored)
        for tp in partitions:
            tp.offset = restored[tp.partition].next_offset
        consumer.assign(partitions)
        self._snapshot_counts()  # batches redone at restore
        log.info("recovery done; processing partitions %s", mine)

    def _snapshot_counts(self) -> None:
        self.stored_counts = dataclasses.replace(self.counts)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._parts.pop(tp.partition, None)
        consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning(
            "partitions %s lost (session timed out)", sorted(tp.partition for tp in partitions)
        )
        self._on_revoke(consumer, partitions)

    def _restore(self, partitions: list[int]) -> dict[int, _Partition]:
        """Each partition's state from its changelog partition, a pending WAL redone."""
        stored = {
            p: fold(p, records.items()) for p, records in self._read_changelog(partitions).items()
        }
        restored = {}
        for partition in partitions:
            restored[partition] = self._resume(partition, stored[partition])
        return restored

    def _resume(self, partition: int, stored: StoredPartition) -> _Partition:
        if stored.redone is not None:
            self._store_redo(partition, stored)
        low, _high = _watermarks(self._consumer, TopicPartition(self._events, partition))
        position = stored.position
        next_offset = low if position is None else position.next_offset
        if next_offset < low:
            log.error(
                "partition %d: records %d to %d were deleted (retention) before they were "
                "processed; windows they would have changed are missing",
                partition,
                next_offset,
                low - 1,
            )
            next_offset = low
        if stored.ahead:
            log.error(
                "partition %d: %d input(s) stored by records at or past the stored position "
                "%d (e.g. %s): written by an earlier owner after its partition moved? Their "
                "windows may differ from a replay's",
                partition,
                len(stored.ahead),
                next_offset,
                stored.ahead[0],
            )
        watermark_ms = None if position is None else position.watermark_ms
        inputs = _TrackedInputs(stored.inputs)
        state = PartitionState.restore(watermark_ms, inputs, self._config)
        log.info(
            "partition %d: state restored (next offset %s, watermark %s, %d inputs pending)",
            partition,
            next_offset,
            "none" if watermark_ms is None else format_ms(watermark_ms),
            state.pending(),
        )
        return _Partition(state, inputs, next_offset)

    def _store_redo(self, partition: int, stored: StoredPartition) -> None:
        """Write the changes of a WAL the Faust engine left unapplied, and its position."""
        wal, position = stored.redone, stored.position
        assert wal is not None and position is not None
        self._producer.begin_transaction()
        for key, value in wal.changes.items():
            self._produce(self._changelog, input_key(partition, key), value, partition=partition)
        self._produce(
            self._changelog, position_key(partition), position.encode(), partition=partition
        )
        self._producer.commit_transaction(_TIMEOUT_S)
        self.counts.redone += 1
        log.info(
            "partition %d: redid the write-ahead record of offsets %d to %d (%d inputs)",
            partition,
            wal.first_offset,
            wal.next_offset - 1,
            len(wal.changes),
        )

    def _read_changelog(self, partitions: list[int]) -> dict[int, dict[bytes, bytes | None]]:
        """The last value of every key of each changelog partition, read_committed, to its end."""
        latest: dict[int, dict[bytes, bytes | None]] = {p: {} for p in partitions}
        if self._restorer is None:
            self._restorer = Consumer(
                {
                    "bootstrap.servers": self._settings.kafka_bootstrap_servers,
                    "group.id": f"{self._settings.processor_app_id}-restore",
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "fetch.max.bytes": 52_428_800,
                    "logger": _library_logger(),
                }
            )
        restorer = self._restorer
        ends: dict[int, int] = {}
        for partition in partitions:
            low, high = _watermarks(restorer, TopicPartition(self._changelog, partition))
            if high > low:
                ends[partition] = high
        if not ends:
            return latest
        restorer.assign([TopicPartition(self._changelog, p, OFFSET_BEGINNING) for p in ends])
        records, began, progress_at = 0, time.monotonic(), time.monotonic() + _RESTORE_PROGRESS_S
        while ends:
            for message in restorer.consume(10_000, 0.5):
                p = message.partition()
                assert p is not None
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        ends.pop(p, None)
                    elif error.fatal():
                        raise KafkaException(error)
                    continue
                if p not in ends:
                    continue
                key = message.key()
                if key is not None:
                    latest[p][key] = message.value()
                records += 1
                at = message.offset()
                if at is not None and at >= ends[p] - 1:
                    del ends[p]
            if time.monotonic() >= progress_at:
                log.info(
                    "restoring: %d changelog records read, %d partitions to go", records, len(ends)
                )
                progress_at += _RESTORE_PROGRESS_S
        restorer.unassign()
        log.debug("read %d changelog records in %.1f s", records, time.monotonic() - began)
        return latest

    def _ensure_changelog(self) -> None:
        """Create the changelog topic (compacted, one partition per events partition) if
        missing, and wait for its leaders; refuse one whose partition count differs."""
        settings = self._settings
        ensure_topics(
            settings.kafka_bootstrap_servers,
            [self._changelog],
            self._partition_count,
            settings.topic_replication,
            CHANGELOG_CONFIG,
        )
        topic = self._consumer.list_topics(self._changelog, timeout=_TIMEOUT_S).topics[
            self._changelog
        ]
        if len(topic.partitions) != self._partition_count:
            raise ConfigError(
                f"changelog topic {self._changelog} has {len(topic.partitions)} partitions, "
                f"the events topic {self._partition_count}: they must match"
            )


def _abort_pause_s(aborts_before: int) -> float:
    """Seconds to wait before the next attempt, after `aborts_before` aborts in a row."""
    return min(_ABORT_PAUSE_MAX_S, _ABORT_PAUSE_FIRST_S * (1 << min(aborts_before, 16)))


def _watermarks(client: Consumer, tp: TopicPartition) -> tuple[int, int]:
    """(low, high) offsets of `tp`, retried while a leader is being elected (a new topic)."""
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        try:
            low, high = client.get_watermark_offsets(tp, timeout=_TIMEOUT_S)
            return int(low), int(high)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if time.monotonic() > deadline or not (
                error.retriable() or error.code() in _NO_LEADER_YET
            ):
                raise
            time.sleep(0.2)


def _timestamp(message: Message) -> int:
    """The source record's timestamp for its outputs (0, "now", only if it has none)."""
    _kind, ms = message.timestamp()
    return ms if ms > 0 else 0


def _tick_sent(error: KafkaError | None, _message: Message) -> None:
    if error is not None:
        log.warning("tick not written: %s", error.str())


def _library_logger() -> logging.Logger:
    """librdkafka's own log lines (connection retries and the like), at WARNING and up."""
    return logging.getLogger("livewindows.worker.librdkafka")
