"""The billing tables in SQLite and in a real PostgreSQL (each test runs on both)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livewindows.billing.periods import rollups
from livewindows.billing.rows import Row, Totals, fold, totals
from livewindows.billing.store import Applied, Store, open_store, redact_url
from plumbing.settings import ConfigError
from schemas.records import Window
from tests.billing.test_rows import window_sets
from tests.billing.windowkit import T0, closed, opened

NOW_MS = T0 + 3_600_000


def assert_consistent(store: Store) -> None:
    """The invariant of `input_totals`: the sums over the closed rows, nothing else."""
    assert store.totals() == totals(store.rows().values())


def test_opened_then_closed_in_later_batches(store: Store) -> None:
    assert store.apply([opened("e1")], NOW_MS) == Applied(1, 0)
    assert store.rows()[opened("e1").window_id].status == "open"
    assert store.totals() == {}
    assert store.apply([closed("e1", 1500)], NOW_MS) == Applied(1, 1)
    assert store.rows() == {opened("e1").window_id: Row.from_window(closed("e1", 1500))}
    assert store.totals() == {("cloudflare", "in1"): Totals(1, 1500)}


def test_closed_first_is_never_reopened(store: Store) -> None:
    assert store.apply([closed("e1", 1500)], NOW_MS) == Applied(1, 1)
    assert store.apply([opened("e1")], NOW_MS) == Applied(0, 0)
    assert store.rows()[opened("e1").window_id].status == "closed"
    assert store.totals() == {("cloudflare", "in1"): Totals(1, 1500)}


def test_reverse_order_inside_one_batch(store: Store) -> None:
    assert store.apply([closed("e1", 20), opened("e1"), closed("e1", 20)], NOW_MS) == Applied(1, 1)
    assert store.rows() == {opened("e1").window_id: Row.from_window(closed("e1", 20))}
    assert store.totals() == {("cloudflare", "in1"): Totals(1, 20)}


def test_duplicates_and_replays_change_nothing_not_even_updated_at(store: Store) -> None:
    sequence = [opened("e1"), opened("e2"), closed("e1", 10), opened("e3"), closed("e2", 5)]
    for window in sequence:
        store.apply([window], NOW_MS)
    before = store.rows_with_updated_at()
    totals_before = store.totals()
    assert store.apply(sequence, NOW_MS + 1000) == Applied(0, 0)
    for window in sequence + sequence:
        assert store.apply([window], NOW_MS + 2000) == Applied(0, 0)
    assert store.rows_with_updated_at() == before
    assert store.totals() == totals_before == {("cloudflare", "in1"): Totals(2, 15)}


def test_updated_at_is_the_time_of_the_last_change(store: Store) -> None:
    store.apply([opened("e1")], NOW_MS)
    store.apply([closed("e1", 10)], NOW_MS + 5)
    [(row, updated_at)] = store.rows_with_updated_at()
    assert row.status == "closed"
    assert updated_at == "2022-01-13T12:43:41.860Z"


def test_times_round_trip_to_the_millisecond(store: Store) -> None:
    far = 4_102_444_800_001  # 2100-01-01T00:00:00.001Z
    windows = [closed("a", 1, opened_ms=0), closed("b", 999, opened_ms=far), opened("c", "x", 1)]
    store.apply(windows, NOW_MS)
    assert store.rows() == {w.window_id: Row.from_window(w) for w in windows}
    assert store.rows()[windows[0].window_id].opened_at == "1970-01-01T00:00:00.000Z"


def test_totals_per_input_and_provider(store: Store) -> None:
    store.apply(
        [
            closed("a", 100),
            closed("b", 250, close_reason="timed_out"),
            opened("c"),
            closed("d", 40, input_id="in2"),
            closed("e", 7, provider="fastpix"),
        ],
        NOW_MS,
    )
    assert store.totals() == {
        ("cloudflare", "in1"): Totals(2, 350),
        ("cloudflare", "in2"): Totals(1, 40),
        ("fastpix", "in1"): Totals(1, 7),
    }
    assert_consistent(store)


def test_a_failed_batch_leaves_no_trace(store: Store) -> None:
    store.apply([opened("e1")], NOW_MS)
    before = store.rows_with_updated_at()
    # A closed window without a duration breaks the table's CHECK after other rows
    # of the batch were written (ids are written in order): all of it must roll back.
    broken = closed("e2", 5).model_copy(update={"window_id": "f" * 32, "duration_ms": None})
    with pytest.raises(Exception, match=r"(?i)check"):
        store.apply([closed("e1", 10), opened("e3"), broken], NOW_MS + 1)
    assert store.rows_with_updated_at() == before
    assert store.totals() == {}
    assert store.apply([closed("e1", 10)], NOW_MS + 2) == Applied(1, 1)  # still usable


def test_reopening_keeps_the_rows(make_db_url: Callable[[], str]) -> None:
    url = make_db_url()
    first = open_store(url)
    first.apply([closed("e1", 10)], NOW_MS)
    first.close()
    second = open_store(url)  # creates the schema "if missing": it is not
    try:
        assert second.rows() == {opened("e1").window_id: Row.from_window(closed("e1", 10))}
        assert second.totals() == {("cloudflare", "in1"): Totals(1, 10)}
    finally:
        second.close()


def test_concurrent_writers_count_each_window_once(make_db_url: Callable[[], str]) -> None:
    url = make_db_url()
    windows = [w for n in range(150) for w in (opened(f"e{n}", f"in{n % 3}"), closed(f"e{n}", n))]
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def write(order: int) -> None:
        try:
            store = open_store(url)  # a connection per writer, as separate processes have
            sequence = windows if order % 2 == 0 else windows[::-1]
            start.wait(timeout=30)
            for begin in range(0, len(sequence), 7):
                store.apply(sequence[begin : begin + 7], NOW_MS)
            store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    store = open_store(url)
    try:
        assert store.rows() == fold(windows)
        assert store.totals() == totals(fold(windows).values())
        assert sum(t.windows_closed for t in store.totals().values()) == 150
        assert store.periods() == rollups(fold(windows).values(), store.zone)
    finally:
        store.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), windows=window_sets())
def test_any_batching_and_order_gives_the_pure_table(
    make_store: Callable[[], Store],
    data: st.DataObject,
    windows: tuple[list[Window], dict[str, Row]],
) -> None:
    records, expected = windows
    shuffled = data.draw(st.permutations(records))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(shuffled)), max_size=5)))
    store = make_store()
    for start, end in zip([0, *cuts], [*cuts, len(shuffled)], strict=True):
        store.apply(shuffled[start:end], NOW_MS)
    assert store.rows() == expected
    assert store.totals() == totals(expected.values())
    snapshot = store.rows_with_updated_at()
    assert store.apply(shuffled, NOW_MS + 1) == Applied(0, 0)
    assert store.rows_with_updated_at() == snapshot


def test_sqlite_url_forms_and_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///sub/dir/billing.db")  # parents are created
    relative.close()
    with sqlite3.connect(f"{tmp_path}/sub/dir/billing.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")
    absolute.close()
    assert (tmp_path / "abs.db").exists()
    memory = open_store("sqlite:///:memory:")
    memory.apply([closed("e1", 1)], NOW_MS)
    assert len(memory.rows()) == 1
    memory.close()


@pytest.mark.parametrize(
    "url", ["mysql://u:secret@h/db", "livewindows.db", "", "sqlite://", "sqlite:///"]
)
def test_unknown_urls_are_a_config_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(url)
    assert "secret" not in str(caught.value)


def test_redact_url() -> None:
    assert redact_url("postgresql://bill:s3cr:et@db:5432/x") == "postgresql://bill:***@db:5432/x"
    assert redact_url("postgresql://bill@db/x") == "postgresql://bill@db/x"
    assert redact_url("sqlite:///a.db") == "sqlite:///a.db"
