"""Gjirafa VP live video webhooks (`live.video.*`).

Envelope: `eventTime` (seven fractional digits), `eventType`, `data`,
`projectId`. The input id is `data.Id`, or `data.PublicId` when there is no
`Id`; `live.video.status.changed` says what happened in `data.Status`
(Live, Offline, Interrupted, and Processing).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field, model_validator

from schemas.providers.common import NonEmptyStr, ProviderModel, Rfc3339

__all__ = ["EVENT_TYPES", "STATUS_CHANGED", "GjirafaData", "GjirafaEvent"]

STATUS_CHANGED: Final = "live.video.status.changed"
EVENT_TYPES: Final = (
    "live.video.created",
    "live.video.updated",
    "live.video.deleted",
    STATUS_CHANGED,
    "live.video.started",
    "live.video.stopped",
    "live.video.thumbnail.changed",
)


def _int_as_text(value: Any) -> Any:
    # Ids are strings in the docs; an integer id is taken as its decimal text
    # (one validator, not a union, so a bad id is one error at its field).
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


_Id = Annotated[NonEmptyStr, BeforeValidator(_int_as_text, json_schema_input_type=str | int)]


class GjirafaData(ProviderModel):
    Id: _Id | None = Field(default=None, description="the live video; the input id")
    PublicId: _Id | None = Field(default=None, description="the input id when there is no Id")
    Status: str | None = Field(
        default=None,
        description="for live.video.status.changed: Live, Interrupted, Offline, Processing",
    )

    @model_validator(mode="after")
    def _has_an_id(self) -> GjirafaData:
        if self.Id is None and self.PublicId is None:
            raise ValueError("Id or PublicId is required")
        return self

    @property
    def input_id(self) -> str:
        chosen = self.Id if self.Id is not None else self.PublicId
        assert chosen is not None  # _has_an_id
        return chosen


class GjirafaEvent(ProviderModel):
    """One `live.video.*` webhook."""

    eventTime: Rfc3339 = Field(description="when it happened (7 digits, truncated)")
    eventType: NonEmptyStr = Field(examples=list(EVENT_TYPES))
    data: GjirafaData
    projectId: Any = None
