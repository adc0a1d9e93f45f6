"""Restore's offset queries wait out a leader that went away with its node."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from processor.restore import watermark_offsets


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
