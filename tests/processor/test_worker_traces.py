"""One trace from the webhook to the worker: the producer's spans and the worker's share it.

The producer runs in this process (aiohttp's test client, the real Kafka
publisher, spans kept in memory); the worker runs as `livewindows worker`,
either engine, as an operator runs it, exporting OTLP/HTTP to a collector this
test serves. An in-process worker would need an engine that runs off the main
thread (both install signal handlers; Faust runs its own event loop and
worker), and would skip the path that matters in production: `OTEL_*` read by
`configure_tracing` in the worker command.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from processor.tracing import SPAN_NAME
from tests.kafkakit import read_all, reconnect_window_headers
from tests.processor.workerkit import Topics, Worker, new_app_id, new_topics
from tests.producer import seeds
from tests.producer.test_app import CF_HEADERS, CF_PATH, body_of
from tests.producer.test_tracing import Traced, traced  # noqa: F401 (a fixture)
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka


@dataclass(frozen=True)
class Exported:
    """A span as the worker exported it over OTLP."""

    service: str
    name: str
    trace_id: int
    span_id: int
    parent_span_id: int
    attributes: dict[str, Any]


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP (protobuf) trace receiver on a loopback port."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.spans: list[Exported] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Receive(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.server.spans.append(
                        Exported(
                            resource.get("service.name", ""),
                            span.name,
                            int.from_bytes(span.trace_id, "big"),
                            int.from_bytes(span.span_id, "big"),
                            int.from_bytes(span.parent_span_id, "big"),
                            {a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Sent:
    topics: Topics
    producer_spans: list[ReadableSpan]  # of the disconnect (offset 0), then the reconnect
    worker: Worker


# A disconnect, and the reconnect half a second later that closes its window.
WEBHOOKS = (
    ("live_input.disconnected", "2022-01-13T11:43:41.855717910Z"),
    ("live_input.connected", "2022-01-13T11:43:42.355000000Z"),
)


@pytest.fixture
async def sent(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    start_worker: Callable[..., Worker],
    traced: Traced,  # noqa: F811
    collector: Collector,
    tmp_path: Path,
) -> Sent:
    """Signed Cloudflare webhooks through the traced producer, then a traced worker."""
    topics = new_topics(make_topics, partitions=1)
    settings = seeds.settings(kafka_bootstrap_servers=kafka_bootstrap, events_topic=topics.events)
    client, exporter = await traced(settings)  # the real KafkaPublisher
    for event_type, updated_at in WEBHOOKS:
        body = body_of(seeds.cloudflare(event_type, updated_at))
        response = await client.post(CF_PATH, data=body, headers=CF_HEADERS)
        assert response.status == 202, await response.text()
    producer_spans = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    assert len(producer_spans) == len(WEBHOOKS)
    worker = start_worker(
        topics,
        new_app_id(),
        tmp_path / "data",
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "",  # the default: livewindows-worker
        },
    )
    return Sent(topics, producer_spans, worker)


def test_the_worker_continues_the_trace_of_each_webhook(sent: Sent, collector: Collector) -> None:
    def worker_spans() -> list[Exported]:
        return [span for span in collector.spans if span.name == SPAN_NAME]

    wait_until(
        lambda: len(worker_spans()) == len(WEBHOOKS),
        90,
        f"the worker's spans at the collector (worker log: {sent.worker.log_path})",
    )
    assert sent.worker.stop() == 0
    spans = sorted(worker_spans(), key=lambda span: span.attributes["livewindows.offset"])
    for offset, (span, producer) in enumerate(zip(spans, sent.producer_spans, strict=True)):
        assert span.trace_id == producer.context.trace_id  # one trace, webhook to worker
        assert span.parent_span_id == producer.context.span_id
        assert span.service == "livewindows-worker"
        assert span.attributes["livewindows.input_id"] == seeds.CF_INPUT
        assert span.attributes["livewindows.partition"] == 0
        assert span.attributes["livewindows.offset"] == offset
        assert span.attributes["messaging.destination.name"] == sent.topics.events
    assert spans[0].trace_id != spans[1].trace_id  # two webhooks, two traces


def test_the_window_records_name_the_events_that_caused_them(
    sent: Sent, kafka_bootstrap: str
) -> None:
    """window.opened carries its opening event's `traceparent` header; window.closed
    its closing event's, and the opening one's as `livewindows-opening-traceparent`.

    The runner writes those headers (another branch): until it is merged, the
    assertions on the window records' headers fail; those before them hold here.
    """
    wait_until(
        lambda: len(read_all(kafka_bootstrap, sent.topics.windows)) == 2,
        90,
        f"the window.opened and window.closed records (worker log: {sent.worker.log_path})",
    )
    assert sent.worker.stop() == 0
    disconnect, reconnect = read_all(kafka_bootstrap, sent.topics.events)[:2]  # then ticks
    opening, closing = (
        dict(disconnect.headers)["traceparent"],
        dict(reconnect.headers)["traceparent"],
    )
    assert opening is not None and closing is not None
    for event_traceparent, producer in zip((opening, closing), sent.producer_spans, strict=True):
        assert f"-{producer.context.trace_id:032x}-".encode() in event_traceparent
    opened, closed = reconnect_window_headers(kafka_bootstrap, sent.topics.windows)
    # Fails until the runner's headers are merged:
    assert opened.get("traceparent") == opening
    assert closed.get("traceparent") == closing
    assert closed.get("livewindows-opening-traceparent") == opening
