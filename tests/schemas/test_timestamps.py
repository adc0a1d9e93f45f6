"""The contract's timestamp form: three fractional digits, truncated, never rounded."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import timestamps
from schemas.timestamps import InvalidTimestamp, canonical_ms, format_ms, normalize, parse_ms


@pytest.mark.parametrize(
    ("given_text", "canonical"),
    [
        ("2022-01-13T11:43:41.855Z", "2022-01-13T11:43:41.855Z"),
        ("2022-01-13T11:43:41.855999999Z", "2022-01-13T11:43:41.855Z"),  # Cloudflare ns
        ("2024-07-17T11:40:06.0787423Z", "2024-07-17T11:40:06.078Z"),  # Gjirafa 7 digits
        ("2024-07-17T11:40:06Z", "2024-07-17T11:40:06.000Z"),
        ("2024-07-17T11:40:06.5Z", "2024-07-17T11:40:06.500Z"),
        ("2024-07-17T13:40:06.999+02:00", "2024-07-17T11:40:06.999Z"),
        ("2024-07-17T05:10:06.999-0630", "2024-07-17T11:40:06.999Z"),
        ("2024-07-18T11:39:06.999+23:59", "2024-07-17T11:40:06.999Z"),
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
        "2026-01-01T00:00:00.000+24:00",  # RFC 3339 offsets: hours to 23, minutes to 59
        "2026-01-01T00:00:00.000+25:99",
        "2026-01-01T00:00:00.000-01:60",
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


def _uncached(text: str) -> int | str:
    """parse_ms with empty caches: what the full parser says."""
    timestamps._SECONDS.clear()
    timestamps._MINUTES.clear()
    try:
        return parse_ms(text)
    except InvalidTimestamp:
        return "refused"


@pytest.mark.parametrize(
    "tail",
    [".000", ".0000Z", ",250Z", ".25Z", ".250z", ".\uff12\uff15\uff10Z", ".250\n", ".25OZ"],
)
def test_a_seen_second_reads_any_other_fraction_as_the_full_parser_does(tail: str) -> None:
    # The second cache is filled by the second call of a second; after it, a tail
    # that is not ".mmmZ" must get the full parser's answer, not the cache's.
    second = "2026-03-04T05:06:07"
    expected = _uncached(second + tail)
    for _ in range(2):
        assert parse_ms(f"{second}.890Z") == parse_ms("2026-03-04T05:06:00.000Z") + 7_890
    assert canonical_ms(second + tail) is None
    try:
        got: int | str = parse_ms(second + tail)
    except InvalidTimestamp:
        got = "refused"
    assert got == expected


_CANONICAL_CHARS = "0123456789-:.TZ\u0662\uff12 \n"


@given(
    st.one_of(
        st.integers(0, 4_102_444_800_000).map(format_ms),
        st.text(alphabet=_CANONICAL_CHARS, min_size=22, max_size=26),
        st.integers(0, 4_102_444_800_000).map(
            lambda ms: format_ms(ms)[:-5] + "." + format_ms(ms)[-4:]
        ),
    )
)
def test_canonical_ms_is_parse_ms_on_the_contracts_form_and_none_elsewhere(text: str) -> None:
    for _ in range(2):  # once to fill the caches, once to read them
        try:
            got = canonical_ms(text)
        except InvalidTimestamp:
            got = None
        canonical = len(text) == 24 and re.fullmatch(
            r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z", text
        )
        if got is not None:
            assert canonical and got == parse_ms(text)
        elif canonical:
            with pytest.raises(InvalidTimestamp):  # only an impossible date or clock
                parse_ms(text)


def _format_from_threads(threads: int) -> list[str | BaseException]:
    """`format_ms` of one time, called by `threads` threads at the same moment."""
    start = threading.Barrier(threads)
    results: list[str | BaseException] = []

    def call() -> None:
        start.wait(10)
        try:
            results.append(format_ms(1_642_074_221_855 + 59_999))
        except Exception as exc:
            results.append(exc)

    started = [threading.Thread(target=call) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    return results


def test_format_ms_from_threads_while_its_cache_is_being_built() -> None:
    # The first call builds a 60,000-entry table; a thread that saw it half built
    # raised IndexError (the chaos load generator's senders, started together).
    for _ in range(20):
        timestamps._SECOND_TEXTS.clear()
        assert _format_from_threads(4) == ["2022-01-13T11:44:41.854Z"] * 4
