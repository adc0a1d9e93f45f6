"""`livewindows billing`: the windows topic into the billing tables, exactly once in effect.

The tables include the period rollups in `BILLING_TIMEZONE` (`store.py`): a consumer
refuses to start on a database whose rollups are kept in another zone.

Delivery is at least once and the writes are idempotent, which together make the
tables exact: a batch is written in one database transaction, and only after it
committed are the batch's offsets committed to Kafka (synchronously). A crash in
between replays the batch, which changes nothing. A database error ends the
command with the offsets of the failed batch uncommitted, so a restart resumes
there. A record that is not a valid window is reported and skipped.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from livewindows.billing.codec import InvalidWindow, decode_window
from livewindows.billing.metrics import serve_metrics
from livewindows.billing.store import Store, open_store, redact_url
from plumbing.clients import reader_config
from plumbing.logs import configure_logging, record_fields
from plumbing.metrics import METRICS_HOST, known_end_offsets
from plumbing.settings import ConfigError, Settings
from plumbing.topics import TopicsError, reach
from schemas.records import Window

__all__ = ["DEFAULT_GROUP", "BillingConsumer", "BillingSummary", "billing_command"]

DEFAULT_GROUP = "livewindows-billing"
_PROGRESS_EVERY_S = 10.0
_REACH_TIMEOUT_S = 5.0
_ENDS_EVERY_S = 1.0  # how often the end offsets the lag is computed from are read

# Billing's own lines. In text they read as they always did ("billing: ..."), one
# per line for a person at a terminal; with LOG_FORMAT=json they are JSON lines.
log = logging.getLogger("livewindows.billing")

Report = Callable[[str], None]


def _say(level: int, line: str, **fields: object) -> None:
    log.log(level, line, extra=fields)


@dataclass(slots=True)
class BillingSummary:
    records: int = 0
    invalid: int = 0
    rows_written: int = 0
    windows_closed: int = 0
    batches: int = 0

    def line(self) -> str:
        return (
            f"{self.records:,} records, {self.invalid:,} invalid (skipped); "
            f"{self.rows_written:,} rows written, {self.windows_closed:,} windows closed; "
            f"transactions: {self.batches:,}"
        )


class BillingConsumer:
    """A consumer-group member that writes window records into a `Store`.

    `run()` returns after `stop()` (from a signal handler or another thread), or
    once nothing arrived for `max_idle_s` while partitions were assigned (tests).
    The batch in hand is always written and committed before `run()` returns.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        group_id: str = DEFAULT_GROUP,
        topic: str | None = None,
        batch_size: int = 500,
        poll_timeout_s: float = 0.5,
        report: Report | None = None,
    ) -> None:
        self._store = store
        self._topic = topic or settings.windows_topic
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._report = report  # None: billing's log (tests pass a list's append)
        self._stopping = False
        self._assigned = False
        self.summary = BillingSummary()
        # For the metrics (`livewindows.billing.metrics`), read from their thread:
        # the partitions owned, each one's offset after the last record in the
        # database, and when (epoch seconds) a batch with a window was last committed.
        self._owned: set[int] = set()
        self._done: dict[int, int] = {}
        self._ends: dict[int, int] = {}
        self.last_window_s: float | None = None
        self._consumer = Consumer(
            # Through `logging`, where `billing_command` holds back repeats:
            # while Kafka is down librdkafka logs every reconnect attempt.
            reader_config(
                settings.kafka_bootstrap_servers,
                group_id,
                logging.getLogger("livewindows.billing.librdkafka"),
            )
        )

    def stop(self) -> None:
        """Ask `run()` to return after the batch in hand (safe in a signal handler)."""
        self._stopping = True

    def close(self) -> None:
        """Leave the group; committed offsets are all the consumer leaves behind."""
        self._consumer.close()

    def lag(self) -> dict[int, int]:
        """Records after what is in the database, per owned partition whose end offset
        the consumer has heard of (for the metrics thread)."""
        lag = {}
        ends = self._ends
        for partition in sorted(set(self._owned)):
            end = ends.get(partition)
            done = self._done.get(partition)
            if done is None:  # no record yet since the assignment: where it fetches from
                try:
                    [tp] = self._consumer.position([TopicPartition(self._topic, partition)])
                except (KafkaException, RuntimeError):  # closed, or not assigned any more
                    continue
                done = tp.offset
            if end is not None and done >= 0:
                lag[partition] = max(0, end - done)
        return lag

    def _note_ends(self) -> None:
        """The owned partitions' end offsets, for `lag`: read in this thread
        (`known_end_offsets` says why)."""
        self._ends = known_end_offsets(self._consumer, self._topic, sorted(self._owned))

    def run(self, max_idle_s: float | None = None) -> BillingSummary:
        self._consumer.subscribe(
            [self._topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        idle_since = time.monotonic()
        last_report = ends_at = idle_since
        reported = self.summary.records
        while not self._stopping:
            messages = self._consumer.consume(self._batch_size, timeout=self._poll_timeout_s)
            now = time.monotonic()
            if now >= ends_at:
                self._note_ends()
                ends_at = now + _ENDS_EVERY_S
            if messages:
                self._handle(messages)
                idle_since = now
            elif not self._assigned:
                idle_since = now  # joining the group is not idleness
            elif max_idle_s is not None and now - idle_since >= max_idle_s:
                break
            if now - last_report >= _PROGRESS_EVERY_S and self.summary.records != reported:
                self._tell(logging.INFO, f"billing: {self.summary.line()}")
                last_report, reported = now, self.summary.records
        return self.summary

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = self._assigned or bool(partitions)
        self._owned.update(tp.partition for tp in partitions)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._owned.discard(tp.partition)
            self._done.pop(tp.partition, None)

    def _tell(self, level: int, line: str, **fields: object) -> None:
        if self._report is not None:
            self._report(line)
        else:
            _say(level, line, **fields)

    def _handle(self, messages: Sequence[Message]) -> None:
        windows: list[Window] = []
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_error(error)
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None
            if (topic, partition) not in offsets:
                # The first record since the assignment: everything before it is done.
                self._done.setdefault(partition, offset)
            offsets[(topic, partition)] = offset + 1
            self.summary.records += 1
            try:
                windows.append(decode_window(message.value()))
            except InvalidWindow as exc:
                self.summary.invalid += 1
                self._tell(
                    logging.WARNING,
                    f"billing: skipped {topic}/{partition}@{offset}: {exc}",
                    **record_fields(partition=partition, offset=offset),
                )
        if not offsets:
            return
        applied = self._store.apply(windows, now_ms=time.time_ns() // 1_000_000)
        for (_topic, partition), offset in offsets.items():
            self._done[partition] = offset
        if windows:
            self.last_window_s = time.time()
        self.summary.rows_written += applied.rows_written
        self.summary.windows_closed += applied.windows_closed
        self.summary.batches += 1
        self._commit([TopicPartition(t, p, o) for (t, p), o in offsets.items()])

    def _commit(self, offsets: list[TopicPartition]) -> None:
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance: the batch is in the database, and whoever owns
            # the partitions now replays it harmlessly from the last commit.
            self._tell(
                logging.WARNING, f"billing: offset commit failed, batch will be replayed: {exc}"
            )

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        # e.g. the topic does not exist yet: librdkafka keeps retrying by itself.
        self._tell(logging.WARNING, f"billing: Kafka: {error.str()}")


def billing_command(args: argparse.Namespace, settings: Settings) -> int:
    group_id = DEFAULT_GROUP if getattr(args, "group", None) is None else args.group
    if not group_id:
        raise ConfigError("--group must not be empty")
    metrics_port = getattr(args, "metrics_port", None)
    if metrics_port is None:
        metrics_port = settings.billing_metrics_port
    elif not 1 <= metrics_port <= 65535:
        raise ConfigError(f"--metrics-port must be 1-65535, not {metrics_port}")
    configure_logging(settings, service="billing", own_level=logging.INFO, bare=[log.name])
    try:
        store = open_store(args.db, settings.billing_timezone)
    except ConfigError:
        raise
    except Exception as exc:  # the database: unreachable, refused, not a file ...
        _say(
            logging.ERROR,
            f"billing: cannot open {redact_url(args.db)}: {type(exc).__name__}: {exc}",
        )
        return 1
    try:
        reach(settings.kafka_bootstrap_servers, _REACH_TIMEOUT_S)
    except TopicsError as exc:
        store.close()
        _say(logging.ERROR, f"billing: {exc}")
        return 1
    consumer = BillingConsumer(settings, store, group_id=group_id)
    if metrics_port is not None:
        try:
            serve_metrics(METRICS_HOST, metrics_port, consumer)
        except ConfigError:
            consumer.close()
            store.close()
            raise
    _say(
        logging.INFO,
        f"billing: consuming {settings.windows_topic} at {settings.kafka_bootstrap_servers} "
        f"as group {group_id} into {redact_url(args.db)}",
    )
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _say(logging.INFO, f"billing: {signal.Signals(signum).name}: finishing the batch in hand")
        consumer.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # a second signal stops at once

    for sig in previous:
        signal.signal(sig, on_signal)
    code = 0
    try:
        consumer.run()
    except KafkaException as exc:
        _say(logging.ERROR, f"billing: Kafka error: {exc.args[0]}")
        code = 1
    except Exception as exc:  # the database, typically: report it, exit non-zero
        _say(
            logging.ERROR,
            f"billing: stopped on {type(exc).__name__}: {exc}; the batch in hand was not "
            f"committed to Kafka, so a restart resumes with it",
        )
        code = 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        consumer.close()
        store.close()
    _say(logging.INFO, f"billing: stopped: {consumer.summary.line()}")
    return code
