"""Writing canonical events to Kafka without ever blocking the event loop.

`produce()` only enqueues (it is called on the loop, in request-arrival order,
so with the idempotent producer the order per key is the arrival order).
librdkafka is polled on the loop itself with a zero timeout, every
millisecond while records are in flight and every 50 ms otherwise (error and
log callbacks); delivery reports then settle the requests' futures on the loop
directly. A request is answered 202 only once that future holds a successful
report (`acks=all`): the record is on every in-sync replica.

Polling on the loop rather than on a thread of its own is deliberate: a
delivery callback needs the GIL, and a poll thread taking it once per record
from the loop serving requests cost more CPU than everything the producer does
per record (measured at saturation; see bench/notes.md).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import Mapping
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from plumbing.clients import writer_config
from schemas.records import Event

__all__ = [
    "Headers",
    "KafkaPublisher",
    "PublishTimeout",
    "Publisher",
    "encode",
    "probe",
    "producer_config",
]

log = logging.getLogger("livewindows.producer.kafka")
# librdkafka's own reports (its log lines and its transient errors), which repeat
# while a broker is unreachable; `serve` holds back repeats of these.
library_log = logging.getLogger("livewindows.producer.librdkafka")

# Seconds between polls of librdkafka on the loop: while records are in flight
# (a delivery report waits at most this long), and otherwise (errors, logs).
BUSY_POLL_S = 0.001
IDLE_POLL_S = 0.05

_Report = tuple[asyncio.Future[None], KafkaError | None]
# A record's headers, as confluent-kafka takes them.
Headers = list[tuple[str, str | bytes | None]]


class PublishTimeout(Exception):
    """The record was not durably written within the publish timeout (→ 503)."""


class Publisher(Protocol):
    """What the HTTP app needs from Kafka; tests substitute an in-memory one."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def publish(self, event: Event, headers: Headers | None = None) -> None:
        """Returns once the broker acknowledged the record (with `headers`)."""

    async def ready(self) -> bool: ...
    @property
    def fatal_error(self) -> str | None:
        """Why the publisher can never publish again (the process must restart), or None."""


def encode(event: Event) -> tuple[bytes, bytes]:
    """(key, value) of an event record: `<provider>:<input_id>` and its JSON."""
    # The fields of `event.model_dump(by_alias=True)`, in the model's order,
    # without pydantic's serializer walking the payload (same bytes).
    value = orjson.dumps(
        {
            "schema": event.schema_,
            "event_id": event.event_id,
            "provider": event.provider,
            "input_id": event.input_id,
            "kind": event.kind,
            "provider_event_type": event.provider_event_type,
            "occurred_at": event.occurred_at,
            "received_at": event.received_at,
            "reconnect_window_s": event.reconnect_window_s,
            "payload": event.payload,
        }
    )
    return event.key.encode("utf-8"), value


def producer_config(bootstrap_servers: str, publish_timeout_ms: int) -> dict[str, Any]:
    """librdkafka settings of the producer; see the comments for each choice."""
    return {
        # librdkafka's own log lines go through `logging`, not straight to stderr.
        **writer_config(bootstrap_servers, library_log),
        # librdkafka stops retrying when the request has stopped waiting: a 503
        # then leaves at most a write already in flight (the processor dedupes it).
        "message.timeout.ms": publish_timeout_ms,
        "request.timeout.ms": min(30_000, publish_timeout_ms),
        # Webhooks arrive one by one; a short linger still batches bursts.
        "linger.ms": 2,
        "client.id": "livewindows-producer",
        # A missing events topic is an error (503, not ready), never created here
        # by a broker that allows it, with its default partition count.
        "allow.auto.create.topics": False,
    }


class KafkaPublisher:
    """An idempotent confluent-kafka producer bridged to asyncio."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        publish_timeout_ms: int,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self._topic = topic
        self._timeout_s = publish_timeout_ms / 1000
        self._config = {
            **producer_config(bootstrap_servers, publish_timeout_ms),
            "error_cb": self._on_error,
            **(overrides or {}),
        }
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False  # the next poll is BUSY_POLL_S away, not IDLE_POLL_S
        # Delivery reports, appended by librdkafka's callbacks (on the loop when
        # polled there, on a worker thread during the flush at close).
        self._reports: collections.deque[_Report] = collections.deque()
        # (deadline on the loop's clock, future) of every record not yet settled,
        # in produce order; one timeout for all, so deadlines are ascending.
        self._in_flight: collections.deque[tuple[float, asyncio.Future[None]]] = collections.deque()
        # A fatal error (e.g. the idempotent producer lost its sequence) makes
        # the producer unusable for good: not ready, every publish a 503, until
        # the process is restarted.
        self.fatal_error: str | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(self._config)
        self._busy = False
        self._timer = self._loop.call_later(IDLE_POLL_S, self._poll)

    async def close(self) -> None:
        """Stops polling, then waits (up to the publish timeout) for queued records."""
        producer, self._producer = self._producer, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if producer is not None:
            left = await asyncio.to_thread(producer.flush, self._timeout_s)
            self._settle()
            self._expire(math.inf)  # nothing will poll for them any more
            if left:
                log.warning("%d record(s) not delivered at shutdown", left)

    async def publish(self, event: Event, headers: Headers | None = None) -> None:
        """Returns once the broker acknowledged the record; raises `PublishTimeout`."""
        producer, loop = self._producer, self._loop
        if producer is None or loop is None:
            raise PublishTimeout("publisher is not running")
        if self.fatal_error is not None:
            raise PublishTimeout(f"producer failed: {self.fatal_error}")
        key, value = encode(event)
        delivered: asyncio.Future[None] = loop.create_future()
        append = self._reports.append

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            append((delivered, error))

        try:
            producer.produce(
                self._topic,
                value=value,
                key=key,
                headers=headers,
                on_delivery=on_delivery,
            )
        except (BufferError, KafkaException) as exc:
            raise PublishTimeout(f"not enqueued: {exc}") from None
        self._in_flight.append((loop.time() + self._timeout_s, delivered))
        if not self._busy:
            self._busy = True
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_later(BUSY_POLL_S, self._poll)
        await delivered

    async def ready(self) -> bool:
        """Whether a broker answers and knows the topic (bounded, off the loop)."""
        producer = self._producer
        if producer is None or self.fatal_error is not None:
            return False
        timeout_s = min(2.0, self._timeout_s)
        return await asyncio.to_thread(_topic_problem, producer, self._topic, timeout_s) is None

    def _on_error(self, error: KafkaError) -> None:
        # librdkafka's error callback (served by poll): transient errors are
        # retried by librdkafka itself; only a fatal one changes what we answer.
        if error.fatal():
            self.fatal_error = error.str()
            log.critical("kafka producer failed for good, restart needed: %s", error.str())
        else:
            library_log.warning("kafka: %s", error.str())

    def _poll(self) -> None:
        """On the loop: serve librdkafka's callbacks without waiting, settle, re-arm."""
        producer, loop = self._producer, self._loop
        self._timer = None
        if producer is None or loop is None:
            return
        try:
            producer.poll(0)
        finally:
            self._settle()
            self._expire(loop.time())
            self._busy = bool(self._in_flight)
            self._timer = loop.call_later(BUSY_POLL_S if self._busy else IDLE_POLL_S, self._poll)

    def _settle(self) -> None:
        """Settle every queued delivery report (on the loop)."""
        reports = self._reports
        while reports:
            delivered, error = reports.popleft()
            if delivered.done():  # the request already timed out or went away
                continue
            if error is None:
                delivered.set_result(None)
            else:
                delivered.set_exception(PublishTimeout(f"delivery failed: {error.str()}"))

    def _expire(self, now: float) -> None:
        """Forget settled records; time out those past their deadline (on the loop)."""
        in_flight = self._in_flight
        while in_flight:
            deadline, delivered = in_flight[0]
            if not delivered.done():
                if deadline > now:
                    return
                delivered.set_exception(
                    PublishTimeout(f"no acknowledgement within {self._timeout_s:g} s")
                )
            in_flight.popleft()


def _topic_problem(client: Producer, topic: str, timeout_s: float) -> str | None:
    # All topics, not `list_topics(topic)`: asking for one topic by name may
    # auto-create it on a broker that allows that.
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        return f"no answer: {exc.args[0].str() if exc.args else exc}"
    found = metadata.topics.get(topic)
    if found is None:
        return f"topic {topic!r} does not exist (run: livewindows topics create)"
    if found.error is not None:
        return f"topic {topic!r}: {found.error.str()}"
    return None


def probe(bootstrap_servers: str, topic: str, timeout_s: float) -> str | None:
    """None when Kafka answers within `timeout_s` and has `topic`, else what is wrong."""
    client = Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "client.id": "livewindows-probe",
            "error_cb": lambda _error: None,  # the returned text says it once
            "log_level": 0,
        }
    )
    try:
        return _topic_problem(client, topic, timeout_s)
    finally:
        client.flush(0)
