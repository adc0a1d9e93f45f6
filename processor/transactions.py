"""Kafka transactions for the runtime's `BatchWriter`: one confluent-kafka producer each.

Both engines write a batch the same way (`Transactions.write`): begin, produce the
outputs (keyed, partitioned like Faust's aiokafka) and the changelog writes (to
the batch partition's own changelog partition), optionally add the consumer's
offsets (KIP-447), commit. What differs is only who fences whom:
- the kafka engine (`GroupWriter`) has one producer per worker and puts the
  consumer group's offsets in each transaction, so the group coordinator fences
  a worker whose partitions moved (its generation is stale) before it commits;
- the Faust engine (`PartitionWriter`) cannot put aiokafka's offsets in a
  librdkafka transaction, so each partition gets its own producer whose
  `transactional.id` names the partition: `init_transactions` by a new owner
  fences the old one's producer for good and ends its open transaction.

A fenced producer raises `Fenced`: another worker took over what it was writing
(it stalled past its session timeout, or another process runs on its data dir).
Nothing it holds in memory is current then, so the engines stop the process
(`FENCED_EXIT_CODE`) rather than guess which partitions are still theirs.

Every transaction call waits in slices and is made again while the error is
retriable, so a short broker outage is ridden out and a SIGTERM still takes
effect (librdkafka blocks in C past its timeout while the coordinator is down).
A transaction not committed within `_GIVE_UP_S` is given up on, however it
waits: its producer is replaced (a new one with the same `transactional.id`
fences it and aborts what it left open) and the batch runs again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from plumbing.clients import writer_config
from plumbing.settings import Settings
from processor.changelog import changelog_topic
from processor.runner import Batch, Written
from processor.runtime import Aborted

__all__ = [
    "FENCED_EXIT_CODE",
    "LIBRARY_LOG",
    "Fenced",
    "GroupWriter",
    "PartitionWriter",
    "StopUncommitted",
    "Transactions",
    "destinations",
    "producer_config",
    "report_fenced",
]

log = logging.getLogger("livewindows.worker")
# librdkafka's own lines (connection retries and the like) of every worker client.
LIBRARY_LOG = logging.getLogger("livewindows.worker.librdkafka")

_TIMEOUT_S = 30.0  # warn after this long without success
_WAIT_S = 1.0  # one wait of a transaction call that is made again until it succeeds
_FLUSH_WAIT_S = 0.1
# A transaction not committed within this long is given up on (`_deadline`): the
# transaction timeout, after which the coordinator aborts it anyway.
_GIVE_UP_S = 60.0
# librdkafka's send_offsets_to_transaction ignores its timeout while the group
# coordinator is down (librdkafka#5456, open; `creq_ts_timeout` is never checked)
# and may never return once that broker has left the metadata (#5511): a
# kafka-engine worker whose coordinator's node was killed and restarted waited in
# it in two of four clean-clone runs of the short chaos test. Longer than a
# coordinator's failover (the brokers' 9 s session timeout, then an election), it
# gives the transaction up as the deadline would, 45 s sooner.
_SEND_OFFSETS_RETURNS_WITHIN_S = 15.0
_ABORT_TRIES = 5
_PARALLEL_WRITES = 16  # partitions whose transactions a Faust worker commits at once
_FENCED = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED)
# A worker that was fenced exits with this (EX_TEMPFAIL): restarted, it rejoins the group.
FENCED_EXIT_CODE = 75


class StopUncommitted(Exception):
    """Asked to stop while Kafka could not take the transaction in progress."""


class _GivenUp(Exception):
    """The transaction in progress is given up: not committed within `_GIVE_UP_S`, or a
    call known to hang has not returned (`_SEND_OFFSETS_RETURNS_WITHIN_S`)."""


class Fenced(Exception):
    """A newer producer with this `transactional.id` fenced this one: its transaction
    in progress is aborted, and it can write nothing more."""


def report_fenced(exc: Fenced) -> int:
    """Say why a fenced worker stops; the code it exits with."""
    log.error(
        "%s: another worker took over what this one was writing (it stalled past its "
        "session timeout?); stopping without writing more, exit %d: restarted, it rejoins",
        exc,
        FENCED_EXIT_CODE,
    )
    return FENCED_EXIT_CODE


def destinations(settings: Settings) -> dict[str, str]:
    """The topic each kind of `Written` record goes to."""
    return {
        "windows": settings.windows_topic,
        "late": settings.late_topic,
        "dlq": settings.dlq_topic,
        "changelog": changelog_topic(settings.processor_app_id),
    }


def producer_config(
    bootstrap: str, txn_id: str, logger: logging.Logger = LIBRARY_LOG
) -> dict[str, Any]:
    return {
        **writer_config(bootstrap, logger),
        "transactional.id": txn_id,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "transaction.timeout.ms": 60_000,
    }


class Transactions:
    """One transactional producer, its calls retried and interruptible."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: dict[str, str],
        stopping: Callable[[], bool],
    ) -> None:
        self._config = config
        self._topics = topics  # destination -> topic name
        self._stopping = stopping
        self._given_up_at: float | None = None  # while a transaction is in progress
        self._producer = Producer(config)
        self._retrying(self._producer.init_transactions)

    def write(
        self,
        batches: Sequence[Batch],
        offsets: Callable[[], tuple[list[TopicPartition], Any]] | None = None,
    ) -> None:
        """The batches in one transaction, with `offsets()` (offsets, group metadata)
        added if given; `Aborted` (after aborting) if Kafka refused it, or if it
        was not committed in time (then with a new producer)."""
        with self._deadline():
            self._write(batches, offsets)

    def _write(
        self,
        batches: Sequence[Batch],
        offsets: Callable[[], tuple[list[TopicPartition], Any]] | None,
    ) -> None:
        try:
            self._producer.begin_transaction()
            for batch in batches:
                for written in batch.outputs:
                    self._produce(written, -1)
                for written in batch.changelog:
                    self._produce(written, batch.partition)
            if offsets is not None:
                # KIP-447 checks the group generation when the offsets are added, never
                # at the commit, and a successor restores once that generation is over.
                # So the batch's records must be in the log before the offsets are sent:
                # then the end offsets the successor's restore reads cover them, and it
                # waits for this transaction's decision. Otherwise a worker that stalled
                # after its offsets were taken but before its records were sent (linger,
                # a slow leader) could commit a batch its successor never restored.
                self._flush()
                tps, group = offsets()
                producer = self._producer
                self._retrying(
                    lambda t: producer.send_offsets_to_transaction(tps, group, t),
                    returns_within_s=_SEND_OFFSETS_RETURNS_WITHIN_S,
                )
            self._retrying(self._producer.commit_transaction)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            self._raise_if_fenced(error)
            if not error.txn_requires_abort():
                raise
            self.abort()
            raise Aborted(error.str()) from None

    def write_changelog(self, partition: int, writes: Sequence[Written]) -> None:
        with self._deadline():
            try:
                self._producer.begin_transaction()
                for written in writes:
                    self._produce(written, partition)
                self._retrying(self._producer.commit_transaction)
            except KafkaException as exc:
                self._raise_if_fenced(exc.args[0])
                raise

    @contextmanager
    def _deadline(self) -> Iterator[None]:
        """Give the transaction up `_GIVE_UP_S` after it began, whatever it waits for.

        Waiting longer gains nothing: the coordinator aborts it at the transaction
        timeout. The waits that check the deadline are those for records to be
        acknowledged, for a retriable call, and for a call to return at all
        (`send_offsets_to_transaction` may not: see `_SEND_OFFSETS_RETURNS_WITHIN_S`,
        which gives up sooner the same way). The producer is replaced rather than
        asked to abort, which it may not do either: the new one's
        `init_transactions` fences it, so nothing it may still send can commit;
        its blocked call's thread stays behind with it. The replacement waits
        without a deadline (a broker outage is ridden out there), and the caller
        gets `Aborted`: the batch runs again.
        """
        self._given_up_at = time.monotonic() + _GIVE_UP_S
        try:
            yield
        except _GivenUp as exc:
            self._given_up_at = None
            log.warning(
                "%s (transactional.id %s): replacing the producer; the batch runs again",
                exc,
                self._config["transactional.id"],
            )
            self._replace()
            raise Aborted(str(exc)) from None
        finally:
            self._given_up_at = None

    def _give_up_if_late(self, waiting_for: str) -> None:
        if self._given_up_at is not None and time.monotonic() >= self._given_up_at:
            raise _GivenUp(f"not committed within {_GIVE_UP_S:.0f} s: {waiting_for}")

    def abort(self) -> None:
        """Abort the open transaction; replace the producer if Kafka will not let it."""
        for _ in range(_ABORT_TRIES):
            try:
                self._interruptible(lambda: self._producer.abort_transaction(_WAIT_S))
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                self._raise_if_fenced(error)
                if error.fatal():
                    raise
                log.warning("abort not completed yet: %s", error.str())
        log.warning("abort could not complete; replacing the transactional producer")
        self.close()
        self._replace()

    def _replace(self) -> None:
        """A new producer with the same `transactional.id`: its `init_transactions`
        fences the old one, whose open transaction the coordinator then aborts."""
        self._producer = Producer(self._config)
        self._retrying(self._producer.init_transactions)

    def poll(self) -> None:
        self._producer.poll(0)

    def _raise_if_fenced(self, error: KafkaError) -> None:
        if error.code() in _FENCED:
            txn_id = self._config["transactional.id"]
            raise Fenced(f"transactional.id {txn_id} is fenced: {error.str()}")

    def close(self) -> None:
        self._producer.flush(0)

    def _produce(self, written: Written, partition: int) -> None:
        topic = self._topics[written.destination]
        kwargs: dict[str, Any] = {"key": written.key, "value": written.value}
        if written.timestamp_ms is not None:
            kwargs["timestamp"] = written.timestamp_ms
        if written.headers:
            kwargs["headers"] = written.headers
        if partition >= 0:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return
            except BufferError:  # the local queue is full: let librdkafka send some
                if self._stopping():
                    raise StopUncommitted("the producer's queue is full") from None
                self._producer.poll(0.05)

    def _flush(self) -> None:
        """Until every record produced is acknowledged, or the transaction has failed.

        Once it has failed (a record refused), librdkafka holds the records not sent
        yet until they time out (the transaction timeout, 60 s): each short wait is
        followed by a look at the transaction's state, so the abort comes at once.
        A wait that goes on is said every `_TIMEOUT_S`, as `_retrying` says its own.

        Records can also wait without the transaction failing, e.g. while the
        producer re-acquires its producer id (librdkafka#3041 reports a commit's
        flush hanging so): until the transaction's deadline.
        """
        warned_at = time.monotonic()
        while (waiting := self._producer.flush(_FLUSH_WAIT_S)) > 0:
            self._raise_if_failed()
            if self._stopping():
                raise StopUncommitted("Kafka did not acknowledge the batch's records")
            self._give_up_if_late(f"{waiting} record(s) not acknowledged")
            if time.monotonic() - warned_at >= _TIMEOUT_S:
                log.warning(
                    "%d record(s) of the batch not acknowledged by Kafka yet, waiting "
                    "(transactional.id %s)",
                    waiting,
                    self._config["transactional.id"],
                )
                warned_at = time.monotonic()

    def _raise_if_failed(self) -> None:
        """Raise the open transaction's error if it has one. librdkafka has no call
        for its state, but refuses `begin_transaction` within a transaction, changing
        nothing: with a state error while the transaction is fine, else with its error."""
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal() or error.txn_requires_abort():
                raise
            return
        raise RuntimeError("begin_transaction succeeded within a transaction")

    def _retrying(
        self, call: Callable[[float], object], returns_within_s: float | None = None
    ) -> None:
        """`call(timeout)` until it succeeds; a retriable failure (a broker outage) is retried.

        Each call waits at most `_WAIT_S`, then is made again (librdkafka resumes a
        timed-out transaction call): a commit waits for every record of the batch,
        and once one is refused the transaction can only be aborted, which a call
        made again reports at once instead of at the end of a long timeout.
        """
        warned_at = time.monotonic()
        while True:
            try:
                self._interruptible(lambda: call(_WAIT_S), returns_within_s)
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if not error.retriable():
                    raise
                if self._stopping():
                    raise StopUncommitted(error.str()) from None
                self._give_up_if_late(f"Kafka still answers {error.str()}")
                if time.monotonic() - warned_at >= _TIMEOUT_S:
                    log.warning("transaction call not done yet, retrying: %s", error.str())
                    warned_at = time.monotonic()

    def _interruptible(
        self, call: Callable[[], object], returns_within_s: float | None = None
    ) -> None:
        """Run a transaction call in a daemon thread and wait for it in slices.

        librdkafka's transaction calls block in C past their timeout while the
        coordinator is unreachable, and Python runs signal handlers only between
        bytecodes: waiting here keeps a SIGTERM effective during an outage, and
        the transaction's deadline effective for a call that never returns (or
        `returns_within_s`, for a call known to hang).
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
        began = time.monotonic()
        while not done.wait(0.2):
            if self._stopping():
                raise StopUncommitted("Kafka did not answer")
            self._give_up_if_late("a call to Kafka did not return")
            if returns_within_s is not None and time.monotonic() - began >= returns_within_s:
                raise _GivenUp(
                    f"a call to Kafka did not return within {returns_within_s:.0f} s "
                    "(librdkafka#5456)"
                )
        if failed:
            raise failed[0]


class GroupWriter:
    """The kafka engine's writer: one producer, the group's offsets in every transaction."""

    def __init__(
        self,
        transactions: Transactions,
        events_topic: str,
        group_metadata: Callable[[], Any],
    ) -> None:
        self._transactions = transactions
        self._events_topic = events_topic
        self._group_metadata = group_metadata

    def fence(self, partitions: Sequence[int]) -> None:
        """Nothing to do: the coordinator refuses a stale member's offsets, and its
        transaction with them (KIP-447). A transaction whose offsets it took before
        the generation ended has its records in the log already (`Transactions.write`
        flushes first), so the restore that follows this waits for its decision."""

    def write(self, batches: Sequence[Batch]) -> None:
        def offsets() -> tuple[list[TopicPartition], Any]:
            tps = [TopicPartition(self._events_topic, b.partition, b.next_offset) for b in batches]
            return tps, self._group_metadata()

        self._transactions.write(batches, offsets)

    def write_changelog(self, partition: int, writes: Sequence[Written]) -> None:
        self._transactions.write_changelog(partition, writes)

    def release(self, partitions: Sequence[int]) -> None:
        pass


class PartitionWriter:
    """The Faust engine's writer: a producer per owned partition, fenced by partition."""

    def __init__(
        self,
        make: Callable[[int], Transactions],
    ) -> None:
        self._make = make
        self._owned: dict[int, Transactions] = {}
        self._pool = ThreadPoolExecutor(_PARALLEL_WRITES, thread_name_prefix="livewindows-txn")

    def fence(self, partitions: Sequence[int]) -> None:
        """`init_transactions` with the partition's `transactional.id`: the previous
        owner's producer is fenced and its open transaction ended."""
        for partition in partitions:
            if partition not in self._owned:
                self._owned[partition] = self._make(partition)

    def write(self, batches: Sequence[Batch]) -> None:
        """Each partition's batch in its own transaction, all at once.

        Partitions are independent, so a batch written for one and aborted for
        another is still a whole batch each (the abort names the partitions
        written, whose state the runtime then keeps); each producer is used by one thread
        at a time, and their commits' round trips overlap instead of adding up
        (one per owned partition per batch). Every write has ended before this
        returns or raises.
        """
        if len(batches) == 1:
            self._owned[batches[0].partition].write(batches)
            return
        futures = [self._pool.submit(self._owned[b.partition].write, [b]) for b in batches]
        wait(futures)
        aborted: Aborted | None = None
        written = []
        for batch, future in zip(batches, futures, strict=True):
            exc = future.exception()
            if exc is None:
                written.append(batch.partition)
            elif isinstance(exc, Aborted):
                aborted = exc
            else:
                raise exc
        if aborted is not None:
            raise Aborted(str(aborted), written) from aborted

    def write_changelog(self, partition: int, writes: Sequence[Written]) -> None:
        self._owned[partition].write_changelog(partition, writes)

    def release(self, partitions: Sequence[int]) -> None:
        for partition in partitions:
            transactions = self._owned.pop(partition, None)
            if transactions is not None:
                transactions.close()

    def poll(self) -> None:
        for transactions in self._owned.values():
            transactions.poll()
