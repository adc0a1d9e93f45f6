"""Replay writes window records as the runner makes them: with their trace context."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from confluent_kafka import Producer

from plumbing.settings import Settings
from processor.replay import StartAt, run_replay
from tests.kafkakit import event_value, read_all, tick_value

T0 = 1_790_000_000_000
OPENING = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
CLOSING = b"00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"


def test_replayed_window_records_carry_the_traceparent_of_their_events(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    events, output = make_topics("events", "replayed")
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    for (key, value), traceparent in (
        (event_value("b", "disconnected", T0), OPENING),
        (event_value("c", "connected", T0 + 300), CLOSING),
        (tick_value(T0 + 10_000), None),
    ):
        headers = None if traceparent is None else [("traceparent", traceparent)]
        producer.produce(events, value=value, key=key, headers=headers)
    assert producer.flush(30) == 0
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        events_topic=events,
        window_grace_ms=500,
        reconnect_window_s=2,
    )
    run_replay(settings, StartAt(), output)
    found = [(orjson.loads(r.value)["type"], r.headers) for r in read_all(kafka_bootstrap, output)]
    assert found == [
        ("window.opened", [("traceparent", OPENING)]),
        (
            "window.closed",
            [("traceparent", CLOSING), ("livewindows-opening-traceparent", OPENING)],
        ),
    ]
