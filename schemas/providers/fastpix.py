"""FastPix live stream webhooks (`video.live_stream.*`), simulcast targets included.

Every event has the envelope `type`, `webhookId`, `object {name, id}`,
`environment`, `data`, `created_at`, `attempts`, `accessor_source`, `accessor`.
Live stream events carry the stream in `data` (with `streamKey`, a credential,
and `reconnectWindow` in seconds); simulcast target events carry the target
(`simulcastId`, `livestreamId`, `rtmpUrl` whose last path segment is a key,
`streamKey`). The input id is `object.id`, or `data.livestreamId` for simulcast
target events. `webhookId` may name the webhook rather than the event, so only a
top-level `id` is ever used as the event id.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import Field, StrictInt

from schemas.providers.common import NonEmptyStr, ProviderModel, Rfc3339
from schemas.records import MAX_RECONNECT_WINDOW_S

__all__ = [
    "LIVE_STREAM_TYPES",
    "SIMULCAST_TARGET_PREFIX",
    "SIMULCAST_TARGET_TYPES",
    "FastPixLiveStreamData",
    "FastPixLiveStreamEvent",
    "FastPixObject",
    "FastPixSimulcastTargetData",
    "FastPixSimulcastTargetEvent",
    "is_simulcast_target",
]

LIVE_STREAM_TYPES: Final = (
    "video.live_stream.created",
    "video.live_stream.connected",
    "video.live_stream.recording",
    "video.live_stream.active",
    "video.live_stream.disconnected",
    "video.live_stream.idle",
    "video.live_stream.updated",
    "video.live_stream.enabled",
    "video.live_stream.disabled",
    "video.live_stream.deleted",
)
SIMULCAST_TARGET_PREFIX: Final = "video.live_stream.simulcast_target."
SIMULCAST_TARGET_TYPES: Final = (
    "video.live_stream.simulcast_target.created",
    "video.live_stream.simulcast_target.starting",
    "video.live_stream.simulcast_target.broadcasting",
    "video.live_stream.simulcast_target.deleted",
)

_SECRET = 'a credential: replaced by "[redacted]" before anything is published or logged'


def is_simulcast_target(event_type: str) -> bool:
    """Simulcast target events name their stream in `data.livestreamId`, not `object.id`."""
    return event_type.startswith(SIMULCAST_TARGET_PREFIX)


class FastPixObject(ProviderModel):
    name: str | None = Field(default=None, description='e.g. "live"')
    id: NonEmptyStr = Field(description="the live stream; the record key's input id")


class FastPixLiveStreamData(ProviderModel):
    reconnectWindow: StrictInt | None = Field(
        default=None,
        ge=0,
        le=MAX_RECONNECT_WINDOW_S,
        description="seconds FastPix waits after a disconnect before ending the stream",
    )
    streamKey: Any = Field(default=None, description=_SECRET)


class _Envelope(ProviderModel):
    type: NonEmptyStr
    id: NonEmptyStr | None = Field(
        default=None, description="the event's own id; the event id when present"
    )
    webhookId: Any = Field(
        default=None, description="never used as event id: it may name the webhook"
    )
    created_at: Rfc3339 = Field(description="when the event happened (occurred_at)")


class FastPixLiveStreamEvent(_Envelope):
    """Any `video.live_stream.*` event other than simulcast target events."""

    type: NonEmptyStr = Field(examples=list(LIVE_STREAM_TYPES))
    object: FastPixObject
    data: FastPixLiveStreamData = Field(default_factory=FastPixLiveStreamData)


class FastPixSimulcastTargetData(ProviderModel):
    livestreamId: NonEmptyStr = Field(description="the live stream; the record key's input id")
    simulcastId: Any = None
    rtmpUrl: Any = Field(default=None, description="its last path segment is a key: redacted")
    streamKey: Any = Field(default=None, description=_SECRET)


class FastPixSimulcastTargetEvent(_Envelope):
    """A `video.live_stream.simulcast_target.*` event."""

    type: NonEmptyStr = Field(
        pattern=r"^video\.live_stream\.simulcast_target\.", examples=list(SIMULCAST_TARGET_TYPES)
    )
    data: FastPixSimulcastTargetData
