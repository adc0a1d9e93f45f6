"""`processor.codec.decode`: the events topic's validation boundary.

Whatever `decode` returns is fit for the core; whatever it refuses raises
`DecodeError` with a message that names the field, which the worker puts on the
dead-letter record.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.codec import DecodeError, decode, encode_tick
from processor.windows import Event, Tick
from schemas.timestamps import format_ms, parse_ms

AT = "2026-01-01T00:00:01.250Z"
LATER = "2026-01-01T00:00:01.400Z"


def _event(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "schema": "livewindows/event/v1",
        "event_id": "e-1",
        "provider": "fastpix",
        "input_id": "in-1",
        "kind": "disconnected",
        "provider_event_type": "video.live_stream.disconnected",
        "occurred_at": AT,
        "received_at": LATER,
        "reconnect_window_s": 60,
        "payload": {"type": "video.live_stream.disconnected", "nested": [1, {"a": None}]},
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not _ABSENT}


_ABSENT = object()


def test_an_event_decodes_to_the_fields_the_core_needs_and_keeps_its_bytes() -> None:
    value = orjson.dumps(_event())
    event = decode(b"fastpix:in-1", value)
    assert event == Event(
        "e-1", "fastpix:in-1", "fastpix", "in-1", "disconnected",
        parse_ms(AT), parse_ms(LATER), 60, value,
    )  # fmt: skip


def test_a_missing_or_null_reconnect_window_is_none() -> None:
    for value in (_event(reconnect_window_s=_ABSENT), _event(reconnect_window_s=None)):
        event = decode(None, orjson.dumps(value))
        assert isinstance(event, Event) and event.reconnect_window_s is None


def test_a_tick_decodes_to_its_time() -> None:
    key, value = encode_tick(parse_ms(LATER))
    assert decode(key, value) == Tick(parse_ms(LATER))


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (b"", "empty record value"),
        (b"not json", "invalid json"),
        (b"[1, 2]", "record"),
        (orjson.dumps(_event(schema="livewindows/event/v9")), "schema"),
        (orjson.dumps(_event(event_id="")), "event_id"),
        (orjson.dumps(_event(event_id=_ABSENT)), "event_id"),
        (orjson.dumps(_event(provider="youtube")), "provider"),
        (orjson.dumps(_event(input_id=7)), "input_id"),
        (orjson.dumps(_event(kind="paused")), "kind"),
        (orjson.dumps(_event(occurred_at="2026-01-01T00:00:01Z")), "occurred_at"),
        (orjson.dumps(_event(received_at="2026-01-01 00:00:01.400Z")), "received_at"),
        (orjson.dumps(_event(received_at="2026-01-01T24:00:01.400Z")), "2026-01-01T24:00:01.400Z"),
        (orjson.dumps(_event(occurred_at="2026-02-30T00:00:01.400Z")), "2026-02-30"),
        (orjson.dumps(_event(reconnect_window_s=-1)), "reconnect_window_s"),
        (orjson.dumps(_event(reconnect_window_s="60s")), "reconnect_window_s"),
        (b'{"schema": "livewindows/tick/v1"}', "received_at"),
    ],
)
def test_a_record_that_is_not_an_event_or_tick_is_refused_by_name(value: bytes, named: str) -> None:
    with pytest.raises(DecodeError) as refused:
        decode(None, value)
    assert named.lower() in str(refused.value).lower()


def test_a_key_that_is_not_the_events_input_is_refused() -> None:
    with pytest.raises(DecodeError, match="is not 'fastpix:in-1'"):
        decode(b"fastpix:in-2", orjson.dumps(_event()))


_MS = st.integers(min_value=0, max_value=4_102_444_800_000)  # 1970 .. 2100


@given(occurred=_MS, received=_MS, window=st.none() | st.integers(0, 86_400))
def test_decode_reads_back_what_the_contract_writes(
    occurred: int, received: int, window: int | None
) -> None:
    value = orjson.dumps(
        _event(
            occurred_at=format_ms(occurred),
            received_at=format_ms(received),
            reconnect_window_s=window,
        )
    )
    event = decode(None, value)
    assert isinstance(event, Event)
    assert (event.occurred_ms, event.received_ms, event.reconnect_window_s) == (
        occurred,
        received,
        window,
    )
