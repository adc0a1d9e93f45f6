"""The producer's traces: a server span per request, a producer span per record.

The server span comes from opentelemetry-instrumentation-aiohttp-server's
middleware; it continues the caller's trace when the request has a W3C
`traceparent`. `TracedPublisher` wraps the publisher: a PRODUCER span around
each publish (its error, a 503's, recorded) whose context goes into the Kafka
record's headers, so a consumer can continue the trace. Both exist only when
`plumbing.tracing.configure_tracing` returned a provider; otherwise the app is
built exactly as without tracing.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from opentelemetry.trace import SpanKind

from plumbing.tracing import record_headers
from producer.publisher import Headers, Publisher
from schemas.records import Event

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["TracedPublisher", "server_middleware"]

Middleware = Callable[
    [web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]],
    Awaitable[web.StreamResponse],
]


def server_middleware(provider: TracerProvider) -> Middleware | None:
    """The instrumentation's middleware for one app; None if aiohttp is instrumented already."""
    from opentelemetry.instrumentation.aiohttp_server import (
        AioHttpServerInstrumentor,
        create_aiohttp_middleware,
    )

    instrumentor = AioHttpServerInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        return None  # (`opentelemetry-instrument`): every Application has its middleware
    # instrument() sets what the middleware reads (excluded URLs, its meters) and
    # replaces aiohttp's Application class for every later app; this app takes
    # the middleware itself, so the class is put back at once.
    with warnings.catch_warnings():
        # aiohttp discourages subclassing Application, which instrument() does.
        warnings.simplefilter("ignore", DeprecationWarning)
        instrumentor.instrument(tracer_provider=provider)
    instrumentor.uninstrument()
    middleware: Middleware = create_aiohttp_middleware(tracer_provider=provider)
    return middleware


class TracedPublisher:
    """A `Publisher` that traces each publish and sends the trace along in the headers."""

    def __init__(self, publisher: Publisher, provider: TracerProvider, topic: str) -> None:
        self._publisher = publisher
        self._tracer = provider.get_tracer("livewindows.producer")
        self._topic = topic
        self._span_name = (
            f"{topic} publish"  # the messaging conventions' "{destination} {operation}"
        )

    async def start(self) -> None:
        await self._publisher.start()

    async def close(self) -> None:
        await self._publisher.close()

    async def ready(self) -> bool:
        return await self._publisher.ready()

    @property
    def fatal_error(self) -> str | None:
        return self._publisher.fatal_error

    async def publish(self, event: Event, headers: Headers | None = None) -> None:
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": self._topic,
            "messaging.kafka.message.key": event.key,
            "livewindows.event_id": event.event_id,
            "livewindows.input_id": event.input_id,
            "livewindows.provider": event.provider,
        }
        with self._tracer.start_as_current_span(
            self._span_name, kind=SpanKind.PRODUCER, attributes=attributes
        ):
            await self._publisher.publish(event, [*(headers or ()), *record_headers()])
