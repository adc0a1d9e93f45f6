"""Provider webhook → canonical `Event` (SPEC §3, §4): pure, no I/O, no clock.

The kind tables below are SPEC §3 written as data. Invariants:
- `occurred_at` and `received_at` are in the contract's form, finer digits truncated;
- `event_id` is FastPix's top-level `id` when present (never `webhookId`), else
  sha256(`provider|input_id|provider_event_type|occurred_at`)[:32], so a
  provider's retry of the same event gets the same id;
- `payload` is the provider's JSON with credentials redacted;
- an unknown event type of a known provider is kind `other`, never an error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from producer.redact import redacted_and_depth
from schemas.providers import fastpix, gjirafa
from schemas.providers.cloudflare import CloudflareNotification
from schemas.providers.fastpix import FastPixLiveStreamEvent, FastPixSimulcastTargetEvent
from schemas.providers.gjirafa import GjirafaEvent
from schemas.records import Event, Kind, Provider
from schemas.timestamps import format_ms, normalize

__all__ = [
    "CLOUDFLARE_KINDS",
    "FASTPIX_KINDS",
    "GJIRAFA_KINDS",
    "GJIRAFA_STATUS_KINDS",
    "MAX_DEPTH",
    "FieldError",
    "InvalidPayload",
    "NotJSON",
    "derived_event_id",
    "parse_json",
    "to_event",
]

CLOUDFLARE_KINDS: Final[dict[str, Kind]] = {
    "live_input.connected": "connected",
    "live_input.disconnected": "disconnected",
    "live_input.errored": "errored",
}
FASTPIX_KINDS: Final[dict[str, Kind]] = {
    "video.live_stream.connected": "connected",
    "video.live_stream.active": "connected",
    "video.live_stream.disconnected": "disconnected",
    "video.live_stream.idle": "ended",
    "video.live_stream.disabled": "ended",
    "video.live_stream.deleted": "ended",
    # created, recording, updated, enabled, simulcast_target.*: other
}
GJIRAFA_KINDS: Final[dict[str, Kind]] = {
    "live.video.started": "connected",
    "live.video.stopped": "ended",
    "live.video.deleted": "ended",
    # created, updated, thumbnail.changed: other; status.changed: by data.Status
}
GJIRAFA_STATUS_KINDS: Final[dict[str, Kind]] = {
    "live": "connected",
    "interrupted": "disconnected",
    "offline": "ended",
    # Processing and any other status: other
}

# Provider payloads are three levels deep; a far deeper body is not a webhook,
# and could not be serialized into a record anyway (orjson stops at 255).
MAX_DEPTH: Final = 64

FieldError = dict[str, str]


class NotJSON(ValueError):
    """The body is not a JSON document (→ 400)."""


class InvalidPayload(ValueError):
    """JSON that the provider's schema rejects (→ 422); `errors` names each field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def derived_event_id(provider: str, input_id: str, event_type: str, occurred_at: str) -> str:
    """The event id of a provider that sends none: stable across its retries."""
    text = f"{provider}|{input_id}|{event_type}|{occurred_at}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def parse_json(body: bytes) -> Any:
    """The JSON document of a body; raises `NotJSON`."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotJSON(f"body is not JSON: {exc}") from None


def to_event(provider: Provider, document: Any, received_at_ms: int) -> Event:
    """The canonical event of one webhook; raises `InvalidPayload` listing failing fields."""
    payload, depth = redacted_and_depth(document)
    if depth > MAX_DEPTH:
        raise InvalidPayload([{"field": "body", "message": f"nested deeper than {MAX_DEPTH}"}])
    fields = _MAPPERS[provider](document)
    input_id, event_type, kind, occurred_at, own_id, reconnect_window_s = fields
    return Event(
        schema="livewindows/event/v1",
        event_id=own_id or derived_event_id(provider, input_id, event_type, occurred_at),
        provider=provider,
        input_id=input_id,
        kind=kind,
        provider_event_type=event_type,
        occurred_at=occurred_at,
        received_at=format_ms(received_at_ms),
        reconnect_window_s=reconnect_window_s,
        payload=payload,
    )


# (input_id, provider_event_type, kind, occurred_at, own event id, reconnect_window_s)
_Fields = tuple[str, str, Kind, str, str | None, int | None]


def _cloudflare(document: Any) -> _Fields:
    event = _validate(CloudflareNotification, document)
    data = event.data
    if data.updated_at is not None:
        occurred_at = normalize(data.updated_at)
    elif isinstance(event.ts, str):
        occurred_at = normalize(event.ts)
    elif event.ts is not None:
        # Through the decimal text, so 1642074233.855 is .855 and not .854999...
        occurred_at = format_ms(int(Decimal(repr(event.ts)) * 1000))
    else:
        raise InvalidPayload([{"field": "data.updated_at", "message": "Field required (or ts)"}])
    kind = CLOUDFLARE_KINDS.get(data.event_type, "other")
    return data.input_id, data.event_type, kind, occurred_at, None, None


def _fastpix(document: Any) -> _Fields:
    event_type = document.get("type") if isinstance(document, dict) else None
    if isinstance(event_type, str) and fastpix.is_simulcast_target(event_type):
        target = _validate(FastPixSimulcastTargetEvent, document)
        input_id, reconnect_window_s = target.data.livestreamId, None
        occurred_at, own_id, event_type = target.created_at, target.id, target.type
    else:
        stream = _validate(FastPixLiveStreamEvent, document)
        input_id, reconnect_window_s = stream.object.id, stream.data.reconnectWindow
        occurred_at, own_id, event_type = stream.created_at, stream.id, stream.type
    kind = FASTPIX_KINDS.get(event_type, "other")
    return input_id, event_type, kind, normalize(occurred_at), own_id, reconnect_window_s


def _gjirafa(document: Any) -> _Fields:
    event = _validate(GjirafaEvent, document)
    event_type = event.eventType
    if event_type == gjirafa.STATUS_CHANGED:
        if event.data.Status is None:
            raise InvalidPayload([{"field": "data.Status", "message": "Field required"}])
        kind = GJIRAFA_STATUS_KINDS.get(event.data.Status.strip().casefold(), "other")
    else:
        kind = GJIRAFA_KINDS.get(event_type, "other")
    occurred_at = normalize(event.eventTime)
    return event.data.input_id, event_type, kind, occurred_at, None, None


_MAPPERS: Final[dict[str, Callable[[Any], _Fields]]] = {
    "cloudflare": _cloudflare,
    "fastpix": _fastpix,
    "gjirafa": _gjirafa,
}


M = TypeVar("M", bound=BaseModel)


def _validate(model: type[M], document: Any) -> M:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise InvalidPayload(
            [
                {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
                for e in exc.errors(include_url=False)
            ]
        ) from None
