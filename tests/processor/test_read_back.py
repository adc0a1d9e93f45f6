"""Reading an events record back by offset, for a restored buffered event that turns
out late (`restore.EventsWatermarks.value_at`), against a real broker."""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from processor.restore import EventsWatermarks
from tests.kafkakit import event_value, produce

T0 = 1_790_000_000_000


def test_the_value_at_an_offset_is_read_back_and_a_deleted_one_is_none(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    (events,) = make_topics("events")
    records = [event_value(f"e{n}", "other", T0 + n) for n in range(5)]
    produce(kafka_bootstrap, events, records)
    offsets = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "read-back-test"})
    try:
        watermarks = EventsWatermarks(
            offsets, events, kafka_bootstrap, logging.getLogger("test.read_back")
        )
        assert watermarks.value_at(0, 3) == records[3][1]
        assert watermarks.value_at(0, 0) == records[0][1]
        assert EventsWatermarks(offsets, events).value_at(0, 3) is None  # no reader given
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for future in admin.delete_records([TopicPartition(events, 0, 2)]).values():
            future.result(timeout=30)
        assert watermarks.value_at(0, 1) is None  # retention took it: the next one is not it
        assert watermarks.value_at(0, 2) == records[2][1]
    finally:
        offsets.close()
