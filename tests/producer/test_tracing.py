"""OpenTelemetry on the producer: a trace per webhook, carried into the Kafka record."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from plumbing.settings import Settings
from plumbing.tracing import tracer_provider
from producer.app import create_app
from producer.sample_webhooks import sample_requests
from producer.server import RUNNER_OPTIONS
from tests.kafkakit import read_all
from tests.producer import seeds
from tests.producer.conftest import RECEIVED_MS
from tests.producer.fakes import MemoryPublisher
from tests.producer.test_app import CF_HEADERS, CF_PATH, body_of

ROOT = Path(__file__).resolve().parents[2]
# A caller's trace context (the W3C spec's example).
CALLER_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{CALLER_TRACE_ID:032x}-{CALLER_SPAN_ID:016x}-01"

Traced = Callable[..., Awaitable[tuple[TestClient[Any, Any], InMemorySpanExporter]]]


@pytest.fixture
async def traced() -> AsyncIterator[Traced]:
    """`await traced(settings, publisher)`: a client of an app traced into memory."""
    clients: list[TestClient[Any, Any]] = []

    async def start(
        settings: Settings, publisher: Any = None
    ) -> tuple[TestClient[Any, Any], InMemorySpanExporter]:
        exporter = InMemorySpanExporter()
        provider = tracer_provider(exporter, service_name="livewindows-producer", batch=False)
        app = create_app(
            settings, publisher, clock_ms=lambda: RECEIVED_MS, tracer_provider=provider
        )
        server = TestServer(app)
        await server.start_server(**RUNNER_OPTIONS)
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client, exporter

    yield start
    for client in clients:
        await client.close()


def _traceparent(headers: list[tuple[str, Any]]) -> tuple[int, int]:
    """(trace id, parent span id) of a record's `traceparent` header."""
    values = [value for name, value in headers if name == "traceparent"]
    assert len(values) == 1, headers
    value = values[0].decode() if isinstance(value := values[0], bytes) else value
    version, trace_id, span_id, _flags = value.split("-")
    assert version == "00"
    return int(trace_id, 16), int(span_id, 16)


def _only(spans: list[ReadableSpan], kind: SpanKind) -> ReadableSpan:
    found = [span for span in spans if span.kind == kind]
    assert len(found) == 1, spans
    return found[0]


async def test_a_webhook_continues_the_callers_trace_into_the_record_headers(
    traced: Traced,
) -> None:
    publisher = MemoryPublisher()
    client, exporter = await traced(seeds.settings(), publisher)
    body = body_of(seeds.cloudflare("live_input.connected"))
    response = await client.post(
        CF_PATH, data=body, headers={**CF_HEADERS, "traceparent": TRACEPARENT}
    )
    assert response.status == 202
    spans = list(exporter.get_finished_spans())
    server, producer = _only(spans, SpanKind.SERVER), _only(spans, SpanKind.PRODUCER)
    assert server.context.trace_id == CALLER_TRACE_ID
    assert server.parent is not None and server.parent.span_id == CALLER_SPAN_ID
    assert producer.parent is not None and producer.parent.span_id == server.context.span_id
    assert producer.name == f"{seeds.settings().events_topic} publish"
    event = publisher.events[0]
    assert producer.attributes is not None
    assert producer.attributes["livewindows.event_id"] == event.event_id
    assert producer.attributes["messaging.kafka.message.key"] == event.key
    # The record names the producer span as the parent of whoever consumes it.
    assert _traceparent(publisher.headers[0]) == (CALLER_TRACE_ID, producer.context.span_id)
    assert server.resource.attributes["service.name"] == "livewindows-producer"


async def test_a_webhook_without_a_traceparent_starts_a_trace(traced: Traced) -> None:
    publisher = MemoryPublisher()
    client, exporter = await traced(seeds.settings(), publisher)
    body = body_of(seeds.cloudflare("live_input.disconnected"))
    assert (await client.post(CF_PATH, data=body, headers=CF_HEADERS)).status == 202
    spans = list(exporter.get_finished_spans())
    server, producer = _only(spans, SpanKind.SERVER), _only(spans, SpanKind.PRODUCER)
    assert server.parent is None
    assert _traceparent(publisher.headers[0]) == (
        server.context.trace_id,
        producer.context.span_id,
    )


async def test_no_span_carries_a_webhook_token(traced: Traced) -> None:
    """The Cloudflare and Gjirafa paths hold their tokens: spans name the route instead."""
    client, exporter = await traced(seeds.settings(), MemoryPublisher())
    body = body_of(seeds.cloudflare("live_input.connected"))
    await client.post(CF_PATH, data=body, headers=CF_HEADERS)
    await client.post(CF_PATH + "?x=1", data=body, headers={"cf-webhook-auth": "wrong"})
    await client.post("/api/v1/video/gjirafa/events/gj-token-old/not-a-route", data=b"{}")
    spans = list(exporter.get_finished_spans())
    assert len([span for span in spans if span.kind == SpanKind.SERVER]) == 3
    for span in spans:
        text = repr((span.name, dict(span.attributes or {}), span.events))
        for secret in ("cf-token-new", "cf-header-new", "gj-token-old"):
            assert secret not in text
    server = _only(spans[:2], SpanKind.SERVER)  # the first request's
    assert server.name == "POST /api/v1/video/events/{token}"


async def test_a_503_is_an_error_on_the_producer_span(traced: Traced) -> None:
    client, exporter = await traced(seeds.settings(), MemoryPublisher(fail=True))
    body = body_of(seeds.cloudflare("live_input.connected"))
    assert (await client.post(CF_PATH, data=body, headers=CF_HEADERS)).status == 503
    producer = _only(list(exporter.get_finished_spans()), SpanKind.PRODUCER)
    assert not producer.status.is_ok
    assert [event.name for event in producer.events] == ["exception"]


@pytest.mark.kafka
async def test_the_event_record_in_kafka_carries_the_spans_traceparent(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]], traced: Traced
) -> None:
    [topic] = make_topics("producer-traced", partitions=1)
    settings = seeds.settings(kafka_bootstrap_servers=kafka_bootstrap, events_topic=topic)
    client, exporter = await traced(settings)  # the real KafkaPublisher
    [request, *_] = sample_requests("gjirafa", "traced-in", settings, RECEIVED_MS)
    response = await client.post(
        request.path, data=request.body, headers={**request.headers, "traceparent": TRACEPARENT}
    )
    assert response.status == 202, await response.text()
    [record] = read_all(kafka_bootstrap, topic)
    producer = _only(list(exporter.get_finished_spans()), SpanKind.PRODUCER)
    assert _traceparent(record.headers) == (CALLER_TRACE_ID, producer.context.span_id)


def _configure_in_a_process(env: dict[str, str]) -> str:
    """What `configure_tracing` makes of `env` in a fresh process (a provider is global)."""
    code = (
        "from plumbing.tracing import configure_tracing\n"
        "provider = configure_tracing('livewindows-producer')\n"
        "name = provider and provider.resource.attributes['service.name']\n"
        "print('off' if provider is None else f'{name} {provider.sampler.get_description()}')\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_tracing_is_off_unless_an_otlp_endpoint_is_configured() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert _configure_in_a_process({}) == "off"
    assert _configure_in_a_process({**endpoint, "OTEL_SDK_DISABLED": "true"}) == "off"
    assert _configure_in_a_process({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) == "off"
    assert _configure_in_a_process(endpoint).startswith("livewindows-producer ParentBased")


def test_the_service_name_and_sampler_come_from_the_standard_variables() -> None:
    configured = _configure_in_a_process(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces",
            "OTEL_SERVICE_NAME": "ingest-eu",
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
        }
    )
    assert configured == "ingest-eu TraceIdRatioBased{0.25}"
