"""Cloudflare Stream Live notifications (webhook destination of a live input).

Shape, from Cloudflare's public docs::

    {"name": "...", "text": "...",
     "data": {"notification_name": "Stream Live Input", "input_id": "...",
              "event_type": "live_input.disconnected",
              "updated_at": "2022-01-13T11:43:41.855717910Z"},
     "ts": 1642074233}

`updated_at` carries nanoseconds; `ts` (epoch seconds) is the fallback time.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import Field, PlainValidator

from schemas.providers.common import NonEmptyStr, ProviderModel, Rfc3339, check_rfc3339
from schemas.records import LATEST_OCCURRED_MS

__all__ = ["EVENT_TYPES", "CloudflareData", "CloudflareNotification"]

EVENT_TYPES: Final = (
    "live_input.connected",
    "live_input.disconnected",
    "live_input.errored",
)

# The latest event time whose window can still be written (`records.LATEST_OCCURRED_MS`).
_MAX_EPOCH_S = LATEST_OCCURRED_MS // 1000


def _epoch_or_rfc3339(value: Any) -> int | float | str:
    # One validator rather than a union, so a bad `ts` is one error at `ts`.
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 0 <= value <= _MAX_EPOCH_S:
            return value
        raise ValueError("epoch seconds out of range")
    if isinstance(value, str):
        return check_rfc3339(value)
    raise ValueError("should be epoch seconds or an RFC 3339 time")


EpochSeconds = Annotated[
    int | float | str,
    PlainValidator(_epoch_or_rfc3339, json_schema_input_type=int | float | str),
]


class CloudflareData(ProviderModel):
    notification_name: str | None = None
    input_id: NonEmptyStr = Field(description="the live input; the record key's input id")
    event_type: NonEmptyStr = Field(
        description="live_input.connected | live_input.disconnected | live_input.errored",
        examples=list(EVENT_TYPES),
    )
    updated_at: Rfc3339 | None = Field(
        default=None, description="when the input changed state (nanoseconds, truncated)"
    )


class CloudflareNotification(ProviderModel):
    """A Stream Live Input notification; `data.updated_at` or `ts` must be present."""

    name: str | None = None
    text: str | None = None
    data: CloudflareData
    ts: EpochSeconds | None = Field(
        default=None,
        description="notification time, epoch seconds; used when data.updated_at is absent",
    )
