"""The Kafka records of the contract (SPEC §4), as pydantic models.

These are the only types that cross a process boundary: the producer writes
`Event`, the processor writes `Tick` and `Window`, billing consumers read `Window`.
JSON Schema files under `schemas/json/` are generated from these models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.timestamps import parse_ms

EVENT_SCHEMA = "livewindows/event/v1"
TICK_SCHEMA = "livewindows/tick/v1"
WINDOW_SCHEMA = "livewindows/window/v1"
TICK_KEY = "__tick__"

Provider = Literal["cloudflare", "fastpix", "gjirafa"]
Kind = Literal["connected", "disconnected", "errored", "ended", "other"]
WindowType = Literal["window.opened", "window.closed"]
OpenReason = Literal["disconnected", "errored"]
CloseReason = Literal["reconnected", "ended", "timed_out"]

# RFC 3339 UTC with exactly three fractional digits, e.g. 2022-01-13T11:43:41.855Z
Timestamp = Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# Bounds that keep every window writable: a time-out closes at opened_at plus the
# reconnect window, and that must still be a time of a four-digit year. Beyond
# them an event is refused (422 at the producer, the DLQ at the worker) rather
# than become a window record nobody can write: a poison record.
MAX_RECONNECT_WINDOW_S = 365 * 24 * 3600
LATEST_OCCURRED_MS = parse_ms("9999-12-31T23:59:59.999Z") - MAX_RECONNECT_WINDOW_S * 1000


class Event(BaseModel):
    """A provider webhook in canonical form, keyed `<provider>:<input_id>`."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, json_schema_serialization_defaults_required=True
    )

    schema_: Literal["livewindows/event/v1"] = Field("livewindows/event/v1", alias="schema")
    event_id: str = Field(min_length=1)
    provider: Provider
    input_id: str = Field(min_length=1)
    kind: Kind
    provider_event_type: str
    occurred_at: str = Timestamp
    received_at: str = Timestamp
    reconnect_window_s: int | None = Field(default=None, ge=0, le=MAX_RECONNECT_WINDOW_S)
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _closable(cls, occurred_at: str) -> str:
        check_occurred_ms(parse_ms(occurred_at))
        return occurred_at

    @property
    def key(self) -> str:
        return input_key(self.provider, self.input_id)


class Tick(BaseModel):
    """Wall-clock time carried into every partition of the events topic."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, json_schema_serialization_defaults_required=True
    )

    schema_: Literal["livewindows/tick/v1"] = Field("livewindows/tick/v1", alias="schema")
    received_at: str = Timestamp


class Window(BaseModel):
    """A `window.opened` or `window.closed` record; consumers dedupe by `window_id`."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, json_schema_serialization_defaults_required=True
    )

    schema_: Literal["livewindows/window/v1"] = Field("livewindows/window/v1", alias="schema")
    type: WindowType
    window_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    provider: Provider
    input_id: str
    opened_at: str = Timestamp
    closed_at: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
    )
    duration_ms: int | None = Field(default=None, ge=0)
    open_reason: OpenReason
    close_reason: CloseReason | None = None
    opening_event_id: str
    closing_event_id: str | None = None


def check_occurred_ms(occurred_ms: int) -> None:
    """ValueError for an event time so late that its window could not be written."""
    if occurred_ms > LATEST_OCCURRED_MS:
        raise ValueError("later than any time a window of it could close (year 9999)")


def input_key(provider: str, input_id: str) -> str:
    """The Kafka key of an input's records: `<provider>:<input_id>`."""
    return f"{provider}:{input_id}"
