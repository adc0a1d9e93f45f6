"""The producer through real HTTP and real Kafka (SPEC §2, §4).

Accepted events are in the topic, keyed and shaped as the contract says; a
broker that is unreachable or stops answering turns answers into 503, never 202.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from livewindows.kafka.launcher import KafkaCluster, free_ports
from plumbing.topics import ensure_topics
from producer.publisher import KafkaPublisher, PublishTimeout
from producer.sample_webhooks import sample_requests
from schemas.records import Event
from tests.kafkakit import port_with_controller_port, read_all
from tests.producer import seeds
from tests.producer.test_app import fp_headers

pytestmark = pytest.mark.kafka

START_MS = 1_700_000_000_000
SECRETS = (seeds.FP_STREAM_KEY, seeds.FP_SIMULCAST_KEY, seeds.FP_RTMP_KEY)


async def test_accepted_events_are_in_the_topic_with_key_and_fields(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]], serve: Any
) -> None:
    [topic] = make_topics("producer-events", partitions=3)
    settings = seeds.settings(kafka_bootstrap_servers=kafka_bootstrap, events_topic=topic)
    client = await serve(settings)
    accepted: dict[str, list[str]] = {}
    for provider in ("cloudflare", "fastpix", "gjirafa"):
        for request in sample_requests(provider, f"{provider}-in", settings, START_MS):
            response = await client.post(request.path, data=request.body, headers=request.headers)
            assert response.status == 202, await response.text()
            accepted.setdefault(f"{provider}:{provider}-in", []).append(
                (await response.json())["event_id"]
            )
    simulcast = orjson.dumps(seeds.fastpix_simulcast("video.live_stream.simulcast_target.created"))
    response = await client.post(
        "/api/v1/video/fastpix/events",
        data=simulcast,
        headers=fp_headers(simulcast, seeds.FASTPIX_KEY_1),
    )
    assert response.status == 202
    accepted.setdefault(f"fastpix:{seeds.FP_LIVESTREAM}", []).append(
        (await response.json())["event_id"]
    )

    records = read_all(kafka_bootstrap, topic)
    assert len(records) == sum(len(ids) for ids in accepted.values())
    by_key: dict[str, list[str]] = {}
    for record in records:  # (partition, offset) order: per key, the arrival order
        assert record.key is not None and record.value is not None
        value = orjson.loads(record.value)
        event = Event.model_validate(value)
        assert record.key == event.key.encode("utf-8")
        assert value["schema"] == "livewindows/event/v1"
        assert set(value) == {"schema", *Event.model_fields} - {"schema_"}
        by_key.setdefault(record.key.decode(), []).append(event.event_id)
        assert not any(secret.encode() in record.value for secret in SECRETS)
    assert by_key == accepted
    # One key, one partition: every event of an input is in the same partition.
    partitions: dict[bytes, set[int]] = {}
    for record in records:
        partitions.setdefault(record.key or b"", set()).add(record.partition)
    assert all(len(p) == 1 for p in partitions.values())


async def test_readyz_follows_kafka_and_the_topic(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]], serve: Any
) -> None:
    [topic] = make_topics("producer-ready")
    ready = await serve(seeds.settings(kafka_bootstrap_servers=kafka_bootstrap, events_topic=topic))
    assert (await ready.get("/readyz")).status == 200
    missing = await serve(
        seeds.settings(kafka_bootstrap_servers=kafka_bootstrap, events_topic="no-such-topic-x")
    )
    assert (await missing.get("/readyz")).status == 503


async def test_concurrent_publishes_keep_the_order_of_each_key(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    [topic] = make_topics("producer-order", partitions=4)
    publisher = KafkaPublisher(kafka_bootstrap, topic, publish_timeout_ms=10_000)
    await publisher.start()
    events = [
        Event.model_validate(
            {
                "event_id": f"{n:04d}",
                "provider": "fastpix",
                "input_id": f"in{n % 5}",
                "kind": "other",
                "provider_event_type": "x",
                "occurred_at": "2024-01-01T00:00:00.000Z",
                "received_at": "2024-01-01T00:00:00.000Z",
            }
        )
        for n in range(300)
    ]
    try:
        await asyncio.gather(*(publisher.publish(e) for e in events))
    finally:
        await publisher.close()
    order: dict[bytes, list[str]] = {}
    for record in read_all(kafka_bootstrap, topic):
        order.setdefault(record.key or b"", []).append(
            orjson.loads(record.value or b"")["event_id"]
        )
    assert order == {
        f"fastpix:in{k}".encode(): [e.event_id for e in events if e.input_id == f"in{k}"]
        for k in range(5)
    }


@pytest.fixture
def lone_broker() -> Iterator[KafkaCluster]:
    """A dedicated one-node cluster this test may stop, on a port chosen at random.

    Not the first free one from a fixed base: under pytest-xdist another worker's
    test then took the port this one's stopped node had freed, and `serve`, still
    configured with it, published to that broker (202 where 503 was expected)."""
    cluster = KafkaCluster([port_with_controller_port()], heap_mb=384)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_a_broker_that_stops_turns_202_into_503(
    lone_broker: KafkaCluster, serve: Any
) -> None:
    ensure_topics(lone_broker.bootstrap, ["events"], 1, 1)  # with its leader elected
    settings = seeds.settings(
        kafka_bootstrap_servers=lone_broker.bootstrap,
        events_topic="events",
        publish_timeout_ms=2000,
    )
    client = await serve(settings)
    requests = sample_requests("cloudflare", "in-stop", settings, START_MS)
    # The broker's first write (a producer id, a JVM still warming up) may take
    # longer than the short timeout on a busy host: the same webhook is retried,
    # as a provider would.
    deadline = time.monotonic() + 30
    while True:
        first = await client.post(
            requests[0].path, data=requests[0].body, headers=requests[0].headers
        )
        if first.status != 503 or time.monotonic() > deadline:
            break
    assert first.status == 202
    assert (await client.get("/readyz")).status == 200

    await asyncio.to_thread(lone_broker.stop_node, 0)
    for request in requests[1:3]:
        response = await client.post(request.path, data=request.body, headers=request.headers)
        assert response.status == 503
    assert (await client.get("/readyz")).status == 503


def test_serve_and_send_test_events_end_to_end(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    """`livewindows serve` as an operator runs it; SIGTERM stops it cleanly."""
    [topic] = make_topics("producer-serve")
    [port] = free_ports(1)
    secrets = {
        "VIDEO_EVENTS_TOKEN": "e2e-token-one,e2e-token-two",
        "FASTPIX_WEBHOOK_SECRET": base64.b64encode(b"e2e fastpix key").decode(),
        "GJIRAFA_WEBHOOK_TOKEN": "e2e-gjirafa-token",
    }
    env = {
        **os.environ,
        **secrets,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "EVENTS_TOPIC": topic,
    }
    env.pop("CF_WEBHOOK_SECRET", None)
    command = [sys.executable, "-m", "livewindows.cli"]
    with _serve_process(env, port) as server:
        for provider in ("cloudflare", "fastpix", "gjirafa"):
            sent = subprocess.run(
                [
                    *command,
                    "send-test-events",
                    "--provider",
                    provider,
                    "--url",
                    f"http://127.0.0.1:{port}",
                    "--input",
                    f"e2e-{provider}",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert sent.returncode == 0, sent.stdout + sent.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            metrics = answer.read().decode()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
    log = server.stdout.read().decode() if server.stdout else ""
    keys = [r.key for r in read_all(kafka_bootstrap, topic)]
    assert {k: keys.count(k) for k in set(keys)} == {
        b"cloudflare:e2e-cloudflare": 5,
        b"fastpix:e2e-fastpix": 7,
        b"gjirafa:e2e-gjirafa": 6,
    }
    # Accepted requests are counted by the metrics (their log line is at DEBUG).
    accepted = {
        provider: f'livewindows_http_requests_total{{provider="{provider}",status="202"}}'
        for provider in ("cloudflare", "fastpix", "gjirafa")
    }
    counts = {
        provider: float(line.rpartition(" ")[2])
        for line in metrics.splitlines()
        for provider, name in accepted.items()
        if line.startswith(name + " ")
    }
    assert counts == {"cloudflare": 5.0, "fastpix": 7.0, "gjirafa": 6.0}
    assert not any(secret in log for secret in ("e2e-token-one", "e2e-gjirafa-token"))


def _lone_serve_env(broker: KafkaCluster, name: str, *, publish_timeout_ms: int) -> dict[str, str]:
    """`serve`'s environment for the lone broker's topic "events", secrets named `name`."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "EVENTS_TOPIC": "events",
        "PUBLISH_TIMEOUT_MS": str(publish_timeout_ms),
        "VIDEO_EVENTS_TOKEN": f"{name}-token",
        "FASTPIX_WEBHOOK_SECRET": base64.b64encode(f"{name} fastpix key".encode()).decode(),
        "GJIRAFA_WEBHOOK_TOKEN": f"{name}-gjirafa-token",
    }
    env.pop("CF_WEBHOOK_SECRET", None)
    return env


@contextmanager
def _serve_process(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`livewindows serve` on `port` once it answers; killed on the way out if still up."""
    server = subprocess.Popen(
        [sys.executable, "-m", "livewindows.cli", "serve", "--host", "127.0.0.1", "--port",
         str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", server)
        yield server
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _wait_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "serve exited early"
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail("serve did not answer /healthz within 30 s")


def test_serve_logs_a_kafka_outage_without_flooding_and_still_stops(
    lone_broker: KafkaCluster,
) -> None:
    """While Kafka is down librdkafka reports every reconnect attempt twice (its log
    line and the error callback), ~2 lines a second: `serve` shows a repeat once per
    10 s, answers 503, and SIGTERM still stops it."""
    ensure_topics(lone_broker.bootstrap, ["events"], 1, 1)  # with its leader elected
    [port] = free_ports(1)
    settings = seeds.settings(gjirafa_webhook_token="outage-gjirafa-token")
    env = _lone_serve_env(lone_broker, "outage", publish_timeout_ms=2000)
    with _serve_process(env, port) as server:
        lone_broker.stop_node(0)
        time.sleep(15)
        [request] = sample_requests("gjirafa", "in-outage", settings, START_MS)[:1]
        asked = urllib.request.Request(
            f"http://127.0.0.1:{port}{request.path}",
            data=request.body,
            headers=dict(request.headers),
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(asked, timeout=10)
        assert answer.value.code == 503
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    log = server.stdout.read().decode() if server.stdout else ""
    attempts = [line for line in log.splitlines() if "Connect to" in line]
    assert 2 <= len(attempts) <= 10, len(attempts)  # unfiltered: over 100 in these 15 s
    assert "identical lines held back" in log
    assert "Traceback" not in log


async def test_a_missing_events_topic_is_a_503_and_stays_missing(kafka_bootstrap: str) -> None:
    # The launcher's broker, like Kafka's default, creates topics on first use; the
    # producer must not: 202s into a one-partition topic nobody asked for.
    topic = f"never-created-{uuid.uuid4().hex[:8]}"
    publisher = KafkaPublisher(kafka_bootstrap, topic, publish_timeout_ms=2000)
    await publisher.start()
    event = Event.model_validate(
        {
            "event_id": "e1",
            "provider": "fastpix",
            "input_id": "in1",
            "kind": "other",
            "provider_event_type": "x",
            "occurred_at": "2024-01-01T00:00:00.000Z",
            "received_at": "2024-01-01T00:00:00.000Z",
        }
    )
    try:
        with pytest.raises(PublishTimeout):
            await publisher.publish(event)
        assert not await publisher.ready()
    finally:
        await publisher.close()
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert topic not in metadata.topics


def test_a_second_signal_while_serve_stops_still_answers_what_is_in_flight(
    lone_broker: KafkaCluster,
) -> None:
    """Ctrl-C or systemd signals a whole process group: a `--workers` child gets the
    signal and then the supervisor's. The second must not abort the stop."""
    ensure_topics(lone_broker.bootstrap, ["events"], 1, 1)
    [port] = free_ports(1)
    settings = seeds.settings(gjirafa_webhook_token="stop-gjirafa-token")
    env = _lone_serve_env(lone_broker, "stop", publish_timeout_ms=3000)
    with _serve_process(env, port) as server:
        lone_broker.stop_node(0)  # every request now waits its publish timeout
        requests = sample_requests("gjirafa", "in-stop", settings, START_MS)
        answers: list[int | str] = []

        def send(request: Any) -> None:
            asked = urllib.request.Request(
                f"http://127.0.0.1:{port}{request.path}",
                data=request.body,
                headers=dict(request.headers),
                method="POST",
            )
            try:
                with urllib.request.urlopen(asked, timeout=20) as answer:
                    answers.append(answer.status)
            except urllib.error.HTTPError as error:
                answers.append(error.code)
            except OSError as error:  # dropped unanswered
                answers.append(type(error).__name__)

        senders = [threading.Thread(target=send, args=(r,)) for r in requests]
        for sender in senders:
            sender.start()
        time.sleep(1)  # in flight, waiting for an acknowledgement
        server.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        server.send_signal(signal.SIGINT)
        for sender in senders:
            sender.join(30)
        assert server.wait(timeout=30) == 0
    assert answers == [503] * len(requests)
    log = server.stdout.read().decode() if server.stdout else ""
    assert "Traceback" not in log
