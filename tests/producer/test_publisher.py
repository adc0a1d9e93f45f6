"""The publisher and the app when no broker answers: real librdkafka, no Kafka needed.

A closed loopback port stands for a broker that is down: answers are 503 within
the publish timeout, never 202, and the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from livewindows.kafka.launcher import free_ports
from producer.publisher import KafkaPublisher, PublishTimeout, encode, producer_config
from producer.sample_webhooks import sample_requests
from schemas.records import Event
from tests.producer import seeds

START_MS = 1_700_000_000_000
EVENT = Event.model_validate(
    {
        "event_id": "e1",
        "provider": "gjirafa",
        "input_id": "in:1",
        "kind": "other",
        "provider_event_type": "x",
        "occurred_at": "2024-01-01T00:00:00.000Z",
        "received_at": "2024-01-01T00:00:00.000Z",
        "payload": {"a": [1, "é"]},
    }
)


def test_records_are_keyed_by_provider_and_input_with_a_schema_field() -> None:
    key, value = encode(EVENT)
    assert key == b"gjirafa:in:1"
    assert value.startswith(b'{"schema":"livewindows/event/v1","event_id":"e1"')
    assert Event.model_validate_json(value) == EVENT


@pytest.mark.parametrize("provider", ["cloudflare", "fastpix", "gjirafa"])
def test_record_values_are_the_bytes_of_the_models_own_dump(provider: Any) -> None:
    from producer.normalize import parse_json, to_event

    for request in sample_requests(provider, "in:7", seeds.settings(), START_MS):
        event = to_event(provider, parse_json(request.body), START_MS + 5)
        assert encode(event)[1] == orjson.dumps(event.model_dump(by_alias=True))
    assert encode(EVENT)[1] == orjson.dumps(EVENT.model_dump(by_alias=True))


def test_the_producer_is_idempotent_with_acks_all_and_bounded_retries() -> None:
    config = producer_config("b:9092", publish_timeout_ms=5000)
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["message.timeout.ms"] == 5000
    assert config["request.timeout.ms"] <= config["message.timeout.ms"]


async def test_publishing_before_start_or_after_close_is_a_publish_timeout() -> None:
    publisher = KafkaPublisher(f"127.0.0.1:{free_ports(1)[0]}", "t", publish_timeout_ms=500)
    with pytest.raises(PublishTimeout):
        await publisher.publish(EVENT)
    await publisher.start()
    await publisher.close()
    with pytest.raises(PublishTimeout):
        await publisher.publish(EVENT)
    assert not await publisher.ready()


async def test_an_unreachable_broker_is_503_within_the_timeout_never_202(serve: Any) -> None:
    settings = seeds.settings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_ports(1)[0]}", publish_timeout_ms=1500
    )
    client = await serve(settings)
    request = sample_requests("gjirafa", "in-x", settings, START_MS)[0]
    started = time.monotonic()
    response = await client.post(request.path, data=request.body, headers=request.headers)
    elapsed = time.monotonic() - started
    assert response.status == 503
    assert response.headers["Retry-After"].isdigit()
    assert 1.0 < elapsed < 5.0
    readyz = await client.get("/readyz")
    assert readyz.status == 503


async def test_the_event_loop_keeps_running_while_kafka_does_not_answer() -> None:
    publisher = KafkaPublisher(f"127.0.0.1:{free_ports(1)[0]}", "t", publish_timeout_ms=1000)
    await publisher.start()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    try:
        with pytest.raises(PublishTimeout):
            await asyncio.gather(*(publisher.publish(EVENT) for _ in range(20)))
    finally:
        task.cancel()
        await publisher.close()
    assert ticks > 20  # ~100 in one second (0-1 if the loop waited on librdkafka)


async def test_a_fatal_producer_error_makes_it_unready_and_every_publish_a_503() -> None:
    from confluent_kafka import KafkaError

    publisher = KafkaPublisher(f"127.0.0.1:{free_ports(1)[0]}", "t", publish_timeout_ms=500)
    await publisher.start()
    try:
        publisher._on_error(KafkaError(KafkaError._FATAL, "out of order sequence", fatal=True))
        assert not await publisher.ready()
        with pytest.raises(PublishTimeout, match="out of order sequence"):
            await publisher.publish(EVENT)
    finally:
        await publisher.close()
