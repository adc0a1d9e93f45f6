"""`livewindows billing report` and `rebuild-periods`: statements, renderings, errors.

The store-backed tests run on SQLite and on the real PostgreSQL of `conftest.py`.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livewindows.billing.periods import Billed, PeriodKind, Statement, parse_period, period_of
from livewindows.billing.report import CSV_HEADER, render, report
from livewindows.billing.rows import Row
from livewindows.billing.store import open_store
from livewindows.cli import main
from schemas.records import Window
from schemas.timestamps import parse_ms
from tests.billing.test_periods import ZONES, closed_rows
from tests.billing.windowkit import closed, opened

HOUR_MS = 3_600_000
NOW_MS = parse_ms("2027-01-01T00:00:00.000Z")
MakeUrl = Callable[[], str]

WINDOWS = [
    # 22:00 Berlin on Nov 30 to 01:00 on Dec 1: 2 h in November, 1 h in December
    closed("e1", 3 * HOUR_MS, opened_ms=parse_ms("2026-11-30T21:00:00.000Z")),
    closed("e2", 60_000, "ls-9", parse_ms("2026-11-02T10:00:00.000Z"), "fastpix",
           close_reason="timed_out"),
    closed("e3", 1500, opened_ms=parse_ms("2026-11-10T08:00:00.000Z"), close_reason="ended"),
    opened("e4", "in2", parse_ms("2026-11-20T10:00:00.000Z"), open_reason="errored"),
    opened("e5", "in3", parse_ms("2026-12-05T10:00:00.000Z")),  # opened after November
]  # fmt: skip


def filled(url: str, zone: str = "Europe/Berlin", windows: list[Window] = WINDOWS) -> str:
    store = open_store(url, zone)
    store.apply(windows, NOW_MS)
    store.close()
    return url


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_spec_s_array(make_db_url: MakeUrl, capsys: pytest.CaptureFixture[str]) -> None:
    url = filled(make_db_url())
    argv = ["billing", "report", "--db", url, "--period", "2026-11", "--format", "json"]
    code, out, err = run([*argv, "--tz", "Europe/Berlin"], capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == [
        {
            "provider": "cloudflare",
            "input_id": "in1",
            "period": "2026-11",
            "timezone": "Europe/Berlin",
            "windows": 2,
            "billed_ms": 2 * HOUR_MS + 1500,
            "longest_ms": 2 * HOUR_MS,
            "by_close_reason": {"reconnected": 2 * HOUR_MS, "ended": 1500, "timed_out": 0},
            "open_since": [],
        },
        {
            "provider": "cloudflare",
            "input_id": "in2",
            "period": "2026-11",
            "timezone": "Europe/Berlin",
            "windows": 0,
            "billed_ms": 0,
            "longest_ms": 0,
            "by_close_reason": {"reconnected": 0, "ended": 0, "timed_out": 0},
            "open_since": ["2026-11-20T10:00:00.000Z"],
        },
        {
            "provider": "fastpix",
            "input_id": "ls-9",
            "period": "2026-11",
            "timezone": "Europe/Berlin",
            "windows": 1,
            "billed_ms": 60_000,
            "longest_ms": 60_000,
            "by_close_reason": {"reconnected": 0, "ended": 0, "timed_out": 60_000},
            "open_since": [],
        },
    ]
    # In UTC the same window is all November's (it ends at 00:00Z): computed from the rows.
    code, out, _ = run([*argv, "--tz", "UTC", "--input", "cloudflare:in1"], capsys)
    [statement] = json.loads(out)
    assert (code, statement["billed_ms"], statement["timezone"]) == (0, 3 * HOUR_MS + 1500, "UTC")


def test_csv_has_a_header_row(make_db_url: MakeUrl, capsys: pytest.CaptureFixture[str]) -> None:
    url = filled(make_db_url())
    argv = ["billing", "report", "--db", url, "--period", "2026-12-01", "--tz", "Europe/Berlin"]
    code, out, _ = run([*argv, "--format", "csv"], capsys)
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        list(CSV_HEADER),
        ["cloudflare", "in1", "2026-12-01", "Europe/Berlin", "1", "3600000", "3600000",
         "3600000", "0", "0", ""],
        ["cloudflare", "in2", "2026-12-01", "Europe/Berlin", "0", "0", "0", "0", "0", "0",
         "2026-11-20T10:00:00.000Z"],
    ]  # fmt: skip


def test_the_table_is_readable(make_db_url: MakeUrl, capsys: pytest.CaptureFixture[str]) -> None:
    url = filled(make_db_url())
    code, out, _ = run(
        ["billing", "report", "--db", url, "--period", "2026-03", "--tz", "Europe/Berlin"],
        capsys,
    )
    assert code == 0
    assert out.splitlines()[0] == (
        "month 2026-03 in Europe/Berlin: 2026-03-01T00:00+01:00 to 2026-04-01T00:00+02:00 "
        "(743 h), from the rollups"
    )
    assert "no window overlaps this period" in out
    code, out, _ = run(
        ["billing", "report", "--db", url, "--period", "2026-11", "--tz", "Asia/Kolkata"],
        capsys,
    )
    lines = out.splitlines()
    assert lines[0].endswith("(720 h), from the window rows")
    assert lines[1].split() == ["input", "windows", "billed", "longest", "reconnected", "ended",
                                "timed_out", "open", "since"]  # fmt: skip
    # e1 is 02:30-05:30 on December 1 in Kolkata: not November's there
    assert lines[2].split() == ["cloudflare:in1", "1", "0:00:01.500", "0:00:01.500",
                                "0:00:00.000", "0:00:01.500", "0:00:00.000"]  # fmt: skip
    assert lines[3].split()[-1] == "2026-11-20T10:00:00.000Z"
    assert lines[5].split()[:3] == ["total", "2", "0:01:01.500"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--period", "2026-13"], "livewindows: period '2026-13' is not a month"),
        (["--period", "Nov"], "livewindows: period 'Nov' is not a month"),
        (["--period", "2026-11", "--tz", "Europe/Berln"], "unknown time zone 'Europe/Berln'"),
        (["--period", "2026-11", "--input", "in1"], "--input 'in1' is not <provider>:<input_id>"),
        (["--period", "2026-11", "--input", "youtube:x"], "is not <provider>:<input_id>"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = filled(f"sqlite:///{tmp_path / 'b.db'}")
    code, out, err = run(["billing", "report", "--db", url, *argv], capsys)
    assert (code, out) == (2, "")
    assert message in err and err.count("\n") == 1


def test_an_empty_or_missing_database_is_one_line_and_non_zero(
    make_db_url: MakeUrl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = make_db_url()
    open_store(empty).close()
    code, out, err = run(["billing", "report", "--db", empty, "--period", "2026-11"], capsys)
    assert (code, out) == (1, "")
    assert "holds no windows yet" in err and err.count("\n") == 1
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    code, _, err = run(["billing", "report", "--db", missing, "--period", "2026-11"], capsys)
    assert code == 2 and "no such database file" in err and err.count("\n") == 1
    assert not (tmp_path / "missing.db").exists()
    (tmp_path / "junk.db").write_text("not a database\n")
    junk = f"sqlite:///{tmp_path / 'junk.db'}"
    code, _, err = run(["billing", "report", "--db", junk, "--period", "2026-11"], capsys)
    assert code == 1 and err.startswith("billing report: cannot ") and err.count("\n") == 1


def test_the_console_script_prints_no_traceback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    open_store(url).close()
    for argv, code in (
        (["--period", "2026-11"], 1),  # empty
        (["--period", "2026-11-31"], 2),
        (["--period", "2026-11", "--tz", "Nowhere/City"], 2),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "livewindows.cli", "billing", "report", "--db", url, *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == code
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_an_old_database_is_reported_from_its_rows(
    make_db_url: MakeUrl, capsys: pytest.CaptureFixture[str]
) -> None:
    url = filled(make_db_url(), "UTC")
    store = open_store(url)
    with store._transaction():  # as the version before the rollups left it
        store._execute("DROP TABLE input_periods")
        store._execute("DROP TABLE period_zone")
    store.close()
    code, out, _ = run(["billing", "report", "--db", url, "--period", "2026-11", "--tz", "UTC"],
                       capsys)  # fmt: skip
    assert code == 0 and "from the window rows" in out.splitlines()[0]


def test_rebuild_periods_moves_the_rollups_to_another_zone(
    make_db_url: MakeUrl, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = filled(make_db_url(), "UTC")
    monkeypatch.setenv("BILLING_TIMEZONE", "Europe/Berlin")
    report_argv = ["billing", "report", "--db", url, "--period", "2026-11", "--format", "json"]
    _, from_rows, _ = run(report_argv, capsys)
    code, out, err = run(["billing", "--db", url, "rebuild-periods"], capsys)
    assert (code, err) == (0, "")
    assert out.startswith("rebuilt ") and "in Europe/Berlin (they were in UTC)" in out
    store = open_store(url, "Europe/Berlin")  # the consumer's start accepts it now
    assert store.period_zone() == "Europe/Berlin"
    store.close()
    _, from_rollups, _ = run(report_argv, capsys)
    assert json.loads(from_rollups) == json.loads(from_rows)
    assert json.loads(from_rows)[0]["billed_ms"] == 2 * HOUR_MS + 1500
    code, _, err = run(["billing", "rebuild-periods", "--db", url, "--tz", "Mars/Base"], capsys)
    assert code == 2 and "unknown time zone" in err


def test_render_of_nothing() -> None:
    period, zone = parse_period("2026-11-30"), ZoneInfo("Asia/Kolkata")
    assert render([], "json", period, zone, "rows") == "[]\n"
    assert render([], "csv", period, zone, "rows") == ",".join(CSV_HEADER) + "\n"
    statement = Statement("gjirafa", "a,b", "2026-11-30", "Asia/Kolkata", Billed.one(5, "ended"),
                          ("x", "y"))  # fmt: skip
    rows = list(csv.reader(io.StringIO(render([statement], "csv", period, zone, "rows"))))
    assert rows[1][:2] == ["gjirafa", "a,b"] and rows[1][-1] == "x y"  # quoted, not split


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=closed_rows(), zone=st.sampled_from(ZONES), data=st.data())
def test_rollups_and_rows_give_the_same_statements(
    make_db_url: MakeUrl, rows: list[Row], zone: str, data: st.DataObject
) -> None:
    windows = [_window(row) for row in rows]
    windows.append(opened("open", "in2", parse_ms(rows[0].opened_at)))
    tz = ZoneInfo(zone)
    kind: PeriodKind = data.draw(st.sampled_from(["day", "month"]))
    period = period_of(parse_ms(data.draw(st.sampled_from(rows)).opened_at), kind, tz)
    url = make_db_url()
    store = open_store(url, "Asia/Kolkata" if zone == "UTC" else "UTC")  # rollups elsewhere
    try:
        store.apply(windows, NOW_MS)
        from_rows, source = report(store, period, tz)
        assert source == "rows"
        store.close()
        store = open_store(url, zone, create=False)
        store.rebuild_periods()
        from_rollups, source = report(store, period, tz)
        assert source == "rollups"
    finally:
        store.close()
    assert from_rollups == from_rows
    assert sum(s.billed.windows for s in from_rows) >= 1
    # in2's open window shows where it opened before the period's end (SPEC §7)
    _start_ms, end_ms = period.bounds_ms(tz)
    open_since = (rows[0].opened_at,) if parse_ms(rows[0].opened_at) < end_ms else ()
    for statement in from_rows:
        if statement.input_id == "in2":
            assert statement.open_since == open_since


def _window(row: Row) -> Window:
    assert row.closed_at is not None and row.duration_ms is not None and row.close_reason
    return closed(
        row.opening_event_id,
        row.duration_ms,
        row.input_id,
        parse_ms(row.opened_at),
        close_reason=row.close_reason,
    )
