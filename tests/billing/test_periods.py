"""Billing periods (SPEC §7) with no database: tables of boundaries and splits, and properties."""

from __future__ import annotations

from collections import defaultdict
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livewindows.billing.periods import (
    Billed,
    InvalidPeriod,
    InvalidZone,
    Period,
    PeriodKind,
    billed_in,
    load_zone,
    parse_period,
    period_of,
    rollups,
    split,
    statements,
)
from livewindows.billing.rows import Row, fold
from schemas.timestamps import format_ms, parse_ms
from tests.billing.windowkit import closed, opened

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
# Zones with every kind of calendar: DST both ways, half- and quarter-hour offsets,
# a 30-minute DST (Lord Howe), a skipped day (Apia, 2011-12-30), far from UTC both ways.
ZONES = [
    "UTC",
    "Europe/Berlin",
    "Asia/Kolkata",
    "America/St_Johns",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "America/Santiago",
    "Etc/GMT+12",
]
HOUR_MS = 3_600_000


def ms(text: str) -> int:
    return parse_ms(text)


def hours(period: str, zone: ZoneInfo) -> float:
    start, end = parse_period(period).bounds_ms(zone)
    return (end - start) / HOUR_MS


@pytest.mark.parametrize(
    ("text", "label", "kind"),
    [
        ("2026-11", "2026-11", "month"),
        ("2026-11-30", "2026-11-30", "day"),
        ("2024-02-29", "2024-02-29", "day"),
        (" 0001-01 ", "0001-01", "month"),
        ("9999-12-31", "9999-12-31", "day"),
    ],
)
def test_parse_period(text: str, label: str, kind: str) -> None:
    period = parse_period(text)
    assert (period.label, period.kind) == (label, kind)


@pytest.mark.parametrize(
    "text",
    ["", "2026", "2026-13", "2026-00", "2026-11-31", "2025-02-29", "26-11", "2026-1", "2026/11",
     "2026-11-30T00:00", "0000-01", "\u0662\u0660\u0662\u0666-\u0661\u0661"],
)  # fmt: skip
def test_malformed_periods_are_refused(text: str) -> None:
    with pytest.raises(InvalidPeriod, match="not a month"):
        parse_period(text)


@pytest.mark.parametrize("name", ["Europe/Berln", "", "Europe", "../etc/passwd", "/etc/localtime",
                                  "localtime", "utc", "Europe/Berlin/"])  # fmt: skip
def test_unknown_zones_are_refused(name: str) -> None:
    with pytest.raises(InvalidZone, match="unknown time zone"):
        load_zone(name)


@pytest.mark.parametrize(
    ("period", "zone", "start", "length_h"),
    [
        ("2026-11", "UTC", "2026-11-01T00:00:00.000Z", 720),
        ("2026-11", "Europe/Berlin", "2026-10-31T23:00:00.000Z", 720),
        ("2026-03", "Europe/Berlin", "2026-02-28T23:00:00.000Z", 743),  # loses an hour
        ("2026-10", "Europe/Berlin", "2026-09-30T22:00:00.000Z", 745),  # gains one
        ("2026-03-29", "Europe/Berlin", "2026-03-28T23:00:00.000Z", 23),
        ("2026-10-25", "Europe/Berlin", "2026-10-24T22:00:00.000Z", 25),
        ("2026-11-30", "Asia/Kolkata", "2026-11-29T18:30:00.000Z", 24),
        ("2026-04-05", "Australia/Lord_Howe", "2026-04-04T13:00:00.000Z", 24.5),
        ("2011-12-30", "Pacific/Apia", "2011-12-30T10:00:00.000Z", 0),  # skipped
        ("2011-12", "Pacific/Apia", "2011-12-01T10:00:00.000Z", 31 * 24 - 24),
    ],
)
def test_period_bounds_follow_the_zone_calendar(
    period: str, zone: str, start: str, length_h: float
) -> None:
    assert format_ms(parse_period(period).bounds_ms(ZoneInfo(zone))[0]) == start
    assert hours(period, ZoneInfo(zone)) == length_h


def test_a_day_that_starts_in_a_dst_gap_starts_at_the_change() -> None:
    # Santiago skipped 2026-09-06T00:00 local (to 01:00): that day begins at 04:00Z.
    assert format_ms(parse_period("2026-09-06").bounds_ms(ZoneInfo("America/Santiago"))[0]) == (
        "2026-09-06T04:00:00.000Z"
    )


def labelled(
    opened_at: str, closed_at: str, kind: PeriodKind, zone: ZoneInfo
) -> list[tuple[str, int]]:
    return [(p.label, overlap) for p, overlap in split(ms(opened_at), ms(closed_at), kind, zone)]


@pytest.mark.parametrize(
    ("opened_at", "closed_at", "kind", "zone", "expected"),
    [
        # across a month's end, in UTC and in Berlin (whose month ends an hour earlier)
        ("2026-11-30T23:00:00.000Z", "2026-12-01T00:30:00.000Z", "month", UTC,
         [("2026-11", HOUR_MS), ("2026-12", HOUR_MS // 2)]),
        ("2026-11-30T22:30:00.000Z", "2026-11-30T23:30:00.000Z", "month", BERLIN,
         [("2026-11", HOUR_MS // 2), ("2026-12", HOUR_MS // 2)]),
        ("2026-11-30T22:30:00.000Z", "2026-11-30T23:30:00.000Z", "day", BERLIN,
         [("2026-11-30", HOUR_MS // 2), ("2026-12-01", HOUR_MS // 2)]),
        # Berlin's spring change: 2026-03-29 is 23 h long
        ("2026-03-28T22:00:00.000Z", "2026-03-30T00:00:00.000Z", "day", BERLIN,
         [("2026-03-28", HOUR_MS), ("2026-03-29", 23 * HOUR_MS), ("2026-03-30", 2 * HOUR_MS)]),
        # Berlin's autumn change: 2026-10-25 is 25 h long
        ("2026-10-24T21:00:00.000Z", "2026-10-25T23:30:00.000Z", "day", BERLIN,
         [("2026-10-24", HOUR_MS), ("2026-10-25", 25 * HOUR_MS), ("2026-10-26", HOUR_MS // 2)]),
        # exactly on boundaries: a window from midnight to midnight is one day's
        ("2026-11-30T00:00:00.000Z", "2026-12-01T00:00:00.000Z", "day", UTC,
         [("2026-11-30", 24 * HOUR_MS)]),
        ("2026-11-30T00:00:00.000Z", "2026-12-01T00:00:00.000Z", "month", UTC,
         [("2026-11", 24 * HOUR_MS)]),
        ("2026-12-01T00:00:00.000Z", "2026-12-01T00:00:00.001Z", "month", UTC,
         [("2026-12", 1)]),
        ("2026-11-30T23:59:59.999Z", "2026-12-01T00:00:00.000Z", "month", UTC,
         [("2026-11", 1)]),
        # no length: counted where it opened, for 0 ms
        ("2026-12-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z", "day", UTC,
         [("2026-12-01", 0)]),
        # half-hour offset: Kolkata's day starts at 18:30Z
        ("2026-11-29T18:00:00.000Z", "2026-11-29T19:00:00.000Z", "day", KOLKATA,
         [("2026-11-29", HOUR_MS // 2), ("2026-11-30", HOUR_MS // 2)]),
        ("2026-11-30T18:29:59.000Z", "2026-11-30T18:30:01.000Z", "month", KOLKATA,
         [("2026-11", 1000), ("2026-12", 1000)]),
        # a skipped day is no period: Apia went from 2011-12-29 straight to 2011-12-31
        ("2011-12-30T09:00:00.000Z", "2011-12-30T11:00:00.000Z", "day", ZoneInfo("Pacific/Apia"),
         [("2011-12-29", HOUR_MS), ("2011-12-31", HOUR_MS)]),
    ],
)  # fmt: skip
def test_split(
    opened_at: str,
    closed_at: str,
    kind: PeriodKind,
    zone: ZoneInfo,
    expected: list[tuple[str, int]],
) -> None:
    assert labelled(opened_at, closed_at, kind, zone) == expected


def test_the_ends_of_the_contract_s_years_can_be_split_in_any_zone() -> None:
    first, last = ms("0001-01-01T00:00:00.000Z"), ms("9999-12-31T23:59:59.999Z")
    for name in ZONES:
        zone = ZoneInfo(name)
        kinds: tuple[PeriodKind, ...] = ("day", "month")
        for kind in kinds:
            for start, end in ((first, first + 2 * 86_400_000), (last - 2 * 86_400_000, last)):
                parts = list(split(start, end, kind, zone))
                assert sum(overlap for _, overlap in parts) == end - start
    beyond = period_of(last, "day", ZoneInfo("Pacific/Kiritimati"))
    assert beyond.label == "10000-01-01"
    assert period_of(first, "month", ZoneInfo("Etc/GMT+12")).label == "0000-12"


def test_statements_fold_billed_and_open_windows_per_input() -> None:
    november = parse_period("2026-11")
    rows = fold(
        [
            closed("a", 3 * HOUR_MS, opened_ms=ms("2026-11-30T22:00:00.000Z")),  # 2 h in Nov
            closed("b", 60_000, opened_ms=ms("2026-11-02T10:00:00.000Z"), close_reason="timed_out"),
            closed("c", 1000, "in2", opened_ms=ms("2026-12-01T00:00:00.000Z")),  # December
            opened("d", "in3", opened_ms=ms("2026-11-15T10:00:00.000Z")),
            opened("e", "in3", opened_ms=ms("2026-10-01T10:00:00.000Z")),
            opened("f", "in4", opened_ms=ms("2026-12-01T00:00:00.000Z")),  # after the period
        ]
    ).values()
    open_windows = [(r.provider, r.input_id, r.opened_at) for r in rows if r.status == "open"]
    result = statements(november, UTC, billed_in(rows, november, UTC), open_windows)
    assert [statement.as_json() for statement in result] == [
        {
            "provider": "cloudflare",
            "input_id": "in1",
            "period": "2026-11",
            "timezone": "UTC",
            "windows": 2,
            "billed_ms": 2 * HOUR_MS + 60_000,
            "longest_ms": 2 * HOUR_MS,
            "by_close_reason": {"reconnected": 2 * HOUR_MS, "ended": 0, "timed_out": 60_000},
            "open_since": [],
        },
        {
            "provider": "cloudflare",
            "input_id": "in3",
            "period": "2026-11",
            "timezone": "UTC",
            "windows": 0,
            "billed_ms": 0,
            "longest_ms": 0,
            "by_close_reason": {"reconnected": 0, "ended": 0, "timed_out": 0},
            "open_since": ["2026-10-01T10:00:00.000Z", "2026-11-15T10:00:00.000Z"],
        },
    ]


# Windows anywhere in 2020-2030 (DST changes of every zone above), up to ~70 days
# long, some of no length or whole days; each reason.
_BASE_MS = ms("2020-01-01T00:00:00.000Z")
_SPAN_MS = ms("2030-01-01T00:00:00.000Z") - _BASE_MS


@st.composite
def closed_rows(draw: st.DrawFn) -> list[Row]:
    windows = []
    for n in range(draw(st.integers(1, 6))):
        opened_ms = _BASE_MS + draw(st.integers(0, _SPAN_MS))
        if draw(st.booleans()):
            opened_ms -= opened_ms % HOUR_MS  # on the hour: on a boundary in most zones
        duration_ms = draw(
            st.one_of(
                st.just(0),
                st.integers(1, 3 * HOUR_MS),
                st.integers(0, 70).map(lambda days: days * 86_400_000),
                st.integers(0, 70 * 86_400_000),
            )
        )
        windows.append(
            closed(
                f"e{n}",
                duration_ms,
                input_id=draw(st.sampled_from(("in1", "in2"))),
                opened_ms=opened_ms,
                close_reason=draw(st.sampled_from(("reconnected", "ended", "timed_out"))),
            )
        )
    return list(fold(windows).values())


def check_days_add_up_to_months(table: dict[tuple[str, str, str], Billed], rows: list[Row]) -> None:
    """The billed ms of each month's days add up to the month's; all months to the total."""
    by_month: dict[tuple[str, str, str], int] = defaultdict(int)
    total: dict[tuple[str, str], int] = defaultdict(int)
    for (provider, input_id, label), billed in table.items():
        if len(label) > 7:  # a day
            by_month[(provider, input_id, label[:7])] += billed.billed_ms
        else:
            total[(provider, input_id)] += billed.billed_ms
            assert billed.billed_ms == sum(billed.by_close_reason().values())
            assert 0 <= billed.longest_ms <= billed.billed_ms
    months = {key: billed.billed_ms for key, billed in table.items() if len(key[2]) == 7}
    assert dict(by_month) == months
    durations: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        assert row.duration_ms is not None
        durations[row.input] += row.duration_ms
    assert dict(total) == dict(durations)


@settings(max_examples=300)
@given(rows=closed_rows(), zone=st.sampled_from(ZONES))
def test_the_days_of_a_month_add_up_to_the_month(rows: list[Row], zone: str) -> None:
    check_days_add_up_to_months(rollups(rows, ZoneInfo(zone)), rows)


@settings(max_examples=150)
@given(rows=closed_rows(), zone=st.sampled_from(ZONES), data=st.data())
def test_a_report_from_rows_equals_the_rollups(
    rows: list[Row], zone: str, data: st.DataObject
) -> None:
    tz = ZoneInfo(zone)
    table = rollups(rows, tz)
    row = data.draw(st.sampled_from(rows))
    kinds: tuple[PeriodKind, ...] = ("day", "month")
    kind = data.draw(st.sampled_from(kinds))
    period: Period = period_of(parse_ms(row.opened_at), kind, tz)
    if data.draw(st.booleans()):
        period = period.next()
    expected = {(p, i): billed for (p, i, label), billed in table.items() if label == period.label}
    assert billed_in(rows, period, tz) == expected


@settings(max_examples=200)
@given(year=st.integers(2020, 2029), month=st.integers(1, 12), zone=st.sampled_from(ZONES))
def test_the_days_of_a_month_tile_it(year: int, month: int, zone: str) -> None:
    tz = ZoneInfo(zone)
    month_period = parse_period(f"{year:04d}-{month:02d}")
    start, end = month_period.bounds_ms(tz)
    day = period_of(start, "day", tz)
    assert day.bounds_ms(tz)[0] == start
    cursor = start
    while cursor < end:
        day_start, day_end = day.bounds_ms(tz)
        assert day_start == cursor and day_end >= day_start
        assert day.label[:7] == month_period.label
        cursor, day = day_end, day.next()
    assert cursor == end
