"""The worker's traces: a span per event that arrived with a trace context.

The producer writes its span's W3C context into each event record's headers
(`traceparent`, `plumbing.tracing`). For every record of a batch that carries
one, the runtime opens a `livewindows.process_event` span, a child of that
context (so the producer's and the worker's spans share a trace id), from when
the batch began to when its transaction committed or aborted (an error: the
batch runs again, with new spans). The context is read by the global
propagator (W3C trace context and baggage unless `OTEL_PROPAGATORS` says
otherwise), never parsed here.

Tracing off, the runtime holds no `BatchTracer` and checks that once per batch:
nothing runs per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from processor.runner import Fetched

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["SPAN_NAME", "BatchTracer"]

SPAN_NAME = "livewindows.process_event"
_TRACEPARENT = "traceparent"


class BatchTracer:
    """Spans for the traced records of one batch at a time."""

    def __init__(self, provider: TracerProvider, events_topic: str) -> None:
        # Imported here: a worker with tracing off never loads OpenTelemetry.
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._extract, self._consumer_kind = propagate.extract, SpanKind.CONSUMER
        self._status, self._error = Status, StatusCode.ERROR
        self._tracer = provider.get_tracer("livewindows.processor")
        self._topic = events_topic

    def start(self, partition: int, records: Sequence[Fetched], next_offset: int) -> list[Span]:
        """A started span for each record the runner will take (at or past `next_offset`)
        that carries a `traceparent`."""
        spans = []
        for record in records:
            headers = record.headers
            if (
                headers
                and record.offset >= next_offset
                and any(name == _TRACEPARENT for name, _ in headers)
            ):
                spans.append(self._span(partition, record, headers))
        return spans

    def end(self, spans: Sequence[Span], error: Exception | None = None) -> None:
        """End the batch's spans: stored, or not (`error`, e.g. its transaction aborted)."""
        for span in spans:
            if error is not None:
                span.set_status(self._status(self._error, f"{type(error).__name__}: {error}"))
            span.end()

    def _span(
        self, partition: int, record: Fetched, headers: Sequence[tuple[str, bytes | None]]
    ) -> Span:
        carrier = {
            name: value.decode("latin-1") for name, value in headers if isinstance(value, bytes)
        }
        key = (record.key or b"").decode("utf-8", "replace")
        provider, _, input_id = key.partition(":")
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": self._topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": record.offset,
            "messaging.kafka.message.key": key,
            "livewindows.partition": partition,
            "livewindows.offset": record.offset,
            "livewindows.provider": provider,
            "livewindows.input_id": input_id,
        }
        return self._tracer.start_span(
            SPAN_NAME,
            context=self._extract(carrier),
            kind=self._consumer_kind,
            attributes=attributes,
        )
