"""The contract's timestamp form: three fractional digits, truncated, never rounded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.timestamps import InvalidTimestamp, format_ms, normalize, parse_ms


@pytest.mark.parametrize(
    ("given_text", "canonical"),
    [
        ("2022-01-13T11:43:41.855Z", "2022-01-13T11:43:41.855Z"),
        ("2022-01-13T11:43:41.855999999Z", "2022-01-13T11:43:41.855Z"),  # Cloudflare ns
        ("2024-07-17T11:40:06.0787423Z", "2024-07-17T11:40:06.078Z"),  # Gjirafa 7 digits
        ("2024-07-17T11:40:06Z", "2024-07-17T11:40:06.000Z"),
        ("2024-07-17T11:40:06.5Z", "2024-07-17T11:40:06.500Z"),
        ("2024-07-17T13:40:06.999+02:00", "2024-07-17T11:40:06.999Z"),
        ("2024-07-17T11:41:34.1770878", "2024-07-17T11:41:34.177Z"),  # no zone: UTC
    ],
)
def test_normalize_truncates_to_milliseconds(given_text: str, canonical: str) -> None:
    assert normalize(given_text) == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "yesterday",
        "2026-13-01T00:00:00.000Z",
        "2026-02-30T00:00:00.000Z",
        "2026-01-01T24:00:00.000Z",
        "2026-01-01T23:60:00.000Z",
        "2026-01-01",
    ],
)
def test_invalid_timestamps_raise_a_named_error(bad: str) -> None:
    with pytest.raises(InvalidTimestamp):
        parse_ms(bad)


@given(st.integers(0, 4_102_444_800_000))
def test_format_and_parse_round_trip_and_agree_with_datetime(ms: int) -> None:
    text = format_ms(ms)
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    assert text == f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"
    assert parse_ms(text) == ms


@pytest.mark.parametrize(
    "tail",
    [":60.000Z", ":01,250Z", ":01.250+", "x01.250Z", ":1.2500Z", ":01.250ZZ"],
)
def test_a_seen_minute_does_not_let_a_bad_tail_through(tail: str) -> None:
    # The hot path trusts a cached minute and checks only the tail: a bad tail
    # after a good minute must still be refused.
    minute = "2026-03-04T05:06"
    assert parse_ms(f"{minute}:07.890Z") == parse_ms("2026-03-04T05:06:00.000Z") + 7_890
    with pytest.raises(InvalidTimestamp):
        parse_ms(minute + tail)
