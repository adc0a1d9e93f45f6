"""An in-memory publisher: the HTTP layer's tests need no Kafka (the integration tests do)."""

from __future__ import annotations

import asyncio

from producer.publisher import Headers, PublishTimeout
from schemas.records import Event


class MemoryPublisher:
    """Records what it is asked to publish; can refuse, stall or report not ready."""

    def __init__(self, *, fail: bool = False, stall_s: float = 0.0, ready: bool = True) -> None:
        self.events: list[Event] = []
        self.headers: list[Headers] = []  # of each published event
        self.fail, self.stall_s, self.is_ready = fail, stall_s, ready
        self.started = self.closed = False
        self.fatal_error: str | None = None

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def publish(self, event: Event, headers: Headers | None = None) -> None:
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        if self.fail:
            raise PublishTimeout("broker down (fake)")
        self.events.append(event)
        self.headers.append(headers or [])

    async def ready(self) -> bool:
        return self.is_ready
