"""The billing tables in SQLite or PostgreSQL, written one batch per transaction.

The rules of `rows.py` are kept by the database itself, so they hold against rows
written by earlier batches, other processes, or another consumer group:
- the upsert updates a row only when an open row meets a closed one
  (`WHERE disconnect_windows.status = 'open' AND excluded.status = 'closed'`);
  any other meeting changes nothing, not even `updated_at`;
- `RETURNING` yields a row only for a write that took effect, so a returned
  `closed` is exactly one transition to closed, and only then are that window's
  count and duration added to its input's totals, in the same transaction.
Totals therefore equal the sums over closed rows, and a replayed or duplicated
record changes nothing. On PostgreSQL a concurrent writer of the same window
waits for the row lock and then re-checks the `WHERE`, so it too adds nothing.

Only the connection, the placeholder, the timestamp type and how a transaction
begins differ between the two dialects.
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

from livewindows.billing.rows import Row, Totals, fold
from plumbing.settings import ConfigError
from schemas.records import Window
from schemas.timestamps import format_ms, parse_ms

__all__ = ["Applied", "PostgresStore", "SQLiteStore", "Store", "open_store", "redact_url"]

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
)

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


@dataclass(frozen=True, slots=True)
class Applied:
    """What one batch did: rows inserted or changed, and how many of those closed a window."""

    rows_written: int = 0
    windows_closed: int = 0


class Store(ABC):
    """The two billing tables behind one connection; not shared between threads."""

    placeholder = "?"
    timestamp_type = "TEXT"
    # Serializes schema creation between processes; SQLite's BEGIN IMMEDIATE already does.
    schema_lock: str | None = None

    def create_schema(self) -> None:
        """Create the tables and index if missing (safe to run on every start)."""
        with self._transaction():
            if self.schema_lock is not None:
                self._execute(self.schema_lock)
            for statement in _SCHEMA:
                self._execute(statement.format(ts=self.timestamp_type))

    def apply(self, windows: Sequence[Window], now_ms: int) -> Applied:
        """Write a batch of window records in one transaction, stamped `updated_at = now_ms`."""
        # Folding first writes each window once per batch; the database merges the
        # folded row with what it holds by the same rule. Sorted ids and inputs keep
        # the lock order the same for concurrent writers (no deadlock).
        batch = fold(windows)
        if not batch:
            return Applied()
        written = closed = 0
        deltas: dict[tuple[str, str], Totals] = {}
        updated_at = self._to_db_time(format_ms(now_ms))
        with self._transaction():
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
            for (provider, input_id), delta in sorted(deltas.items()):
                self._execute(
                    _ADD_TOTALS,
                    (provider, input_id, delta.windows_closed, delta.total_disconnected_ms),
                )
        return Applied(written, closed)

    def rows(self) -> dict[str, Row]:
        """Every `disconnect_windows` row by window id (without `updated_at`)."""
        return {row.window_id: row for row, _ in self.rows_with_updated_at()}

    def rows_with_updated_at(self) -> list[tuple[Row, str]]:
        """Every row with its `updated_at`, in window id order."""
        result = self._execute(
            f"SELECT {_COLUMNS}, updated_at FROM disconnect_windows ORDER BY window_id"
        )
        return [(self._row(values[:-1]), self._from_db_time(values[-1])) for values in result]

    def totals(self) -> dict[tuple[str, str], Totals]:
        """Every `input_totals` row by (provider, input_id)."""
        result = self._execute(
            "SELECT provider, input_id, windows_closed, total_disconnected_ms FROM input_totals"
        )
        return {(p, i): Totals(int(n), int(ms)) for p, i, n, ms in result}

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _transaction(self) -> Any:
        """A context manager: commit on success, roll back on an exception."""

    @abstractmethod
    def _cursor_execute(self, sql: str, params: Sequence[Any]) -> Any: ...

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

    def __init__(self, path: str) -> None:
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


class PostgresStore(Store):
    """PostgreSQL through psycopg 3; times are `timestamptz` with millisecond values."""

    placeholder = "%s"
    timestamp_type = "TIMESTAMPTZ"
    # Two consumers starting at once could both run CREATE TABLE IF NOT EXISTS and
    # one fail on the catalog's unique index; a transaction-scoped lock orders them.
    schema_lock = "SELECT pg_advisory_xact_lock(7253041)"

    def __init__(self, url: str) -> None:
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

    def _to_db_time(self, text: str) -> Any:
        return _EPOCH + timedelta(milliseconds=parse_ms(text))

    def _from_db_time(self, value: Any) -> str:
        return format_ms((value - _EPOCH) // timedelta(milliseconds=1))


def open_store(url: str) -> Store:
    """A store for `sqlite:///path` (`sqlite:///:memory:`: a throwaway one, for tests) or
    `postgresql://...`, schema ready."""
    store: Store
    if url.startswith("sqlite://"):
        # SQLAlchemy's form: sqlite:///relative/path, sqlite:////absolute/path.
        path = url.removeprefix("sqlite://").removeprefix("/")
        if not path:
            # An empty path would be a database thrown away at exit, with the
            # group's offsets committed past what it held.
            raise ConfigError(f"--db {url!r} names no file (sqlite:///PATH)")
        store = SQLiteStore(path)
    elif url.startswith(("postgresql://", "postgres://")):
        store = PostgresStore(url)
    else:
        raise ConfigError(f"--db must be sqlite:///PATH or postgresql://..., not {redact_url(url)}")
    try:
        store.create_schema()
    except BaseException:
        store.close()
        raise
    return store


def redact_url(url: str) -> str:
    """`url` with any password replaced, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
