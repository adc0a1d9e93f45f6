"""Billing periods (SPEC §7) as pure arithmetic: calendar days and months of an IANA zone.

Invariants:
- a period is a local calendar day or month of one zone; it runs from the first
  instant of its first local day (`midnight_ms`) to the first instant of the next
  period, half-open, so one zone's days tile time without gap or overlap, and the
  days of a month tile that month exactly (they share its two end points);
- so a period lasts what the zone's calendar says: 23 or 25 hours on a DST change,
  and nothing at all for a day a zone skipped (Pacific/Apia, 2011-12-30);
- a closed window `[opened_at, closed_at)` is billed in each period it overlaps, for
  the milliseconds of the overlap, so its overlaps add up to its `duration_ms` over
  the days, and again over the months; a window of no length (opened_at ==
  closed_at) counts, for 0 ms, in the period that holds its `opened_at`;
- a window still open is not billed; a statement lists its `opened_at`.

Midnight is read with the offset in force just before it (`fold=0`): where a DST
change skips local midnight, the day starts at the change. Days beyond the range of
`datetime` (local 0000-12-31 and 10000-01-01, reachable by a window at the ends of
the contract's years in a zone far from UTC) borrow the offset of the nearest day
that is in range, so every window of the contract can be split, and the store can
never fail a batch on one.

This module has no I/O: the store (`store.py`) writes what `billed_periods` returns
in the transaction that closes a window, and `report.py` prints `statements`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from livewindows.billing.rows import Row
from schemas.timestamps import parse_ms

__all__ = [
    "CLOSE_REASONS",
    "Billed",
    "InvalidPeriod",
    "InvalidZone",
    "Period",
    "PeriodKind",
    "Statement",
    "billed_in",
    "billed_periods",
    "load_zone",
    "midnight_ms",
    "parse_period",
    "period_of",
    "rollups",
    "split",
    "statements",
]

PeriodKind = Literal["day", "month"]
CLOSE_REASONS = ("reconnected", "ended", "timed_out")  # schemas.records.CloseReason, in order

_DAY_MS = 86_400_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MAX_ORDINAL = date.max.toordinal()
_MACHINE_ZONES = ("localtime", "posixrules")  # files of the zone database, not IANA names
_PERIOD = re.compile(r"(\d{4})-(\d{2})(?:-(\d{2}))?", re.ASCII)


class InvalidPeriod(ValueError):
    """A period that is not YYYY-MM or YYYY-MM-DD."""


class InvalidZone(ValueError):
    """A name that is not an IANA time zone."""


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (`Europe/Berlin`, `UTC`); raises `InvalidZone` saying so."""
    problem = f"unknown time zone {name!r} (an IANA name such as UTC or Europe/Berlin)"
    if name in _MACHINE_ZONES:
        raise InvalidZone(problem)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidZone(problem) from None


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A day (`index`: the proleptic ordinal of the date) or a month (year * 12 + month - 1)."""

    kind: PeriodKind
    index: int

    @property
    def label(self) -> str:
        """`2026-11-30` or `2026-11`: the form `parse_period` reads and the rollups store."""
        if self.kind == "month":
            year, month0 = divmod(self.index, 12)
            return f"{year:04d}-{month0 + 1:02d}"
        if 1 <= self.index <= _MAX_ORDINAL:
            return date.fromordinal(self.index).isoformat()
        # Only the day before date.min and the day after date.max are reachable.
        return "0000-12-31" if self.index < 1 else "10000-01-01"

    def next(self) -> Period:
        return Period(self.kind, self.index + 1)

    def first_day(self) -> int:
        """The ordinal of the period's first local day."""
        if self.kind == "day":
            return self.index
        year, month0 = divmod(self.index, 12)
        if year < 1:
            return 1 - 31 * (12 - month0)  # before 0001-01: only its start is ever needed
        if year > 9999:
            return _MAX_ORDINAL + 1 + 31 * (self.index - 120_000)
        return date(year, month0 + 1, 1).toordinal()

    def bounds_ms(self, zone: ZoneInfo) -> tuple[int, int]:
        """`[start, end)` of the period in `zone`, in epoch milliseconds."""
        return midnight_ms(self.first_day(), zone), midnight_ms(self.next().first_day(), zone)


def parse_period(text: str) -> Period:
    """`2026-11` (a month) or `2026-11-30` (a day); raises `InvalidPeriod`."""
    match = _PERIOD.fullmatch(text.strip())
    problem = f"period {text!r} is not a month (2026-11) or a day (2026-11-30)"
    if match is None:
        raise InvalidPeriod(problem)
    year, month = int(match.group(1)), int(match.group(2))
    try:
        if match.group(3) is None:
            date(year, month, 1)
            return Period("month", year * 12 + month - 1)
        return Period("day", date(year, month, int(match.group(3))).toordinal())
    except ValueError:
        raise InvalidPeriod(problem) from None


@lru_cache(maxsize=8192)
def midnight_ms(ordinal: int, zone: ZoneInfo) -> int:
    """The first instant of local day `ordinal` in `zone`, in epoch milliseconds."""
    day = date.fromordinal(min(max(ordinal, 1), _MAX_ORDINAL))
    offset = datetime(day.year, day.month, day.day, tzinfo=zone).utcoffset()
    assert offset is not None, "a ZoneInfo always has an offset"
    return (ordinal - _EPOCH_ORDINAL) * _DAY_MS - offset // timedelta(milliseconds=1)


def period_of(ms: int, kind: PeriodKind, zone: ZoneInfo) -> Period:
    """The period of `kind` in `zone` that holds the instant `ms`."""
    # The UTC day is within a day or two of the local one (offsets are under 24 h).
    day = ms // _DAY_MS + _EPOCH_ORDINAL
    while midnight_ms(day, zone) > ms:
        day -= 1
    while midnight_ms(day + 1, zone) <= ms:
        day += 1
    if kind == "day":
        return Period("day", day)
    if 1 <= day <= _MAX_ORDINAL:
        local = date.fromordinal(day)
        return Period("month", local.year * 12 + local.month - 1)
    return Period("month", 11 if day < 1 else 120_000)


def split(
    opened_ms: int, closed_ms: int, kind: PeriodKind, zone: ZoneInfo
) -> Iterator[tuple[Period, int]]:
    """The periods of `kind` that `[opened_ms, closed_ms)` overlaps, each with the overlap.

    The overlaps add up to `closed_ms - opened_ms`. A window of no length yields its
    `opened_ms`'s period with 0; a period of no length (a skipped day) is left out.
    """
    period = period_of(opened_ms, kind, zone)
    start, end = period.bounds_ms(zone)
    yield period, min(end, closed_ms) - opened_ms
    while end < closed_ms:
        period = period.next()
        start, end = period.bounds_ms(zone)
        if end > start:
            yield period, min(end, closed_ms) - start


@dataclass(frozen=True, slots=True)
class Billed:
    """What one input's closed windows add to one period: one `input_periods` row's values."""

    windows: int = 0
    billed_ms: int = 0
    longest_ms: int = 0
    reconnected_ms: int = 0
    ended_ms: int = 0
    timed_out_ms: int = 0

    @classmethod
    def one(cls, overlap_ms: int, close_reason: str) -> Billed:
        """One window that overlaps a period by `overlap_ms`."""
        if close_reason not in CLOSE_REASONS:
            raise ValueError(f"unknown close_reason {close_reason!r}")
        by_reason = {f"{reason}_ms": 0 for reason in CLOSE_REASONS}
        by_reason[f"{close_reason}_ms"] = overlap_ms
        return cls(1, overlap_ms, overlap_ms, **by_reason)

    def __add__(self, other: Billed) -> Billed:
        return Billed(
            self.windows + other.windows,
            self.billed_ms + other.billed_ms,
            max(self.longest_ms, other.longest_ms),
            self.reconnected_ms + other.reconnected_ms,
            self.ended_ms + other.ended_ms,
            self.timed_out_ms + other.timed_out_ms,
        )

    def by_close_reason(self) -> dict[str, int]:
        """Billed milliseconds per `close_reason`, every reason named (0 if none)."""
        return {reason: getattr(self, f"{reason}_ms") for reason in CLOSE_REASONS}


def billed_periods(row: Row, zone: ZoneInfo) -> Iterator[tuple[str, Billed]]:
    """What a closed row adds to each day and each month it overlaps, by period label."""
    if row.status != "closed" or row.closed_at is None or row.close_reason is None:
        return
    opened_ms, closed_ms = parse_ms(row.opened_at), parse_ms(row.closed_at)
    for kind in ("day", "month"):
        for period, overlap_ms in split(opened_ms, closed_ms, kind, zone):
            yield period.label, Billed.one(overlap_ms, row.close_reason)


def rollups(rows: Iterable[Row], zone: ZoneInfo) -> dict[tuple[str, str, str], Billed]:
    """Per (provider, input_id, period label): what `input_periods` must hold for `rows`."""
    result: dict[tuple[str, str, str], Billed] = {}
    for row in rows:
        for label, billed in billed_periods(row, zone):
            key = (row.provider, row.input_id, label)
            result[key] = result.get(key, Billed()) + billed
    return result


def billed_in(rows: Iterable[Row], period: Period, zone: ZoneInfo) -> dict[tuple[str, str], Billed]:
    """Per input: what its closed `rows` bill in `period` (the report without rollups)."""
    start_ms, end_ms = period.bounds_ms(zone)
    result: dict[tuple[str, str], Billed] = {}
    for row in rows:
        if row.status != "closed" or row.closed_at is None or row.close_reason is None:
            continue
        opened_ms, closed_ms = parse_ms(row.opened_at), parse_ms(row.closed_at)
        if opened_ms >= end_ms or closed_ms < start_ms:
            continue  # cheap rejection; `split` decides the rest (a boundary, no length)
        for overlapped, overlap_ms in split(opened_ms, closed_ms, period.kind, zone):
            if overlapped == period:
                result[row.input] = result.get(row.input, Billed()) + Billed.one(
                    overlap_ms, row.close_reason
                )
    return result


@dataclass(frozen=True, slots=True)
class Statement:
    """One input's billing statement for one period (SPEC §7)."""

    provider: str
    input_id: str
    period: str
    timezone: str
    billed: Billed
    open_since: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        """SPEC §7's JSON object, its fields in the spec's order."""
        return {
            "provider": self.provider,
            "input_id": self.input_id,
            "period": self.period,
            "timezone": self.timezone,
            "windows": self.billed.windows,
            "billed_ms": self.billed.billed_ms,
            "longest_ms": self.billed.longest_ms,
            "by_close_reason": self.billed.by_close_reason(),
            "open_since": list(self.open_since),
        }


def statements(
    period: Period,
    zone: ZoneInfo,
    billed: Mapping[tuple[str, str], Billed],
    open_windows: Iterable[tuple[str, str, str]],
) -> list[Statement]:
    """A statement per input that bills something in `period` or has a window open in it.

    `billed` is per (provider, input_id); `open_windows` are (provider, input_id,
    opened_at) of windows still open; those opened at or after the period's end are
    left out. Sorted by provider, then input_id.
    """
    _, end_ms = period.bounds_ms(zone)
    open_since: dict[tuple[str, str], list[str]] = {}
    for provider, input_id, opened_at in open_windows:
        if parse_ms(opened_at) < end_ms:
            open_since.setdefault((provider, input_id), []).append(opened_at)
    return [
        Statement(
            provider=provider,
            input_id=input_id,
            period=period.label,
            timezone=zone.key,
            billed=billed.get((provider, input_id), Billed()),
            open_since=tuple(sorted(open_since.get((provider, input_id), []))),
        )
        for provider, input_id in sorted(set(billed) | set(open_since))
    ]
