"""Window records for billing tests, built like the processor builds them (SPEC §4)."""

from __future__ import annotations

import hashlib

import orjson

from schemas.records import Window
from schemas.timestamps import format_ms

T0 = 1_642_074_221_855  # 2022-01-13T11:43:41.855Z


def window_id(provider: str, input_id: str, opening_event_id: str) -> str:
    return hashlib.sha256(f"{provider}:{input_id}:{opening_event_id}".encode()).hexdigest()[:32]


def opened(
    opening_event_id: str,
    input_id: str = "in1",
    opened_ms: int = T0,
    provider: str = "cloudflare",
    open_reason: str = "disconnected",
) -> Window:
    return Window.model_validate(
        {
            "schema": "livewindows/window/v1",
            "type": "window.opened",
            "window_id": window_id(provider, input_id, opening_event_id),
            "provider": provider,
            "input_id": input_id,
            "opened_at": format_ms(opened_ms),
            "open_reason": open_reason,
            "opening_event_id": opening_event_id,
        }
    )


def closed(
    opening_event_id: str,
    duration_ms: int,
    input_id: str = "in1",
    opened_ms: int = T0,
    provider: str = "cloudflare",
    open_reason: str = "disconnected",
    close_reason: str = "reconnected",
) -> Window:
    """The close of `opened(opening_event_id, ...)` after `duration_ms`."""
    timed_out = close_reason == "timed_out"
    return opened(opening_event_id, input_id, opened_ms, provider, open_reason).model_copy(
        update={
            "type": "window.closed",
            "closed_at": format_ms(opened_ms + duration_ms),
            "duration_ms": duration_ms,
            "close_reason": close_reason,
            "closing_event_id": None if timed_out else f"{opening_event_id}-close",
        }
    )


def encode(window: Window) -> bytes:
    """The record value as the processor writes it."""
    return orjson.dumps(window.model_dump(mode="json", by_alias=True))
