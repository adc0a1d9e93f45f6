"""The merge rules of the billing table, with no database."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from livewindows.billing.rows import Row, Totals, fold, merge, totals
from schemas.records import Window
from tests.billing.windowkit import T0, closed, opened

OPEN = opened("e1")
CLOSED = closed("e1", 1500)


def test_opened_then_closed_closes_the_row() -> None:
    row = merge(merge(None, OPEN), CLOSED)
    assert row == Row.from_window(CLOSED)
    assert (row.status, row.duration_ms, row.close_reason) == ("closed", 1500, "reconnected")
    assert row.closing_event_id == "e1-close"


def test_opened_alone_is_an_open_row_without_close_fields() -> None:
    row = merge(None, OPEN)
    assert row.status == "open"
    assert (row.closed_at, row.duration_ms, row.close_reason, row.closing_event_id) == (
        None, None, None, None,
    )  # fmt: skip


def test_closed_alone_inserts_the_closed_row() -> None:
    assert merge(None, CLOSED) == Row.from_window(CLOSED)
    assert merge(None, CLOSED).opened_at == OPEN.opened_at


def test_opened_after_closed_never_reopens() -> None:
    assert merge(merge(None, CLOSED), OPEN) == Row.from_window(CLOSED)


def test_duplicates_change_nothing() -> None:
    assert merge(merge(None, OPEN), OPEN) == merge(None, OPEN)
    closed_row = merge(None, CLOSED)
    assert merge(closed_row, CLOSED) is closed_row


def test_a_later_closed_record_does_not_replace_the_first_close() -> None:
    # The contract says copies are identical; if they ever differ, the first close stays.
    other = closed("e1", 9000, close_reason="timed_out")
    assert merge(merge(None, CLOSED), other) == Row.from_window(CLOSED)


def test_fold_does_not_change_its_input() -> None:
    before = {OPEN.window_id: Row.from_window(OPEN)}
    after = fold([CLOSED], before)
    assert before[OPEN.window_id].status == "open"
    assert after[OPEN.window_id].status == "closed"


def test_totals_count_closed_rows_per_input() -> None:
    table = fold(
        [
            closed("a", 100),
            closed("b", 250, close_reason="timed_out"),
            opened("c"),  # open: not billed yet
            closed("d", 40, input_id="in2"),
            closed("e", 7, provider="fastpix"),
        ]
    )
    assert totals(table.values()) == {
        ("cloudflare", "in1"): Totals(2, 350),
        ("cloudflare", "in2"): Totals(1, 40),
        ("fastpix", "in1"): Totals(1, 7),
    }


def test_replaying_a_sequence_twice_gives_the_same_table() -> None:
    sequence = [OPEN, opened("e2"), CLOSED, opened("e3"), closed("e2", 3)]
    once = fold(sequence)
    assert fold(sequence, once) == once
    assert fold(sequence + sequence) == once


@st.composite
def window_sets(draw: st.DrawFn) -> tuple[list[Window], dict[str, Row]]:
    """Distinct windows, each seen as opened, closed or both; and the table they must give."""
    count = draw(st.integers(1, 8))
    records: list[Window] = []
    expected: dict[str, Row] = {}
    for n in range(count):
        args = {
            "opening_event_id": f"e{n}",
            "input_id": draw(st.sampled_from(("in1", "in2"))),
            "opened_ms": T0 + n * 10_000,
            "provider": draw(st.sampled_from(("cloudflare", "fastpix", "gjirafa"))),
            "open_reason": draw(st.sampled_from(("disconnected", "errored"))),
        }
        seen = draw(st.sampled_from(("opened", "closed", "both")))
        opening = opened(**args)
        closing = closed(
            **args,
            duration_ms=draw(st.integers(0, 120_000)),
            close_reason=draw(st.sampled_from(("reconnected", "ended", "timed_out"))),
        )
        if seen != "closed":
            records.extend([opening] * draw(st.integers(1, 3)))
        if seen != "opened":
            records.extend([closing] * draw(st.integers(1, 3)))
        expected[opening.window_id] = Row.from_window(opening if seen == "opened" else closing)
    return records, expected


@settings(max_examples=300, deadline=None)
@given(data=st.data(), windows=window_sets())
def test_any_interleaving_or_duplication_gives_the_same_table(
    data: st.DataObject, windows: tuple[list[Window], dict[str, Row]]
) -> None:
    records, expected = windows
    shuffled = data.draw(st.permutations(records))
    table = fold(shuffled)
    assert table == expected
    assert totals(table.values()) == totals(expected.values())
    assert fold(shuffled, table) == table  # a full replay changes nothing
