"""The restore race (KAFKA-10167) against a real broker: a new owner restores what the
previous owner's last transaction wrote, however late that transaction is decided.

A read_committed fetch stops at the last stable offset (LSO): where the earliest
transaction still open, or decided but not yet marked, begins. Each test leaves
the previous owner's last batch (an input's new state and the partition's new
position, as the runtime writes them) past the LSO while `ChangelogConsumer`
restores the partition, then lets it be decided. A restore that stopped at the
LSO (`_PARTITION_EOF`) would return the batch before, and the new owner would run
the last batch again from older state.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable

import pytest
from confluent_kafka import IsolationLevel, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from plumbing.topics import ensure_topics
from processor.changelog import (
    CHANGELOG_CONFIG,
    Position,
    StoredPartition,
    encode_input,
    fold,
    input_key,
    position_key,
)
from processor.restore import ChangelogConsumer
from processor.transactions import LIBRARY_LOG, producer_config
from processor.windows import InputState

pytestmark = pytest.mark.kafka

INPUT = "cloudflare:in0"
HOLD_S = 3.0  # how long the last batch stays undecided while the restore runs


def batch(status: str, last_offset: int) -> list[tuple[bytes, bytes]]:
    """One batch of partition 0 as the runtime writes it: the input it changed, then
    the partition's position (written last)."""
    return [
        (input_key(0, INPUT), encode_input(InputState(status=status), last_offset)),
        (position_key(0), Position(last_offset + 1, 1_000 * last_offset).encode()),
    ]


def new_changelog(bootstrap: str) -> str:
    topic = f"changelog-{uuid.uuid4().hex[:12]}"
    ensure_topics(bootstrap, [topic], 1, 1, CHANGELOG_CONFIG)
    return topic


def previous_owner(bootstrap: str, topic: str) -> Producer:
    """The previous owner's transactional producer, its first batch committed."""
    producer = Producer(producer_config(bootstrap, f"previous-owner-{uuid.uuid4().hex[:8]}"))
    producer.init_transactions(30)
    producer.begin_transaction()
    for key, value in batch("live", 4):
        producer.produce(topic, key=key, value=value, partition=0)
    producer.commit_transaction(30)
    return producer


def write_last_batch(producer: Producer, topic: str) -> None:
    """The last batch's records, sent and acknowledged, its transaction left open."""
    producer.begin_transaction()
    for key, value in batch("disconnected", 9):
        producer.produce(topic, key=key, value=value, partition=0)
    assert producer.flush(30) == 0


def ends(bootstrap: str, topic: str) -> tuple[int, int]:
    """(last stable offset, high watermark) of partition 0."""
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def end(level: IsolationLevel) -> int:
        spec = {TopicPartition(topic, 0): OffsetSpec.latest()}  # type: ignore[no-untyped-call]
        (future,) = admin.list_offsets(spec, isolation_level=level).values()
        return int(future.result(30).offset)

    return end(IsolationLevel.READ_COMMITTED), end(IsolationLevel.READ_UNCOMMITTED)


def start_restore(bootstrap: str, topic: str) -> Callable[[], StoredPartition]:
    """A new owner's restore of partition 0, in a thread; checks that it is still
    waiting `HOLD_S` later, and returns how to wait for its result."""
    reader = ChangelogConsumer(bootstrap, topic, LIBRARY_LOG)
    read: list[Iterable[tuple[bytes | None, bytes | None]]] = []
    thread = threading.Thread(target=lambda: read.append(reader.read([0])[0]), daemon=True)
    thread.start()
    time.sleep(HOLD_S)
    assert thread.is_alive(), "the restore ended before the last batch was decided"

    def result() -> StoredPartition:
        thread.join(60)
        assert not thread.is_alive(), "the restore never ended"
        reader.close()
        return fold(0, read[0])

    return result


@pytest.mark.parametrize("decision", ["commit", "abort"])
def test_a_restore_waits_for_the_previous_owners_open_transaction(
    kafka_bootstrap: str, decision: str
) -> None:
    """The previous owner stalled (or died) with its last batch's transaction open:
    the restore waits until it is decided and returns the state it leaves."""
    topic = new_changelog(kafka_bootstrap)
    owner = previous_owner(kafka_bootstrap, topic)
    write_last_batch(owner, topic)
    stable, end = ends(kafka_bootstrap, topic)
    assert stable < end  # read_committed sees the partition end where the batch begins

    restored = start_restore(kafka_bootstrap, topic)
    if decision == "commit":
        owner.commit_transaction(30)
    else:
        owner.abort_transaction(30)
    stored = restored()

    if decision == "commit":
        assert stored.position == Position(10, 9_000)
        assert stored.inputs[INPUT].status == "disconnected"
    else:
        assert stored.position == Position(5, 4_000)
        assert stored.inputs[INPUT].status == "live"
    assert stored.ahead == ()
