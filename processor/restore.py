"""Reading changelog partitions to their end, as Kafka Streams' `StoreChangelogReader` does.

The rule, in one place: take each partition's end offset as ListOffsets answers
it at READ_UNCOMMITTED (the high watermark: every record written, decided or
not), then read `read_committed` until the consumer's position reaches it.

Why not until `_PARTITION_EOF`: a read_committed fetch stops at the last stable
offset, so EOF comes where a transaction still open, or decided but not yet
marked, begins; a restore that stopped there would miss a previous owner's last
batch and run it again from older state (KAFKA-10167). Reading on until the
position passes the uncommitted end waits for that transaction to be decided;
its marker is never delivered, but it moves the position past itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from plumbing.clients import FETCH_MAX_BYTES, admin_config, reader_config
from plumbing.settings import ConfigError, Settings
from plumbing.topics import ensure_topics
from processor.changelog import CHANGELOG_CONFIG, changelog_topic

__all__ = [
    "ChangelogConsumer",
    "EventsWatermarks",
    "end_offsets",
    "ensure_changelog",
    "watermark_offsets",
]

log = logging.getLogger("livewindows.worker")

_TIMEOUT_S = 30.0
_PROGRESS_S = 5.0
# A partition whose leader went down with its node: an offset query waits on the
# leader the client knew until it times out, and is made again, until the cluster
# has fenced that node and elected another leader (seconds), or the node is back.
# A worker assigned partitions meanwhile must wait, not exit: the chaos run saw
# workers exit (70) on each of the errors below while a node was being restarted.
_LEADER_PATIENCE_S = 120.0
_QUERY_TIMEOUT_S = 5.0
# What Kafka answers while leadership moves (its InvalidMetadataException family):
# the client asked with metadata that went stale, and will ask the new leader.
_RETRIABLE = (
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.REPLICA_NOT_AVAILABLE,
    KafkaError.OFFSET_NOT_AVAILABLE,
    # librdkafka's own, for a request to a leader that went away meanwhile:
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._DESTROY_BROKER,  # a fenced node left the metadata with the request on it
    KafkaError._UNKNOWN_PARTITION,  # the metadata had no leader for it at that moment
    KafkaError._ALL_BROKERS_DOWN,
)

T = TypeVar("T")
Latest = dict[bytes, bytes | None]  # each key's last value (None: a tombstone)


def end_offsets(
    admins: Callable[[], AdminClient], topic: str, partitions: Sequence[int]
) -> dict[int, int]:
    """Each partition's end offset at READ_UNCOMMITTED, retried while leaders are elected;
    each attempt with a client from `admins()`.

    librdkafka answers a partition whose leader is a node that died with offset -1001
    (OFFSET_INVALID) and no error. Taken as an end, it made the restore read nothing:
    the partition started over from offset 0 with empty state and wrote every window
    of it again (the chaos run: 45 copies read_committed). So an offset below 0 is
    asked for again, as a leader being elected is, by a new client: a client that
    answered -1001 went on answering it for minutes after the leaders had moved
    (even after reading the topic's metadata again), while a new one had the offsets
    at once.
    """
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    return _while_leaders_move(lambda: _listed(admins(), topic, partitions, latest))


def _listed(
    admin: AdminClient, topic: str, partitions: Sequence[int], spec: OffsetSpec
) -> dict[int, int]:
    """One ListOffsets of `partitions`; `admin` is held until the answers are in (a
    client destroyed drops them: its futures never complete)."""
    futures = admin.list_offsets(
        {TopicPartition(topic, p): spec for p in partitions},
        isolation_level=IsolationLevel.READ_UNCOMMITTED,
        request_timeout=_QUERY_TIMEOUT_S,
    )
    try:
        offsets = {tp.partition: f.result(2 * _QUERY_TIMEOUT_S).offset for tp, f in futures.items()}
    except FutureTimeout:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT)) from None
    return _known(offsets)


def _known(offsets: dict[int, int]) -> dict[int, int]:
    """`offsets`, or `LEADER_NOT_AVAILABLE` (retried) if one is not an offset."""
    if any(offset < 0 for offset in offsets.values()):
        raise KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE))
    return offsets


def watermark_offsets(consumer: Consumer, tp: TopicPartition) -> tuple[int, int]:
    """(low, high) offsets of `tp`, retried while a leader is elected (a new topic)."""

    def queried() -> tuple[int, int]:
        low, high = consumer.get_watermark_offsets(tp, timeout=_QUERY_TIMEOUT_S)
        known = _known({0: int(low), 1: int(high)})
        return known[0], known[1]

    return _while_leaders_move(queried)


def _while_leaders_move(call: Callable[[], T], patience_s: float = _LEADER_PATIENCE_S) -> T:
    """`call()`, made again for up to `patience_s` while it fails because a partition
    has no leader yet (a new topic, a broker that just went away) or it timed out."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if time.monotonic() > deadline or not (error.retriable() or error.code() in _RETRIABLE):
                raise
            time.sleep(0.2)


class ChangelogConsumer:
    """`ChangelogReader` over a confluent-kafka consumer (no group, no commits)."""

    def __init__(self, bootstrap: str, topic: str, logger: logging.Logger) -> None:
        self._topic = topic
        self._admin_config = admin_config(bootstrap, logger)
        self._consumer = Consumer(
            {
                # The group is never joined: partitions are assigned.
                **reader_config(bootstrap, f"{topic}-restore", logger),
                "fetch.max.bytes": FETCH_MAX_BYTES,
            }
        )

    def read(
        self, partitions: Sequence[int]
    ) -> dict[int, Iterable[tuple[bytes | None, bytes | None]]]:
        latest: dict[int, Latest] = {p: {} for p in partitions}
        ends = end_offsets(self._new_admin, self._topic, partitions)
        ends = {p: end for p, end in ends.items() if end > 0}
        if not ends:
            return {p: () for p in partitions}
        consumer = self._consumer
        consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in ends])
        records, began = 0, time.monotonic()
        progress_at = began + _PROGRESS_S
        try:
            while ends:
                for message in consumer.consume(10_000, 0.2):
                    error = message.error()
                    if error is not None:
                        if error.fatal():
                            raise KafkaException(error)
                        continue
                    partition = message.partition()
                    assert partition is not None
                    key = message.key()
                    if partition in ends and key is not None:
                        latest[partition][key] = message.value()
                        records += 1
                for tp in consumer.position([TopicPartition(self._topic, p) for p in sorted(ends)]):
                    if tp.offset >= ends[tp.partition]:
                        del ends[tp.partition]
                if time.monotonic() >= progress_at:
                    log.info(
                        "restoring: %d changelog records read, %d partition(s) to go "
                        "(a transaction still open holds a partition until it is decided)",
                        records,
                        len(ends),
                    )
                    progress_at += _PROGRESS_S
        finally:
            consumer.unassign()
        log.debug("read %d changelog records in %.1f s", records, time.monotonic() - began)
        return {p: keys.items() for p, keys in latest.items()}

    def _new_admin(self) -> AdminClient:
        """A client of its own for each query (`end_offsets` says why); restores are rare."""
        return AdminClient(self._admin_config)

    def close(self) -> None:
        self._consumer.close()


class EventsWatermarks:
    """`EventsOffsets`, and a consumer of its own (no group) that reads a record back by
    offset, if given the bootstrap servers.

    Given them, the earliest offset is asked by ListOffsets through a new admin client
    for each attempt, not by the consumer's watermark query: a worker's long-lived
    consumer answered _UNKNOWN_PARTITION for 120 s after a broker node was killed (its
    metadata never named the new leader), and the worker exited."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        bootstrap: str | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._reader: Consumer | None = None
        self._admin_config = None if bootstrap is None else admin_config(bootstrap, logger)
        if bootstrap is not None:
            config: dict[str, object] = {
                "bootstrap.servers": bootstrap,
                "group.id": f"{topic}-read-back",  # never joined: partitions are assigned
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",  # an offset retention deleted: the next one
            }
            if logger is not None:
                config["logger"] = logger
            self._reader = Consumer(config)

    def earliest(self, partition: int) -> int:
        config = self._admin_config
        if config is None:
            low, _high = watermark_offsets(self._consumer, TopicPartition(self._topic, partition))
            return low
        earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        listed = _while_leaders_move(
            lambda: _listed(AdminClient(config), self._topic, [partition], earliest)
        )
        return listed[partition]

    def value_at(self, partition: int, offset: int) -> bytes | None:
        """The value at `offset`: a restored buffered event that turned out late (rare)."""
        reader = self._reader
        if reader is None:
            return None
        reader.assign([TopicPartition(self._topic, partition, offset)])
        deadline = time.monotonic() + _TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                message = reader.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    continue
                found = message.offset()
                if found is not None and found >= offset:
                    return message.value() if found == offset else None
            log.warning(
                "%s[%d]@%d could not be read back within %.0f s",
                self._topic,
                partition,
                offset,
                _TIMEOUT_S,
            )
            return None
        finally:
            reader.unassign()


def ensure_changelog(settings: Settings, partitions: int) -> None:
    """Create the changelog topic (compacted, one partition per events partition) if
    missing, wait until its partitions show, and refuse one whose count differs.

    Workers started together may all try to create it: one wins, and the others
    wait for the topic's metadata rather than read a partition count of 0.
    """
    topic = changelog_topic(settings.processor_app_id)
    bootstrap = settings.kafka_bootstrap_servers
    ensure_topics(bootstrap, [topic], partitions, settings.topic_replication, CHANGELOG_CONFIG)
    admin = AdminClient(admin_config(bootstrap))
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        described = admin.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
        count = 0 if described is None or described.error is not None else len(described.partitions)
        if count == partitions:
            return
        if count or time.monotonic() > deadline:  # 0: not in this broker's metadata yet
            raise ConfigError(
                f"changelog topic {topic} has {count} partitions, the events topic "
                f"{partitions}: they must match"
            )
        time.sleep(0.2)
