"""The billing tables in SQLite or PostgreSQL, written one batch per transaction.

Tables: `disconnect_windows` (a row per window), `input_totals` (per input, all
time), `input_periods` (per input and billing period: each local day and month of
the zone in `period_zone`, SPEC §7) and `period_zone` (that zone, one row).

The rules of `rows.py` are kept by the database itself, so they hold against rows
written by earlier batches, other processes, or another consumer group:
- the upsert updates a row only when an open row meets a closed one
  (`WHERE disconnect_windows.status = 'open' AND excluded.status = 'closed'`);
  any other meeting changes nothing, not even `updated_at`;
- `RETURNING` yields a row only for a write that took effect, so a returned
  `closed` is exactly one transition to closed, and only then are that window's
  count and duration added to its input's totals, and its overlaps with each day
  and month (`periods.billed_periods`) added to `input_periods`, in the same
  transaction.
Totals and period rollups therefore equal the sums over closed rows, and a
replayed or duplicated record changes nothing. On PostgreSQL a concurrent writer
of the same window waits for the row lock and then re-checks the `WHERE`, so it
too adds nothing.

The rollups are kept in one zone, the store's (`BILLING_TIMEZONE`), and recorded
in `period_zone` by the first store that prepares the schema (which builds them
from the rows, so a database of an earlier version gets them too). A store of
another zone refuses to prepare it (`ZoneMismatch`) until `rebuild_periods`
recomputed every rollup from the window rows in the new zone, in one
transaction: no Kafka replay. Each batch reads `period_zone` inside its own
transaction and stops on a change (`ZoneChanged`), and a rebuild holds an
exclusive lock that batches take shared (PostgreSQL; SQLite has one writer at a
time anyway), so no batch adds one zone's periods to another's rollups.

Only the connection, the placeholder, the timestamp type, `max` of two values,
the locks and how a transaction begins differ between the two dialects.
"""

from __future__ import annotations

import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from livewindows.billing.periods import Billed, InvalidZone, billed_periods, load_zone, rollups
from livewindows.billing.rows import Row, Totals, fold
from plumbing.settings import ConfigError
from schemas.records import Window
from schemas.timestamps import format_ms, parse_ms

__all__ = [
    "Applied",
    "PostgresStore",
    "Rebuilt",
    "SQLiteStore",
    "Store",
    "ZoneChanged",
    "ZoneMismatch",
    "open_store",
    "redact_url",
]

_COLUMNS = (
    "window_id, provider, input_id, opened_at, closed_at, duration_ms, open_reason, "
    "close_reason, opening_event_id, closing_event_id, status"
)
_FIELDS = tuple(column.strip() for column in _COLUMNS.split(","))
_UPDATED = (*_FIELDS[1:], "updated_at")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS disconnect_windows (
        window_id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        input_id TEXT NOT NULL,
        opened_at {ts} NOT NULL,
        closed_at {ts},
        duration_ms BIGINT,
        open_reason TEXT NOT NULL,
        close_reason TEXT,
        opening_event_id TEXT NOT NULL,
        closing_event_id TEXT,
        status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
        updated_at {ts} NOT NULL,
        CHECK ((status = 'closed') = (duration_ms IS NOT NULL))
    )""",
    """CREATE INDEX IF NOT EXISTS disconnect_windows_by_input
        ON disconnect_windows (provider, input_id)""",
    """CREATE TABLE IF NOT EXISTS input_totals (
        provider TEXT NOT NULL,
        input_id TEXT NOT NULL,
        windows_closed BIGINT NOT NULL,
        total_disconnected_ms BIGINT NOT NULL,
        PRIMARY KEY (provider, input_id)
    )""",
    # period: '2026-11-30' (a local day) or '2026-11' (a local month) of period_zone.
    """CREATE TABLE IF NOT EXISTS input_periods (
        provider TEXT NOT NULL,
        input_id TEXT NOT NULL,
        period TEXT NOT NULL,
        windows BIGINT NOT NULL,
        billed_ms BIGINT NOT NULL,
        longest_ms BIGINT NOT NULL,
        reconnected_ms BIGINT NOT NULL,
        ended_ms BIGINT NOT NULL,
        timed_out_ms BIGINT NOT NULL,
        PRIMARY KEY (provider, input_id, period)
    )""",
    """CREATE INDEX IF NOT EXISTS input_periods_by_period ON input_periods (period)""",
    """CREATE TABLE IF NOT EXISTS period_zone (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        timezone TEXT NOT NULL
    )""",
)

_BILLED = "windows, billed_ms, longest_ms, reconnected_ms, ended_ms, timed_out_ms"
_INSERT_PERIOD = f"""
    INSERT INTO input_periods (provider, input_id, period, {_BILLED})
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_ADD_PERIOD = (
    _INSERT_PERIOD
    + """
    ON CONFLICT (provider, input_id, period) DO UPDATE SET
        windows = input_periods.windows + excluded.windows,
        billed_ms = input_periods.billed_ms + excluded.billed_ms,
        longest_ms = {greatest}(input_periods.longest_ms, excluded.longest_ms),
        reconnected_ms = input_periods.reconnected_ms + excluded.reconnected_ms,
        ended_ms = input_periods.ended_ms + excluded.ended_ms,
        timed_out_ms = input_periods.timed_out_ms + excluded.timed_out_ms
"""
)
_SET_ZONE = """
    INSERT INTO period_zone (id, timezone) VALUES (1, ?)
    ON CONFLICT (id) DO UPDATE SET timezone = excluded.timezone
"""

_UPSERT_WINDOW = f"""
    INSERT INTO disconnect_windows ({_COLUMNS}, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (window_id) DO UPDATE SET
        {", ".join(f"{c} = excluded.{c}" for c in _UPDATED)}
    WHERE disconnect_windows.status = 'open' AND excluded.status = 'closed'
    RETURNING status
"""

_ADD_TOTALS = """
    INSERT INTO input_totals (provider, input_id, windows_closed, total_disconnected_ms)
    VALUES (?, ?, ?, ?)
    ON CONFLICT (provider, input_id) DO UPDATE SET
        windows_closed = input_totals.windows_closed + excluded.windows_closed,
        total_disconnected_ms = input_totals.total_disconnected_ms + excluded.total_disconnected_ms
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SQLITE_BUSY_S = 30.0  # how long a SQLite writer waits for another one


# The contract's timestamps run from year 1 to year 9999: report bounds are clamped to them.
_FIRST_MS = parse_ms("0001-01-01T00:00:00.000Z")
_LAST_MS = parse_ms("9999-12-31T23:59:59.999Z")

Input = tuple[str, str]


class ZoneMismatch(ConfigError):
    """The rollups are kept in another zone than the store's: rebuild them first."""


class ZoneChanged(RuntimeError):
    """`period_zone` changed under a running store (a rebuild in another zone)."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What one batch did: rows inserted or changed, and how many of those closed a window."""

    rows_written: int = 0
    windows_closed: int = 0


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What `rebuild_periods` did."""

    previous_zone: str | None
    zone: str
    windows_closed: int
    period_rows: int


class Store(ABC):
    """The billing tables behind one connection; not shared between threads.

    `zone` is the IANA zone of the period rollups this store writes (`BILLING_TIMEZONE`).
    """

    placeholder = "?"
    timestamp_type = "TEXT"
    greatest = "MAX"
    # Serializes schema creation between processes; SQLite's BEGIN IMMEDIATE already does.
    schema_lock: str | None = None
    # Taken shared by each batch and exclusive by a rebuild of the rollups (see above).
    periods_lock_shared: str | None = None
    periods_lock: str | None = None

    def __init__(self, zone: str = "UTC") -> None:
        try:
            self.zone: ZoneInfo = load_zone(zone)
        except InvalidZone as exc:
            raise ConfigError(str(exc)) from None

    def create_schema(self) -> None:
        """Create the tables and index if missing and adopt the store's zone (every start).

        Raises `ZoneMismatch` if the rollups are kept in another zone.
        """
        with self._transaction():
            recorded = self._prepare()
            if recorded is None:  # a new database, or one from before the rollups
                self._rebuild_periods()
            elif recorded != self.zone.key:
                raise ZoneMismatch(
                    f"the billing period rollups are kept in {recorded}, not in "
                    f"BILLING_TIMEZONE={self.zone.key}: run 'livewindows billing "
                    f"rebuild-periods' with BILLING_TIMEZONE={self.zone.key} (it recomputes "
                    f"them from the window rows, no replay), or set BILLING_TIMEZONE={recorded}"
                )

    def apply(self, windows: Sequence[Window], now_ms: int) -> Applied:
        """Write a batch of window records in one transaction, stamped `updated_at = now_ms`."""
        # Folding first writes each window once per batch; the database merges the
        # folded row with what it holds by the same rule. Sorted ids, inputs and
        # periods keep the lock order the same for concurrent writers (no deadlock).
        batch = fold(windows)
        if not batch:
            return Applied()
        written = closed = 0
        deltas: dict[Input, Totals] = {}
        periods: dict[tuple[str, str, str], Billed] = {}
        updated_at = self._to_db_time(format_ms(now_ms))
        with self._transaction():
            if self.periods_lock_shared is not None:
                self._execute(self.periods_lock_shared)
            recorded = self._recorded_zone()
            if recorded != self.zone.key:
                raise ZoneChanged(
                    f"the period rollups are now kept in {recorded or 'no zone'}, this "
                    f"consumer bills in {self.zone.key} (rebuilt meanwhile?); restart it with "
                    f"BILLING_TIMEZONE={recorded}"
                )
            for window_id in sorted(batch):
                row = batch[window_id]
                returned = self._execute(_UPSERT_WINDOW, self._row_params(row, updated_at))
                if not returned.fetchall():  # (fetched to the end: the statement completes)
                    continue  # the stored row already wins: nothing changed
                written += 1
                if row.status == "closed":
                    assert row.duration_ms is not None, "a closed row has a duration"
                    closed += 1
                    deltas[row.input] = deltas.get(row.input, Totals()) + Totals(1, row.duration_ms)
                    for label, billed in billed_periods(row, self.zone):
                        key = (*row.input, label)
                        periods[key] = periods.get(key, Billed()) + billed
            for (provider, input_id), delta in sorted(deltas.items()):
                self._execute(
                    _ADD_TOTALS,
                    (provider, input_id, delta.windows_closed, delta.total_disconnected_ms),
                )
            add_period = _ADD_PERIOD.format(greatest=self.greatest)
            for key, billed in sorted(periods.items()):
                self._execute(add_period, (*key, *_billed_values(billed)))
        return Applied(written, closed)

    def rebuild_periods(self) -> Rebuilt:
        """Recompute every period rollup from the window rows in the store's zone, and
        record that zone, in one transaction (after a change of `BILLING_TIMEZONE`)."""
        with self._transaction():
            previous = self._prepare()
            windows_closed, period_rows = self._rebuild_periods()
        return Rebuilt(previous, self.zone.key, windows_closed, period_rows)

    def _prepare(self) -> str | None:
        """In a transaction: the tables made, batches held off; the zone recorded so far."""
        if self.schema_lock is not None:
            self._execute(self.schema_lock)
        for statement in _SCHEMA:
            self._execute(statement.format(ts=self.timestamp_type))
        if self.periods_lock is not None:
            self._execute(self.periods_lock)
        return self._recorded_zone()

    def _rebuild_periods(self) -> tuple[int, int]:
        closed = self._select_rows("WHERE status = 'closed'")
        table = rollups(closed, self.zone)
        self._execute("DELETE FROM input_periods")
        self._executemany(
            _INSERT_PERIOD, [(*key, *_billed_values(b)) for key, b in sorted(table.items())]
        )
        self._execute(_SET_ZONE, (self.zone.key,))
        return len(closed), len(table)

    def _recorded_zone(self) -> str | None:
        found = self._execute("SELECT timezone FROM period_zone WHERE id = 1").fetchall()
        return str(found[0][0]) if found else None

    def rows(self) -> dict[str, Row]:
        """Every `disconnect_windows` row by window id (without `updated_at`)."""
        return {row.window_id: row for row, _ in self.rows_with_updated_at()}

    def rows_with_updated_at(self) -> list[tuple[Row, str]]:
        """Every row with its `updated_at`, in window id order."""
        result = self._execute(
            f"SELECT {_COLUMNS}, updated_at FROM disconnect_windows ORDER BY window_id"
        )
        return [(self._row(values[:-1]), self._from_db_time(values[-1])) for values in result]

    def totals(self) -> dict[Input, Totals]:
        """Every `input_totals` row by (provider, input_id)."""
        result = self._execute(
            "SELECT provider, input_id, windows_closed, total_disconnected_ms FROM input_totals"
        )
        return {(p, i): Totals(int(n), int(ms)) for p, i, n, ms in result}

    # The report's reads. They never create or change anything, so they work on a
    # database opened with `open_store(..., create=False)`, even one of an earlier
    # version (without the rollup tables).

    def has_windows(self) -> bool:
        """Whether `disconnect_windows` exists and holds a row."""
        if not self._has_table("disconnect_windows"):
            return False
        return bool(self._execute("SELECT 1 FROM disconnect_windows LIMIT 1").fetchall())

    def period_zone(self) -> str | None:
        """The zone the rollups are kept in; None if there are none (an earlier version)."""
        if not (self._has_table("period_zone") and self._has_table("input_periods")):
            return None
        return self._recorded_zone()

    def periods(
        self, period: str | None = None, input: Input | None = None
    ) -> dict[tuple[str, str, str], Billed]:
        """`input_periods` by (provider, input_id, period), of one period or input if given."""
        where, params = _input_filter(input, "period = ?" if period else None)
        result = self._execute(
            f"SELECT provider, input_id, period, {_BILLED} FROM input_periods {where}",
            (*([period] if period else []), *params),
        )
        return {(p, i, label): Billed(*(int(v) for v in values)) for p, i, label, *values in result}

    def closed_rows_between(
        self, start_ms: int, end_ms: int, input: Input | None = None
    ) -> list[Row]:
        """The closed rows that may overlap `[start_ms, end_ms)` (a superset: those that
        touch it), for `periods.billed_in` to decide."""
        where, params = _input_filter(
            input, "status = 'closed' AND opened_at <= ? AND closed_at >= ?"
        )
        bounds = (self._db_time_ms(end_ms), self._db_time_ms(start_ms))
        return self._select_rows(where, (*bounds, *params))

    def open_windows(
        self, before_ms: int, input: Input | None = None
    ) -> list[tuple[str, str, str]]:
        """(provider, input_id, opened_at) of the windows still open that opened before
        `before_ms` (and maybe at it: `periods.statements` decides)."""
        where, params = _input_filter(input, "status = 'open' AND opened_at <= ?")
        result = self._execute(
            f"SELECT provider, input_id, opened_at FROM disconnect_windows {where}",
            (self._db_time_ms(before_ms), *params),
        )
        return [(p, i, self._from_db_time(opened_at)) for p, i, opened_at in result]

    def _select_rows(self, where: str, params: Sequence[Any] = ()) -> list[Row]:
        result = self._execute(f"SELECT {_COLUMNS} FROM disconnect_windows {where}", params)
        return [self._row(values) for values in result]

    def _db_time_ms(self, ms: int) -> Any:
        return self._to_db_time(format_ms(min(max(ms, _FIRST_MS), _LAST_MS)))

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _transaction(self) -> Any:
        """A context manager: commit on success, roll back on an exception."""

    @abstractmethod
    def _cursor_execute(self, sql: str, params: Sequence[Any]) -> Any: ...

    @abstractmethod
    def _executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def _has_table(self, name: str) -> bool: ...

    def _to_db_time(self, text: str) -> Any:
        return text

    def _from_db_time(self, value: Any) -> str:
        return str(value)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.placeholder != "?":
            sql = sql.replace("?", self.placeholder)
        return self._cursor_execute(sql, params)

    def _row_params(self, row: Row, updated_at: Any) -> tuple[Any, ...]:
        return (
            row.window_id,
            row.provider,
            row.input_id,
            self._to_db_time(row.opened_at),
            None if row.closed_at is None else self._to_db_time(row.closed_at),
            row.duration_ms,
            row.open_reason,
            row.close_reason,
            row.opening_event_id,
            row.closing_event_id,
            row.status,
            updated_at,
        )

    def _row(self, values: Sequence[Any]) -> Row:
        fields = dict(zip(_FIELDS, values, strict=True))
        for name in ("opened_at", "closed_at"):
            if fields[name] is not None:
                fields[name] = self._from_db_time(fields[name])
        if fields["duration_ms"] is not None:
            fields["duration_ms"] = int(fields["duration_ms"])
        return Row(**fields)


class SQLiteStore(Store):
    """Embedded, no set-up: WAL so readers never block the consumer, full fsync on commit.

    `synchronous=FULL` because Kafka offsets are committed right after the database
    commit: a commit lost to a power cut after that would lose billable windows.
    """

    def __init__(self, path: str, zone: str = "UTC") -> None:
        super().__init__(zone)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(path, timeout=_SQLITE_BUSY_S, isolation_level=None)
        self._enable_wal()
        self._connection.execute("PRAGMA synchronous=FULL")

    def _enable_wal(self) -> None:
        # Two connections switching a new file to WAL at once can deadlock on their
        # shared locks; SQLite then answers "locked" without waiting, so retry here.
        deadline = time.monotonic() + _SQLITE_BUSY_S
        while True:
            try:
                self._connection.execute("PRAGMA journal_mode=WAL").fetchall()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def close(self) -> None:
        self._connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def _cursor_execute(self, sql: str, params: Sequence[Any]) -> Any:
        return self._connection.execute(sql, params)

    def _executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self._connection.executemany(sql, params)

    def _has_table(self, name: str) -> bool:
        found = self._connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        )
        return bool(found.fetchall())


class PostgresStore(Store):
    """PostgreSQL through psycopg 3; times are `timestamptz` with millisecond values."""

    placeholder = "%s"
    timestamp_type = "TIMESTAMPTZ"
    # Two consumers starting at once could both run CREATE TABLE IF NOT EXISTS and
    # one fail on the catalog's unique index; a transaction-scoped lock orders them.
    schema_lock = "SELECT pg_advisory_xact_lock(7253041)"
    periods_lock_shared = "SELECT pg_advisory_xact_lock_shared(7253042)"
    periods_lock = "SELECT pg_advisory_xact_lock(7253042)"
    greatest = "GREATEST"

    def __init__(self, url: str, zone: str = "UTC") -> None:
        super().__init__(zone)
        try:
            import psycopg
        except ImportError:  # pragma: no cover - depends on the installation
            raise ConfigError("PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from None
        self._connection = psycopg.connect(url, autocommit=True, application_name="livewindows")

    def close(self) -> None:
        self._connection.close()

    def _transaction(self) -> Any:
        return self._connection.transaction()

    def _cursor_execute(self, sql: str, params: Sequence[Any]) -> Any:
        return self._connection.execute(sql, params)

    def _executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        with self._connection.cursor() as cursor:
            cursor.executemany(sql.replace("?", self.placeholder), params)

    def _has_table(self, name: str) -> bool:
        # to_regclass looks the name up along search_path, as the queries do.
        found = self._connection.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        row = found.fetchone()
        return row is not None and bool(row[0])

    def _to_db_time(self, text: str) -> Any:
        return _EPOCH + timedelta(milliseconds=parse_ms(text))

    def _from_db_time(self, value: Any) -> str:
        return format_ms((value - _EPOCH) // timedelta(milliseconds=1))


def open_store(url: str, zone: str = "UTC", *, create: bool = True) -> Store:
    """A store for `sqlite:///path` (`sqlite:///:memory:`: a throwaway one, for tests) or
    `postgresql://...` whose period rollups are in `zone`, schema ready.

    With `create=False` (the report, a rebuild) nothing is created: a SQLite file
    that does not exist is a `ConfigError`, and the schema is left as it is.
    """
    store: Store
    if url.startswith("sqlite://"):
        # SQLAlchemy's form: sqlite:///relative/path, sqlite:////absolute/path.
        path = url.removeprefix("sqlite://").removeprefix("/")
        if not path:
            # An empty path would be a database thrown away at exit, with the
            # group's offsets committed past what it held.
            raise ConfigError(f"--db {url!r} names no file (sqlite:///PATH)")
        if not create and path != ":memory:" and not Path(path).is_file():
            raise ConfigError(f"--db {url}: no such database file")
        store = SQLiteStore(path, zone)
    elif url.startswith(("postgresql://", "postgres://")):
        store = PostgresStore(url, zone)
    else:
        raise ConfigError(f"--db must be sqlite:///PATH or postgresql://..., not {redact_url(url)}")
    if not create:
        return store
    try:
        store.create_schema()
    except BaseException:
        store.close()
        raise
    return store


def _billed_values(billed: Billed) -> tuple[int, ...]:
    return (
        billed.windows,
        billed.billed_ms,
        billed.longest_ms,
        billed.reconnected_ms,
        billed.ended_ms,
        billed.timed_out_ms,
    )


def _input_filter(input: Input | None, condition: str | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause of `condition` and, if given, one input; and the input's parameters."""
    conditions = [condition] if condition else []
    if input is not None:
        conditions.append("provider = ? AND input_id = ?")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    return where, input or ()


def redact_url(url: str) -> str:
    """`url` with any password replaced, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
