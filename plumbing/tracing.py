"""OpenTelemetry tracing, off unless the standard `OTEL_*` variables turn it on.

`configure_tracing` installs the SDK's tracer provider, exporting OTLP over
HTTP/protobuf, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, unless `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none`. Everything else is the SDK's own reading of the
environment: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (the service name
defaults to the command's), `OTEL_TRACES_SAMPLER` and `_ARG`, the exporter's
headers and timeouts, `OTEL_BSP_*`. Not configured, it imports no SDK and
returns None: a caller then adds no middleware and no header, so tracing costs
nothing per request.

A trace crosses Kafka as W3C trace context in record headers (`traceparent`,
and `tracestate`/`baggage` when there are any): `record_headers` gives them for
the current span.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["configure_tracing", "record_headers", "tracer_provider"]

# Span attributes that hold a request's path or URL. livewindows' paths carry
# webhook tokens (`/api/v1/video/events/{token}`), so these hold the route
# pattern instead, as the access log does.
_URL_ATTRIBUTES = ("http.target", "http.url", "url.path", "url.full")


def configure_tracing(service_name: str) -> TracerProvider | None:
    """The process's tracer provider if `OTEL_*` ask for one (then global), else None."""
    if not _configured():
        return None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = tracer_provider(OTLPSpanExporter(), service_name=service_name)
    trace.set_tracer_provider(provider)
    return provider


def tracer_provider(
    exporter: SpanExporter, *, service_name: str, batch: bool = True
) -> TracerProvider:
    """A provider exporting to `exporter`, URL attributes redacted; `batch=False` for tests."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    class RouteNotPath(SpanProcessor):
        """Puts the route pattern where an instrumentation recorded a path or URL."""

        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            attributes = span.attributes or {}
            route = str(attributes.get("http.route") or "[redacted]")
            for name in _URL_ATTRIBUTES:
                if name in attributes:
                    span.set_attribute(name, route)

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(RouteNotPath())  # before the exporter's: it sees them redacted
    provider.add_span_processor(
        BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    )
    return provider


def record_headers() -> list[tuple[str, str | bytes | None]]:
    """Kafka record headers carrying the current trace context (none outside a span)."""
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(name, value.encode()) for name, value in carrier.items()]


def _configured() -> bool:
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
