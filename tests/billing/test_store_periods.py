"""Period rollups in SQLite and a real PostgreSQL (each test runs on both)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livewindows.billing.periods import Billed, rollups
from livewindows.billing.rows import Row, fold
from livewindows.billing.store import Applied, Store, ZoneChanged, ZoneMismatch, open_store
from plumbing.settings import ConfigError
from schemas.records import Window
from schemas.timestamps import format_ms, parse_ms
from tests.billing.test_periods import check_days_add_up_to_months
from tests.billing.test_rows import window_sets
from tests.billing.windowkit import closed, opened

NOW_MS = parse_ms("2027-01-01T00:00:00.000Z")
HOUR_MS = 3_600_000
MakeUrl = Callable[[], str]


def at(text: str) -> int:
    return parse_ms(text)


def reason(ms: int, close_reason: str = "reconnected") -> Billed:
    return Billed.one(ms, close_reason)


def assert_consistent(store: Store) -> None:
    """`input_periods` holds exactly the rollups of the closed rows, in the store's zone."""
    rows = list(store.rows().values())
    assert store.periods() == rollups(rows, store.zone)
    check_days_add_up_to_months(store.periods(), [r for r in rows if r.status == "closed"])


@pytest.fixture
def url(make_db_url: MakeUrl) -> str:
    return make_db_url()


def test_a_window_across_a_month_s_end(url: str) -> None:
    store = open_store(url)
    try:
        store.apply([closed("e1", 3 * HOUR_MS, opened_ms=at("2026-11-30T22:00:00.000Z"))], NOW_MS)
        assert store.periods() == {
            ("cloudflare", "in1", "2026-11-30"): reason(2 * HOUR_MS),
            ("cloudflare", "in1", "2026-11"): reason(2 * HOUR_MS),
            ("cloudflare", "in1", "2026-12-01"): reason(HOUR_MS),
            ("cloudflare", "in1", "2026-12"): reason(HOUR_MS),
        }
        assert_consistent(store)
    finally:
        store.close()


def test_windows_across_berlin_s_dst_changes(url: str) -> None:
    store = open_store(url, "Europe/Berlin")
    try:
        store.apply(
            [
                # 2026-03-28 22:00 local to 2026-03-30 02:00 local: 2 + 23 + 2 hours
                closed("spring", 27 * HOUR_MS, opened_ms=at("2026-03-28T21:00:00.000Z")),
                # all of 2026-10-25 local, 25 hours, timed out
                closed(
                    "autumn",
                    25 * HOUR_MS,
                    opened_ms=at("2026-10-24T22:00:00.000Z"),
                    close_reason="timed_out",
                ),
            ],
            NOW_MS,
        )
        periods = store.periods()
        assert periods[("cloudflare", "in1", "2026-03-28")] == reason(2 * HOUR_MS)
        assert periods[("cloudflare", "in1", "2026-03-29")] == reason(23 * HOUR_MS)
        assert periods[("cloudflare", "in1", "2026-03-30")] == reason(2 * HOUR_MS)
        assert periods[("cloudflare", "in1", "2026-03")] == reason(27 * HOUR_MS)
        assert periods[("cloudflare", "in1", "2026-10-25")] == reason(25 * HOUR_MS, "timed_out")
        assert periods[("cloudflare", "in1", "2026-10")] == reason(25 * HOUR_MS, "timed_out")
        assert ("cloudflare", "in1", "2026-10-24") not in periods  # ends exactly at midnight
        assert ("cloudflare", "in1", "2026-10-26") not in periods
        assert_consistent(store)
    finally:
        store.close()


def test_a_window_exactly_on_boundaries(url: str) -> None:
    store = open_store(url)
    try:
        store.apply(
            [
                closed("day", 24 * HOUR_MS, opened_ms=at("2026-11-30T00:00:00.000Z")),
                closed("none", 0, opened_ms=at("2026-12-01T00:00:00.000Z"), close_reason="ended"),
            ],
            NOW_MS,
        )
        assert store.periods() == {
            ("cloudflare", "in1", "2026-11-30"): reason(24 * HOUR_MS),
            ("cloudflare", "in1", "2026-11"): reason(24 * HOUR_MS),
            ("cloudflare", "in1", "2026-12-01"): reason(0, "ended"),
            ("cloudflare", "in1", "2026-12"): reason(0, "ended"),
        }
    finally:
        store.close()


def test_a_half_hour_zone(url: str) -> None:
    store = open_store(url, "Asia/Kolkata")
    try:
        # 2026-11-30 23:30 to 2026-12-01 00:30 in Kolkata (UTC+05:30)
        store.apply([closed("e1", HOUR_MS, opened_ms=at("2026-11-30T18:00:00.000Z"))], NOW_MS)
        assert store.periods() == {
            ("cloudflare", "in1", "2026-11-30"): reason(HOUR_MS // 2),
            ("cloudflare", "in1", "2026-11"): reason(HOUR_MS // 2),
            ("cloudflare", "in1", "2026-12-01"): reason(HOUR_MS // 2),
            ("cloudflare", "in1", "2026-12"): reason(HOUR_MS // 2),
        }
    finally:
        store.close()


def test_duplicates_replays_and_a_close_before_its_open_change_nothing(url: str) -> None:
    store = open_store(url, "Europe/Berlin")
    opened_ms = at("2026-11-30T22:30:00.000Z")
    sequence = [
        closed("e1", HOUR_MS, opened_ms=opened_ms),  # the close first
        opened("e1", opened_ms=opened_ms),
        opened("e2", "in2", opened_ms=opened_ms),
        closed("e2", 10, "in2", opened_ms=opened_ms),
        closed("e1", HOUR_MS, opened_ms=opened_ms),
    ]
    try:
        for window in sequence:
            store.apply([window], NOW_MS)
        before = store.periods()
        assert before[("cloudflare", "in1", "2026-11")] == reason(HOUR_MS // 2)
        assert before[("cloudflare", "in1", "2026-12")] == reason(HOUR_MS // 2)
        assert store.apply(sequence + sequence, NOW_MS + 1) == Applied(0, 0)
        for window in sequence:
            assert store.apply([window, window], NOW_MS + 2) == Applied(0, 0)
        assert store.periods() == before
        assert_consistent(store)
    finally:
        store.close()


def test_an_open_window_is_not_billed(url: str) -> None:
    store = open_store(url)
    try:
        store.apply([opened("e1")], NOW_MS)
        assert store.periods() == {}
    finally:
        store.close()


def test_a_failed_batch_adds_no_periods(url: str) -> None:
    store = open_store(url)
    try:
        broken = closed("e2", 5).model_copy(update={"window_id": "f" * 32, "duration_ms": None})
        with pytest.raises(Exception, match=r"(?i)check"):
            store.apply([closed("e1", 10), broken], NOW_MS)
        assert store.periods() == {}
    finally:
        store.close()


def test_another_zone_is_refused_until_the_rollups_are_rebuilt(url: str) -> None:
    windows = [
        closed("e1", 3 * HOUR_MS, opened_ms=at("2026-11-30T21:00:00.000Z")),
        closed("e2", 45 * 60_000, "in2", opened_ms=at("2026-10-25T00:30:00.000Z")),
        opened("e3", "in3"),
    ]
    store = open_store(url)  # UTC
    store.apply(windows, NOW_MS)
    utc = store.periods()
    store.close()
    with pytest.raises(ZoneMismatch, match=r"rollups are kept in UTC.*rebuild-periods"):
        open_store(url, "Europe/Berlin")
    assert isinstance(ZoneMismatch("x"), ConfigError)  # one line and exit 2 from the CLI

    rebuilding = open_store(url, "Europe/Berlin", create=False)
    rebuilt = rebuilding.rebuild_periods()
    rebuilding.close()
    assert (rebuilt.previous_zone, rebuilt.zone, rebuilt.windows_closed) == (
        "UTC",
        "Europe/Berlin",
        2,
    )
    berlin = open_store(url, "Europe/Berlin")
    try:
        assert berlin.period_zone() == "Europe/Berlin"
        assert utc[("cloudflare", "in1", "2026-11")] == reason(3 * HOUR_MS)  # ends at 00:00Z
        assert ("cloudflare", "in1", "2026-12") not in utc
        assert berlin.periods()[("cloudflare", "in1", "2026-11")] == reason(2 * HOUR_MS)
        assert berlin.periods()[("cloudflare", "in1", "2026-12")] == reason(HOUR_MS)
        assert rebuilt.period_rows == len(berlin.periods())
        assert_consistent(berlin)
        berlin.apply([closed("e3", 1000, "in3")], NOW_MS)  # and it goes on from there
        assert_consistent(berlin)
    finally:
        berlin.close()


def test_a_batch_after_a_rebuild_in_another_zone_stops_and_writes_nothing(url: str) -> None:
    running = open_store(url)  # a consumer in UTC
    try:
        running.apply([closed("e1", 10)], NOW_MS)
        other = open_store(url, "Asia/Kolkata", create=False)
        other.rebuild_periods()
        other.close()
        before = running.rows(), running.periods()
        with pytest.raises(ZoneChanged, match="now kept in Asia/Kolkata"):
            running.apply([closed("e2", 20)], NOW_MS)
        assert (running.rows(), running.periods()) == before
    finally:
        running.close()


def test_a_database_of_the_earlier_version_gets_its_rollups(url: str) -> None:
    store = open_store(url)
    store.apply([closed("e1", 3 * HOUR_MS, opened_ms=at("2026-11-30T22:00:00.000Z"))], NOW_MS)
    expected = store.periods()
    with store._transaction():  # what the earlier version had: no rollup tables
        store._execute("DROP TABLE input_periods")
        store._execute("DROP TABLE period_zone")
    assert store.period_zone() is None
    assert store.has_windows()
    store.close()
    reopened = open_store(url)
    try:
        assert reopened.period_zone() == "UTC"
        assert reopened.periods() == expected
    finally:
        reopened.close()


def test_report_reads(url: str) -> None:
    store = open_store(url)
    try:
        assert not store.has_windows()
        store.apply(
            [
                closed("a", 1000, opened_ms=at("2026-11-30T23:59:59.500Z")),
                closed("b", 1000, opened_ms=at("2026-11-29T00:00:00.000Z")),
                closed("c", 1000, "in2", opened_ms=at("2026-12-01T00:00:00.000Z")),
                opened("d", opened_ms=at("2026-11-30T12:00:00.000Z")),
                opened("e", "in2", opened_ms=at("2026-12-02T00:00:00.000Z")),
            ],
            NOW_MS,
        )
        assert store.has_windows()
        start, end = at("2026-11-30T00:00:00.000Z"), at("2026-12-01T00:00:00.000Z")
        between = sorted(row.opening_event_id for row in store.closed_rows_between(start, end))
        assert between == ["a", "c"]  # c starts at the end: the fold leaves it out
        only_in1 = store.closed_rows_between(start, end, ("cloudflare", "in1"))
        assert [row.opening_event_id for row in only_in1] == ["a"]
        assert store.open_windows(end) == [("cloudflare", "in1", "2026-11-30T12:00:00.000Z")]
        assert store.open_windows(end, ("cloudflare", "in2")) == []
        assert set(store.periods("2026-11-30")) == {("cloudflare", "in1", "2026-11-30")}
        assert store.periods("2026-12", ("cloudflare", "in2")) == {
            ("cloudflare", "in2", "2026-12"): reason(1000)
        }
    finally:
        store.close()


def test_opening_without_create_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such database file"):
        open_store(f"sqlite:///{tmp_path / 'missing.db'}", create=False)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(ConfigError, match="unknown time zone"):
        open_store(f"sqlite:///{tmp_path / 'x.db'}", "Mars/Olympus_Mons")


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.data(),
    windows=window_sets(),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe"]),
)
def test_any_batching_and_order_gives_the_pure_rollups(
    make_db_url: MakeUrl,
    data: st.DataObject,
    windows: tuple[list[Window], dict[str, Row]],
    zone: str,
) -> None:
    records, _ = windows
    # Move the windows near a month's end, so that they cross it in some zones.
    shift = parse_ms("2026-10-31T21:00:00.000Z") - parse_ms(records[0].opened_at)
    shift += data.draw(st.integers(0, 6 * HOUR_MS))
    records = [_shifted(window, shift) for window in records]
    shuffled = data.draw(st.permutations(records))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(shuffled)), max_size=5)))
    store = open_store(make_db_url(), zone)
    try:
        for start, end in zip([0, *cuts], [*cuts, len(shuffled)], strict=True):
            store.apply(shuffled[start:end], NOW_MS)
        rows = fold(records)
        assert store.rows() == rows
        assert store.periods() == rollups(rows.values(), ZoneInfo(zone))
        assert_consistent(store)
        snapshot = store.periods()
        store.apply(shuffled, NOW_MS + 1)
        assert store.periods() == snapshot
    finally:
        store.close()


def _shifted(window: Window, shift_ms: int) -> Window:
    update: dict[str, object] = {"opened_at": format_ms(parse_ms(window.opened_at) + shift_ms)}
    if window.closed_at is not None:
        update["closed_at"] = format_ms(parse_ms(window.closed_at) + shift_ms)
    return window.model_copy(update=update)
