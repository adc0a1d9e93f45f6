"""The provider models accept every example of the seed documents and stay tolerant."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas.providers.cloudflare import CloudflareNotification
from schemas.providers.fastpix import (
    LIVE_STREAM_TYPES,
    SIMULCAST_TARGET_TYPES,
    FastPixLiveStreamEvent,
    FastPixSimulcastTargetEvent,
    is_simulcast_target,
)
from schemas.providers.gjirafa import GjirafaEvent
from tests.producer import seeds

EXAMPLES: list[tuple[type[BaseModel], dict[str, Any]]] = [
    *(
        (CloudflareNotification, seeds.cloudflare(t))
        for t in ("live_input.connected", "live_input.disconnected", "live_input.errored")
    ),
    *((FastPixLiveStreamEvent, seeds.fastpix_stream(t)) for t in LIVE_STREAM_TYPES),
    *((FastPixSimulcastTargetEvent, seeds.fastpix_simulcast(t)) for t in SIMULCAST_TARGET_TYPES),
    *((GjirafaEvent, document) for document in seeds.GJIRAFA.values()),
]


@pytest.mark.parametrize(("model", "document"), EXAMPLES)
def test_every_seed_example_validates_and_keeps_every_field(
    model: type[BaseModel], document: dict[str, Any]
) -> None:
    parsed = model.model_validate(document)
    assert parsed.model_dump(exclude_unset=True) == document


def test_simulcast_target_events_are_told_apart_by_type() -> None:
    assert all(is_simulcast_target(t) for t in SIMULCAST_TARGET_TYPES)
    assert not any(is_simulcast_target(t) for t in LIVE_STREAM_TYPES)


def test_a_simulcast_model_refuses_a_live_stream_type() -> None:
    document = seeds.fastpix_simulcast("video.live_stream.connected")
    with pytest.raises(ValidationError) as caught:
        FastPixSimulcastTargetEvent.model_validate(document)
    assert [e["loc"] for e in caught.value.errors()] == [("type",)]


@pytest.mark.parametrize(
    ("model", "required"),
    [
        (CloudflareNotification, {"data"}),
        (FastPixLiveStreamEvent, {"type", "object", "created_at"}),
        (FastPixSimulcastTargetEvent, {"type", "data", "created_at"}),
        (GjirafaEvent, {"eventTime", "eventType", "data"}),
    ],
)
def test_only_what_the_mapping_needs_is_required(
    model: type[BaseModel], required: set[str]
) -> None:
    schema = model.model_json_schema()
    assert set(schema["required"]) == required
    assert schema["additionalProperties"] is True


def test_cosmetic_fields_of_any_type_never_fail_validation() -> None:
    document = seeds.fastpix_stream("video.live_stream.connected")
    document["data"] |= {"status": 7, "audioOnly": "no", "streamKey": {"odd": True}}
    document["webhookId"] = 12
    assert FastPixLiveStreamEvent.model_validate(document).data.reconnectWindow == 60
