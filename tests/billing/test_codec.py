"""Which records of the windows topic billing accepts."""

from __future__ import annotations

import orjson
import pytest

from livewindows.billing.codec import InvalidWindow, decode_window
from tests.billing.windowkit import closed, encode, opened


def _edit(value: bytes, **changes: object) -> bytes:
    record = orjson.loads(value)
    record.update(changes)
    return orjson.dumps(record)


def test_valid_records_round_trip() -> None:
    for window in (opened("e1"), closed("e1", 1500), closed("e2", 0, close_reason="timed_out")):
        assert decode_window(encode(window)) == window


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"not json", "Invalid JSON"),
        (b"[1, 2]", "record"),
        (_edit(encode(opened("e1")), schema="livewindows/event/v1"), "schema"),
        (_edit(encode(opened("e1")), type="window.moved"), "type"),
        (_edit(encode(opened("e1")), window_id="XYZ"), "window_id"),
        (_edit(encode(opened("e1")), provider="youtube"), "provider"),
        (_edit(encode(opened("e1")), opened_at="2022-01-13 11:43:41"), "opened_at"),
        (_edit(encode(closed("e1", 5)), duration_ms=-5), "duration_ms"),
        (_edit(encode(opened("e1")), duration_ms=5), "close fields"),
        (_edit(encode(opened("e1")), closing_event_id="x"), "close fields"),
        (_edit(encode(closed("e1", 5)), duration_ms=None), "without"),
        (_edit(encode(closed("e1", 5)), closed_at=None), "without"),
        (_edit(encode(closed("e1", 5)), close_reason=None), "without"),
        (_edit(encode(closed("e1", 5)), duration_ms=6), "is not closed_at - opened_at = 5"),
        # The right form, but no such day: a store would fail on it (the whole batch).
        (_edit(encode(opened("e1")), opened_at="2022-02-30T00:00:00.000Z"), "not a valid"),
        (_edit(encode(opened("e1")), opened_at="2022-13-01T00:00:00.000Z"), "not a valid"),
        (_edit(encode(closed("e1", 5)), closed_at="2022-02-30T00:00:00.000Z"), "not a valid"),
        # PostgreSQL's text holds no NUL.
        (_edit(encode(opened("e1")), input_id="in\u0000x"), "NUL"),
        (_edit(encode(closed("e1", 5)), closing_event_id="c\u0000"), "NUL"),
    ],
)
def test_invalid_records_are_rejected_with_a_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidWindow, match=reason):
        decode_window(value)
