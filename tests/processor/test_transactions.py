"""A transactional writer whose records Kafka does not acknowledge, against a real broker."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from livewindows.kafka.launcher import KafkaCluster, LauncherError
from plumbing.topics import ensure_topics
from processor import transactions
from processor.runner import Batch, Written
from processor.runtime import Aborted
from processor.transactions import Transactions, producer_config
from tests.localkafka import start_cluster

pytestmark = [pytest.mark.kafka, pytest.mark.alone]

GIVE_UP_S = 3.0
STALL_S = 8.0  # the node answers nothing for this long: longer than the give-up


@pytest.fixture
def own_node() -> Iterator[KafkaCluster]:
    """A one-node cluster of this test's own: it is stopped (SIGSTOP) for a while."""
    try:
        cluster = start_cluster(1, heap_mb=384)
    except LauncherError as error:
        pytest.fail(f"no Kafka node for the test: {error}", pytrace=False)
    try:
        yield cluster
    finally:
        pid = cluster.pid(0)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        cluster.stop()


def _writer(bootstrap: str, name: str) -> Transactions:
    """A writer of a new windows topic, with a `transactional.id` of its own."""
    topics = {"windows": f"windows-{uuid.uuid4().hex[:12]}"}
    ensure_topics(bootstrap, list(topics.values()), 1, 1)
    txn_id = f"test-{name}-{uuid.uuid4().hex[:12]}"
    return Transactions(producer_config(bootstrap, txn_id), topics, lambda: False)


def _batch(offset: int) -> list[Batch]:
    return [Batch(0, offset, offset + 1, outputs=[Written("windows", b"k", b"v", None)])]


def test_a_batch_kafka_does_not_acknowledge_is_aborted_and_the_writer_goes_on(
    own_node: KafkaCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kafka engine flushes a batch's records before it adds the group's offsets.
    Records that wait without the transaction failing (here: the node stalls) must
    not hold the worker until Kafka answers: past the give-up time the batch is
    aborted, to run again, and the same writer commits the next batch."""
    monkeypatch.setattr(transactions, "_GIVE_UP_S", GIVE_UP_S)
    writer = _writer(own_node.bootstrap, "unacked")

    def offsets() -> tuple[list[object], object]:
        raise AssertionError("the batch's records were acknowledged: the node did not stall")

    pid = own_node.pid(0)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    threading.Timer(STALL_S, os.kill, (pid, signal.SIGCONT)).start()
    began = time.monotonic()
    with pytest.raises(Aborted, match=f"within {GIVE_UP_S:.0f} s: 1 record.s. not acknowledged"):
        writer.write(_batch(0), offsets)  # type: ignore[arg-type]
    assert time.monotonic() - began >= GIVE_UP_S

    writer.write(_batch(1))
    writer.close()


class _HangingCommit:
    """A producer whose commit never returns, as librdkafka's did in the chaos test
    after its coordinator's node restarted; everything else is the real producer's."""

    def __init__(self, real: object) -> None:
        self._real = real

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def commit_transaction(self, *_args: object) -> None:
        threading.Event().wait()  # for ever (a daemon thread: the test does not wait)


def test_a_transaction_call_that_never_returns_is_given_up_with_its_producer(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is aborted (it runs again), the producer replaced by one that fences
    it, and the writer commits the next batch."""
    monkeypatch.setattr(transactions, "_GIVE_UP_S", GIVE_UP_S)
    writer = _writer(kafka_bootstrap, "stuck")
    writer._producer = _HangingCommit(writer._producer)  # type: ignore[assignment]

    began = time.monotonic()
    with pytest.raises(Aborted, match=f"within {GIVE_UP_S:.0f} s: a call to Kafka did not return"):
        writer.write(_batch(0))
    assert time.monotonic() - began >= GIVE_UP_S

    writer.write(_batch(1))
    writer.close()


class _HangingSendOffsets(_HangingCommit):
    """A producer whose send_offsets_to_transaction never returns, as librdkafka's
    does while the group coordinator is down (librdkafka#5456, #5511)."""

    def commit_transaction(self, *args: object) -> None:
        self._real.commit_transaction(*args)  # type: ignore[attr-defined]

    def send_offsets_to_transaction(self, *_args: object) -> None:
        threading.Event().wait()


def test_offsets_that_never_reach_the_transaction_give_it_up_soon(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not at the transaction's deadline but within the bound for that call: the
    batch is aborted, the producer replaced, and the writer goes on."""
    monkeypatch.setattr(transactions, "_SEND_OFFSETS_RETURNS_WITHIN_S", GIVE_UP_S)
    writer = _writer(kafka_bootstrap, "offsets")
    writer._producer = _HangingSendOffsets(writer._producer)  # type: ignore[assignment]

    began = time.monotonic()
    with pytest.raises(Aborted, match=f"did not return within {GIVE_UP_S:.0f} s .librdkafka#5456"):
        writer.write(
            _batch(0),
            lambda: ([], None),
        )
    assert GIVE_UP_S <= time.monotonic() - began < transactions._GIVE_UP_S / 2

    writer.write(_batch(1))
    writer.close()
