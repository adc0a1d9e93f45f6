"""Restore's offset queries wait out a leader that went away with its node."""

from __future__ import annotations

import logging
import weakref

import pytest
from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, TopicPartition

from processor import restore
from processor.restore import end_offsets, watermark_offsets


class _Consumer:
    """Answers `get_watermark_offsets` with the errors given, then (5, 9)."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.timeouts: list[float] = []

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.timeouts.append(timeout)
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 5, 9


def test_a_watermark_query_that_timed_out_on_a_dead_leader_is_made_again() -> None:
    # The worker restored partitions while the node leading one was being restarted:
    # one query timed out, and the worker exited (exit 70) instead of asking again.
    errors = (
        KafkaError._TIMED_OUT,
        KafkaError._DESTROY_BROKER,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.NOT_LEADER_FOR_PARTITION,
    )
    consumer = _Consumer(*errors)
    assert watermark_offsets(consumer, TopicPartition("events", 0)) == (5, 9)  # type: ignore[arg-type]
    assert len(consumer.timeouts) == len(errors) + 1
    assert max(consumer.timeouts) <= 5  # short queries, made again: a new leader is found


def test_a_watermark_query_refused_for_good_is_not_made_again() -> None:
    consumer = _Consumer(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        watermark_offsets(consumer, TopicPartition("events", 0))  # type: ignore[arg-type]
    assert len(consumer.timeouts) == 1


class _Listed:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class _Future:
    """An answer that only comes while its client lives (librdkafka drops the answers
    of a client that is destroyed: its futures never complete)."""

    def __init__(self, offset: int, client: object) -> None:
        self._offset = offset
        self._client = weakref.ref(client)

    def result(self, timeout: float | None = None) -> _Listed:
        assert self._client() is not None, "the client was destroyed before its answer"
        return _Listed(self._offset)


class _Client:
    def __init__(self, rounds: list[dict[int, int]]) -> None:
        self._rounds = rounds

    def list_offsets(self, wanted: dict[TopicPartition, object], **_: object) -> dict:  # type: ignore[type-arg]
        answer = self._rounds.pop(0)
        return {tp: _Future(answer[tp.partition], self) for tp in wanted}


class _Admins:
    """A new client for each call, answering each round of offsets in turn, no errors."""

    def __init__(self, *rounds: dict[int, int]) -> None:
        self.rounds = list(rounds)
        self.clients = 0

    def __call__(self) -> _Client:
        self.clients += 1
        return _Client(self.rounds)


def test_an_end_offset_not_known_is_asked_for_again_not_taken_for_an_empty_partition() -> None:
    # A node of three SIGKILLed under load: librdkafka answered its partitions with
    # -1001 and no error; the restore took that for an empty changelog, began the
    # partition again at 0 and wrote its windows a second time.
    admins = _Admins({0: 55, 1: OFFSET_INVALID}, {0: 55, 1: 55})
    assert end_offsets(admins, "changelog", [0, 1]) == {0: 55, 1: 55}  # type: ignore[arg-type]
    assert admins.rounds == []
    assert admins.clients == 2  # the client that answered -1001 went on answering it


class _Failed:
    def __init__(self, code: int) -> None:
        self._code = code

    def result(self, timeout: float | None = None) -> _Listed:
        raise KafkaException(KafkaError(self._code))


def test_the_earliest_offset_is_asked_by_a_new_client_while_one_does_not_know_the_leader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker's long-lived consumer answered _UNKNOWN_PARTITION for 120 s after a
    # broker node was killed, and the worker exited; a new client knew the leader.
    made: list[int] = []

    class Client:
        def __init__(self, config: dict[str, object]) -> None:
            made.append(1)
            self._knows = len(made) > 1

        def list_offsets(self, wanted: dict[TopicPartition, object], **_: object) -> dict:  # type: ignore[type-arg]
            if not self._knows:
                return {tp: _Failed(KafkaError._UNKNOWN_PARTITION) for tp in wanted}
            return {tp: _Future(7, self) for tp in wanted}

    monkeypatch.setattr(restore, "AdminClient", Client)
    monkeypatch.setattr(restore, "Consumer", lambda config: None)  # the read-back reader
    watermarks = restore.EventsWatermarks(
        None,  # type: ignore[arg-type]  # the consumer: not asked
        "events",
        "127.0.0.1:1",
        logging.getLogger("test"),
    )
    assert watermarks.earliest(3) == 7
    assert len(made) == 2
