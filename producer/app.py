"""The producer's HTTP app (SPEC §2): parse, check, call, answer — no domain logic here.

Every webhook request goes: authenticate (token routes before the body is read;
FastPix on the raw bytes), read at most MAX_BODY_BYTES, parse JSON, normalize
and redact (pure, `producer.normalize`), publish and wait for the broker's
acknowledgement. Nothing is published unless every step before succeeded, and
202 is only sent after the acknowledgement.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from plumbing.logs import Fields
from plumbing.settings import Settings
from producer import auth
from producer.metrics import CONTENT_TYPE, Metrics
from producer.normalize import InvalidPayload, NotJSON, parse_json, to_event
from producer.openapi import openapi_document
from producer.publisher import KafkaPublisher, Publisher, PublishTimeout
from producer.redact import redact
from producer.tracing import TracedPublisher, server_middleware
from schemas.records import Provider

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["CREDENTIALS", "METRICS", "PUBLISHER", "Rejected", "create_app"]

log = logging.getLogger("livewindows.producer.http")

ClockMs = Callable[[], int]  # epoch milliseconds

CREDENTIALS = web.AppKey("credentials", auth.Credentials)
PUBLISHER = web.AppKey("publisher", Publisher)
METRICS = web.AppKey("metrics", Metrics)
_SETTINGS = web.AppKey("settings", Settings)
_CLOCK: web.AppKey[ClockMs] = web.AppKey("clock_ms")
_OPENAPI = web.AppKey("openapi", bytes)
# What the request's log line says beyond method, route and status. A context
# variable (each request runs in its own task) rather than request storage,
# whose typed keys only exist from aiohttp 3.14.
_LOG_FIELDS: ContextVar[dict[str, Any]] = ContextVar("log_fields")

# Seconds a provider should wait after a 503: a broker election or restart.
RETRY_AFTER_S = 5


class Rejected(Exception):
    """An error answer: nothing was published (a 503's write may still land; it is deduped)."""

    def __init__(
        self, status: int, error: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.headers, self.extra = status, error, headers or {}, extra

    def response(self) -> web.Response:
        body = {"error": self.error, **self.extra}
        return _json(body, self.status, self.headers)


def create_app(
    settings: Settings,
    publisher: Publisher | None = None,
    *,
    clock_ms: ClockMs | None = None,
    tracer_provider: TracerProvider | None = None,
) -> web.Application:
    """The producer app; the publisher is started and closed with the app.

    With a `tracer_provider` (`plumbing.tracing.configure_tracing`'s), each request
    gets a server span and each record a producer span and a `traceparent` header.
    """
    middlewares: list[Any] = [_observe]
    if tracer_provider is not None:
        traced = server_middleware(tracer_provider)
        if traced is not None:
            middlewares.insert(0, traced)
    app = web.Application(
        # A guard for any code path that reads the whole body at once;
        # webhook bodies are read in chunks and cut at MAX_BODY_BYTES below.
        client_max_size=settings.max_body_bytes,
        middlewares=middlewares,
    )
    app[_SETTINGS] = settings
    app[CREDENTIALS] = auth.Credentials.from_settings(settings)
    if publisher is None:
        publisher = KafkaPublisher(
            settings.kafka_bootstrap_servers, settings.events_topic, settings.publish_timeout_ms
        )
    if tracer_provider is not None:
        publisher = TracedPublisher(publisher, tracer_provider, settings.events_topic)
    app[PUBLISHER] = publisher
    app[METRICS] = Metrics()
    app[_CLOCK] = clock_ms or _wall_clock_ms
    app[_OPENAPI] = orjson.dumps(openapi_document(settings.max_body_bytes))
    app.cleanup_ctx.append(_publisher_lifetime)
    app.router.add_post("/api/v1/video/events/{token}", _cloudflare, name="cloudflare")
    app.router.add_post("/api/v1/video/fastpix/events", _fastpix, name="fastpix")
    app.router.add_post("/api/v1/video/gjirafa/events/{token}", _gjirafa, name="gjirafa")
    app.router.add_get("/healthz", _healthz, name="healthz")
    app.router.add_get("/readyz", _readyz, name="readyz")
    app.router.add_get("/metrics", _metrics, name="metrics")
    app.router.add_get("/openapi.json", _openapi, name="openapi")
    return app


async def _publisher_lifetime(app: web.Application) -> AsyncIterator[None]:
    publisher = app[PUBLISHER]
    await publisher.start()
    yield
    await publisher.close()


# --- webhook routes -------------------------------------------------------------


async def _cloudflare(request: web.Request) -> web.Response:
    received_ms = _now_ms(request)
    header = request.headers.get("cf-webhook-auth")
    if not auth.cloudflare_ok(request.match_info["token"], header, request.app[CREDENTIALS]):
        raise Rejected(401, "unauthorized")
    return await _ingest(request, "cloudflare", await _read_body(request), received_ms)


async def _fastpix(request: web.Request) -> web.Response:
    received_ms = _now_ms(request)
    body = await _read_body(request)
    signature = request.headers.get("FastPix-Signature")
    if not auth.fastpix_ok(signature, body, request.app[CREDENTIALS]):
        raise Rejected(401, "unauthorized")
    return await _ingest(request, "fastpix", body, received_ms)


async def _gjirafa(request: web.Request) -> web.Response:
    received_ms = _now_ms(request)
    if not auth.gjirafa_ok(request.match_info["token"], request.app[CREDENTIALS]):
        raise Rejected(401, "unauthorized")
    return await _ingest(request, "gjirafa", await _read_body(request), received_ms)


async def _read_body(request: web.Request) -> bytes:
    try:
        return await _read_limited(request, request.app[_SETTINGS].max_body_bytes)
    except web.RequestPayloadError:
        raise Rejected(400, "body could not be read: broken chunking or Content-Encoding") from None


async def _read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    content = request.content
    if content.is_eof():  # the whole body came with the headers (the usual case)
        whole = content.read_nowait()
        if len(whole) > limit:
            raise _too_large(limit)
        return whole
    body = bytearray()
    async for chunk in content.iter_any():
        body += chunk
        if len(body) > limit:  # stop reading: never buffer more than the limit
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> Rejected:
    return Rejected(413, f"body over {limit} bytes")


async def _ingest(
    request: web.Request, provider: Provider, body: bytes, received_ms: int
) -> web.Response:
    metrics, fields = request.app[METRICS], _LOG_FIELDS.get()
    metrics.observe_body_bytes(provider, len(body))
    fields["bytes"] = len(body)
    try:
        document = parse_json(body)
    except NotJSON:
        raise Rejected(400, "body is not JSON") from None
    try:
        event = to_event(provider, document, received_ms)
    except InvalidPayload as exc:
        if log.isEnabledFor(logging.DEBUG):
            fields["payload"] = redact(document)
        raise Rejected(
            422, "payload does not match the provider's schema", fields=exc.errors
        ) from None
    fields.update(
        event_id=event.event_id,
        input_id=event.input_id,
        type=event.provider_event_type,
        kind=event.kind,
    )
    if log.isEnabledFor(logging.DEBUG):
        fields["payload"] = event.payload  # already redacted
    started = time.perf_counter()
    try:
        await request.app[PUBLISHER].publish(event)
    except PublishTimeout as exc:
        fields["publish_error"] = str(exc)
        raise Rejected(
            503,
            "event not durably written; retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    finally:
        metrics.observe_publish_seconds(provider, time.perf_counter() - started)
    return _json({"status": "accepted", "event_id": event.event_id}, 202)


# --- operational routes ---------------------------------------------------------


async def _healthz(request: web.Request) -> web.Response:
    # Liveness: after a fatal producer error only a restart helps, so say so.
    fatal = request.app[PUBLISHER].fatal_error
    if fatal is not None:
        return _json({"status": "failed", "error": f"kafka producer failed: {fatal}"}, 503)
    return _json({"status": "ok"}, 200)


async def _readyz(request: web.Request) -> web.Response:
    if await request.app[PUBLISHER].ready():
        return _json({"status": "ready"}, 200)
    raise Rejected(503, "kafka unavailable", headers={"Retry-After": str(RETRY_AFTER_S)})


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[_OPENAPI], content_type="application/json")


# --- every request --------------------------------------------------------------

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _observe(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Errors as JSON, one metric and one log line per request, never a secret.

    The line is at DEBUG for answers below 400 (the metrics count every request)
    and at WARNING for the others. It names the route pattern, never the path:
    a path may carry a token.
    """
    started = time.perf_counter()
    fields: dict[str, Any] = {}
    _LOG_FIELDS.set(fields)
    response: web.StreamResponse
    try:
        response = await handler(request)
    except Rejected as rejected:
        response = rejected.response()
        fields["error"] = rejected.error
    except web.HTTPException as exc:  # aiohttp's own: 404, 405, 413 ...
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        response = _json({"error": exc.reason.lower()}, exc.status, headers)
        fields["error"] = exc.reason.lower()
    except Exception:
        log.exception("unexpected error")
        response = _json({"error": "internal error"}, 500)
    route = request.match_info.route
    name = route.name or ""
    provider = name if name in ("cloudflare", "fastpix", "gjirafa") else "none"
    status = response.status
    request.app[METRICS].count_request(provider, status)
    # Accepted requests are counted by the metrics; their line is for debugging.
    level = logging.DEBUG if status < 400 else logging.WARNING
    if log.isEnabledFor(level):
        line = {
            "method": request.method,
            "route": route.resource.canonical if route.resource is not None else "unmatched",
            "status": status,
            "duration_ms": math.floor((time.perf_counter() - started) * 1e5) / 100,
            "provider": provider,
            **fields,
        }
        log.log(level, Fields("request", line))
    return response


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _now_ms(request: web.Request) -> int:
    now: int = request.app[_CLOCK]()
    return now


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )
