"""The worker continues an event's trace: one span per traced event, in the runtime (no broker)."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from plumbing.tracing import tracer_provider
from processor.runner import Fetched
from processor.runtime import Runtime
from processor.tracing import SPAN_NAME, BatchTracer
from processor.windows import Config
from tests.kafkakit import event_value, tick_value
from tests.processor.fakes import FakeKafka

T = 1_790_000_000_000
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PRODUCER_SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{PRODUCER_SPAN_ID:016x}-01".encode()


def traced_runtime(kafka: FakeKafka) -> tuple[Runtime, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = tracer_provider(exporter, service_name="livewindows-worker", batch=False)
    runtime = Runtime(
        Config(1000, 5), "events", kafka, kafka, kafka, BatchTracer(provider, "events")
    )
    runtime.assign([0, 1])
    return runtime, exporter


def records() -> list[Fetched]:
    key, value = event_value("e1", "disconnected", T, input_id="studio-1")
    tick_key, tick = tick_value(T + 2000)
    return [
        Fetched(0, key, value, 0, [("traceparent", TRACEPARENT), ("other", b"x")]),
        Fetched(1, b"cloudflare:in2", b"{not json", 0, None),  # no context: no span
        Fetched(2, tick_key, tick, 0, None),
    ]


def test_a_traced_event_gets_a_child_span_of_the_producers() -> None:
    runtime, exporter = traced_runtime(FakeKafka())
    assert runtime.handle({1: records()}) is None
    [span] = exporter.get_finished_spans()
    assert span.name == SPAN_NAME and span.kind == SpanKind.CONSUMER
    assert span.context.trace_id == TRACE_ID
    assert span.parent is not None and span.parent.span_id == PRODUCER_SPAN_ID
    assert span.parent.is_remote
    assert dict(span.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": "events",
        "messaging.destination.partition.id": "1",
        "messaging.kafka.offset": 0,
        "messaging.kafka.message.key": "cloudflare:studio-1",
        "livewindows.partition": 1,
        "livewindows.offset": 0,
        "livewindows.provider": "cloudflare",
        "livewindows.input_id": "studio-1",
    }
    assert span.status.status_code == StatusCode.UNSET
    assert span.resource.attributes["service.name"] == "livewindows-worker"


def test_an_aborted_batch_is_an_error_span_and_its_rerun_a_new_span() -> None:
    kafka = FakeKafka(aborts_to_come=1)
    runtime, exporter = traced_runtime(kafka)
    rewind = runtime.handle({0: records()})
    assert rewind is not None and rewind.offsets == {0: 0, 1: 0}
    assert runtime.handle({0: records()}) is None
    aborted, stored = exporter.get_finished_spans()
    assert aborted.status.status_code == StatusCode.ERROR
    assert "Aborted" in (aborted.status.description or "")
    assert stored.status.status_code == StatusCode.UNSET
    assert aborted.context.span_id != stored.context.span_id
    assert aborted.context.trace_id == stored.context.trace_id == TRACE_ID


def test_records_already_done_are_not_traced_again() -> None:
    runtime, exporter = traced_runtime(FakeKafka())
    runtime.handle({0: records()})
    runtime.handle({0: records()})  # a redelivery: below the position
    assert len(exporter.get_finished_spans()) == 1
