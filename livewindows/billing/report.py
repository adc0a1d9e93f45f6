"""`livewindows billing report` and `billing rebuild-periods`: statements per input (SPEC §7).

Where a statement comes from: the consumer keeps rollups per local day and month in
one zone (`BILLING_TIMEZONE`, recorded in `period_zone`). A report in that zone reads
them; a report in any other zone (`--tz`) computes the same statement from the
window rows (`periods.billed_in`), so every zone can be reported without a replay
or a rebuild, only more slowly. Both ways give the same numbers
(`tests/billing/test_report.py`). `rebuild-periods` moves the rollups to another
zone, after a change of `BILLING_TIMEZONE`.

Open windows are read from the rows either way. The statements themselves and
their three renderings are pure (`periods.statements`, `render`); this module
only reads the database and prints.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from livewindows.billing.periods import (
    CLOSE_REASONS,
    Billed,
    InvalidPeriod,
    InvalidZone,
    Period,
    Statement,
    billed_in,
    load_zone,
    parse_period,
    statements,
)
from livewindows.billing.store import Input, Store, open_store, redact_url
from plumbing.settings import ConfigError, Settings
from schemas.records import Provider
from schemas.timestamps import format_ms

__all__ = ["Source", "rebuild_command", "render", "report", "report_command"]

Format = Literal["table", "csv", "json"]
Source = Literal["rollups", "rows"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")
CSV_HEADER = (
    "provider",
    "input_id",
    "period",
    "timezone",
    "windows",
    "billed_ms",
    "longest_ms",
    *(f"{reason}_ms" for reason in CLOSE_REASONS),
    "open_since",
)


class NoWindows(Exception):
    """The database holds no window at all: nothing to report, which is not a statement."""


def report(
    store: Store, period: Period, zone: ZoneInfo, input: Input | None = None
) -> tuple[list[Statement], Source]:
    """The statements of `period` in `zone`, and whether they came from the rollups."""
    if not store.has_windows():
        raise NoWindows
    start_ms, end_ms = period.bounds_ms(zone)
    billed: dict[tuple[str, str], Billed]
    source: Source
    if store.period_zone() == zone.key:
        rolled_up = store.periods(period.label, input)
        billed = {(provider, input_id): b for (provider, input_id, _), b in rolled_up.items()}
        source = "rollups"
    else:
        billed = billed_in(store.closed_rows_between(start_ms, end_ms, input), period, zone)
        source = "rows"
    return statements(period, zone, billed, store.open_windows(end_ms, input)), source


def render(
    result: Sequence[Statement], output: Format, period: Period, zone: ZoneInfo, source: Source
) -> str:
    """The statements as SPEC §7's JSON array, CSV with a header row, or a table."""
    if output == "json":
        return json.dumps([statement.as_json() for statement in result], indent=2) + "\n"
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for s in result:
            values = s.as_json()
            writer.writerow(
                [
                    *(values[name] for name in CSV_HEADER[:7]),
                    *s.billed.by_close_reason().values(),
                    " ".join(s.open_since),
                ]
            )
        return buffer.getvalue()
    return _table(result, period, zone, source)


def _table(result: Sequence[Statement], period: Period, zone: ZoneInfo, source: Source) -> str:
    start_ms, end_ms = period.bounds_ms(zone)
    hours = (end_ms - start_ms) / 3_600_000
    origin = "the rollups" if source == "rollups" else "the window rows"
    lines = [
        f"{period.kind} {period.label} in {zone.key}: {_local(start_ms, zone)} to "
        f"{_local(end_ms, zone)} ({hours:g} h), from {origin}",
    ]
    if not result:
        return "\n".join([*lines, "no window overlaps this period"]) + "\n"
    header = ["input", "windows", "billed", "longest", *CLOSE_REASONS, "open since"]
    rows = [[f"{s.provider}:{s.input_id}", *_figures(s.billed), ", ".join(s.open_since)]
            for s in result]  # fmt: skip
    total = Billed()
    for s in result:
        total += s.billed
    rows.append(["total", *_figures(total), ""])
    widths = [max(len(row[n]) for row in [header, *rows]) for n in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:-1], strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    lines.append("durations are h:mm:ss.mmm; open windows are listed, not billed")
    return "\n".join(lines) + "\n"


def _figures(billed: Billed) -> list[str]:
    reasons = billed.by_close_reason().values()
    return [
        str(billed.windows),
        *(_duration(ms) for ms in (billed.billed_ms, billed.longest_ms, *reasons)),
    ]


def _duration(ms: int) -> str:
    seconds, milli = divmod(ms, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{hour}:{minute:02d}:{second:02d}.{milli:03d}"


def _local(ms: int, zone: ZoneInfo) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, zone).isoformat(timespec="minutes")
    except (OverflowError, ValueError, OSError):  # beyond datetime's years
        return format_ms(ms)


def parse_input(text: str) -> Input:
    """`cloudflare:in1` as (provider, input_id); raises `ConfigError`."""
    provider, sep, input_id = text.partition(":")
    providers = get_args(Provider)
    if not sep or not input_id or provider not in providers:
        raise ConfigError(
            f"--input {text!r} is not <provider>:<input_id> with a provider of "
            f"{', '.join(providers)}"
        )
    return provider, input_id


def report_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        period = parse_period(args.period)
        zone = load_zone(args.tz or settings.billing_timezone)
    except (InvalidPeriod, InvalidZone) as exc:
        raise ConfigError(str(exc)) from None
    input = None if args.input is None else parse_input(args.input)
    store = _open(args.db, zone.key, "billing report")
    if store is None:
        return 1
    try:
        result, source = report(store, period, zone, input)
    except NoWindows:
        _stderr(
            f"billing report: {redact_url(args.db)} holds no windows yet (is it the database "
            f"'livewindows billing --db' writes?)"
        )
        return 1
    except Exception as exc:  # the database: unreachable, not a billing database, ...
        _stderr(f"billing report: cannot read {redact_url(args.db)}: {_one_line(exc)}")
        return 1
    finally:
        store.close()
    return _write(render(result, args.format, period, zone, source))


def rebuild_command(args: argparse.Namespace, settings: Settings) -> int:
    zone = args.tz or settings.billing_timezone
    store = _open(args.db, zone, "billing rebuild-periods")
    if store is None:
        return 1
    try:
        rebuilt = store.rebuild_periods()
    except Exception as exc:
        _stderr(f"billing rebuild-periods: {redact_url(args.db)}: {_one_line(exc)}")
        return 1
    finally:
        store.close()
    _write(
        f"rebuilt {rebuilt.period_rows:,} period rollups from {rebuilt.windows_closed:,} closed "
        f"windows in {rebuilt.zone} (they were in {rebuilt.previous_zone or 'no zone'}); "
        f"run the consumer with BILLING_TIMEZONE={rebuilt.zone}\n"
    )
    return 0


def _open(url: str, zone: str, command: str) -> Store | None:
    try:
        return open_store(url, zone, create=False)
    except ConfigError:
        raise
    except Exception as exc:  # unreachable, refused, not a database file ...
        _stderr(f"{command}: cannot open {redact_url(url)}: {_one_line(exc)}")
        return None


def _write(text: str) -> int:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + " ".join(str(exc).split())


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
