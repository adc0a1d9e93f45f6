"""The billing table as a pure value: window records folded into one row per window.

Invariants, which the SQL of `store.py` keeps too:
- a row is keyed by `window_id`; the first record seen for an id creates it;
- `closed` is final: a closed row never changes again, whatever arrives later;
- an open row changes only by becoming closed, and then takes the closed record
  whole (it carries every field of the window, so arrival order does not matter);
- an input's totals are the count and the sum of `duration_ms` of its closed rows.

The processor writes identical copies of a record after a crash (SPEC §5), so
with these rules any interleaving or duplication of a set of window records
gives the same rows: the closed record's row if one was seen, else the opened one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from schemas.records import Window

__all__ = ["Row", "Status", "Totals", "fold", "merge", "merge_rows", "totals"]

Status = Literal["open", "closed"]


@dataclass(frozen=True, slots=True)
class Row:
    """One `disconnect_windows` row, less `updated_at` (the store's write time)."""

    window_id: str
    provider: str
    input_id: str
    opened_at: str
    closed_at: str | None
    duration_ms: int | None
    open_reason: str
    close_reason: str | None
    opening_event_id: str
    closing_event_id: str | None
    status: Status

    @classmethod
    def from_window(cls, window: Window) -> Row:
        closed = window.type == "window.closed"
        return cls(
            window_id=window.window_id,
            provider=window.provider,
            input_id=window.input_id,
            opened_at=window.opened_at,
            closed_at=window.closed_at if closed else None,
            duration_ms=window.duration_ms if closed else None,
            open_reason=window.open_reason,
            close_reason=window.close_reason if closed else None,
            opening_event_id=window.opening_event_id,
            closing_event_id=window.closing_event_id if closed else None,
            status="closed" if closed else "open",
        )

    @property
    def input(self) -> tuple[str, str]:
        return (self.provider, self.input_id)


@dataclass(frozen=True, slots=True)
class Totals:
    """One `input_totals` row."""

    windows_closed: int = 0
    total_disconnected_ms: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.windows_closed + other.windows_closed,
            self.total_disconnected_ms + other.total_disconnected_ms,
        )


def merge_rows(existing: Row | None, incoming: Row) -> Row:
    """The row after `incoming` meets `existing`: closed wins, else the first stays."""
    if existing is None or (existing.status == "open" and incoming.status == "closed"):
        return incoming
    return existing


def merge(existing: Row | None, window: Window) -> Row:
    """The row of `window.window_id` after `window` arrives."""
    return merge_rows(existing, Row.from_window(window))


def fold(windows: Iterable[Window], rows: Mapping[str, Row] | None = None) -> dict[str, Row]:
    """Every window merged, in order, into `rows` (a new dict; `rows` is not changed)."""
    table = dict(rows or {})
    for window in windows:
        table[window.window_id] = merge(table.get(window.window_id), window)
    return table


def totals(rows: Iterable[Row]) -> dict[tuple[str, str], Totals]:
    """Per-input totals over the closed rows: what `input_totals` must hold."""
    result: dict[tuple[str, str], Totals] = {}
    for row in rows:
        if row.status == "closed":
            assert row.duration_ms is not None, "a closed row has a duration"
            result[row.input] = result.get(row.input, Totals()) + Totals(1, row.duration_ms)
    return result
