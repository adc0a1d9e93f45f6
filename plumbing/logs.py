"""Logging for every command: one setup, text or JSON lines, repeated lines held back.

`configure_logging` is the one setup of `serve`, `worker`, `replay` and
`billing`: a handler on stderr in the format `LOG_FORMAT` names, with the
`RepeatedLines` filter. `text` (the default) is one human line per record;
`json` is one JSON object per line for a log pipeline, with these keys:

- `time` (RFC 3339, UTC), `level`, `logger`, `service` (`producer`, `worker`,
  `replay` or `billing`), `message`; `exc_info` when there is a traceback;
- the fields a log call passes with `extra=`. About one record they are named
  `event_id`, `input_id`, `partition` and `offset` (`record_fields` builds them;
  a line about a partition has `partition`, and `offset` where it resumes);
  a `Fields` message (the producer's request line) puts its keys at the top level.

While Kafka is down, aiokafka logs the same two ERROR lines thousands of times a
second (89 MB in one minute, measured here): enough to fill a disk or a log
budget, and to bury the worker's own lines. The filter passes a line the first
time, holds back identical ones for `interval_s`, then passes it again with the
number it held back. Lines of livewindows' own loggers always pass: they are
already rate-bound, and tests and operators read them one by one.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, Protocol, TextIO

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter

__all__ = [
    "LOG_FORMAT_ENV",
    "Fields",
    "LogFormat",
    "RepeatedLines",
    "configure_logging",
    "hold_back_repeated_lines",
    "log_handler",
    "record_fields",
]

LogFormat = Literal["text", "json"]
# Where a command that is given no settings (the worker's and replay's setup,
# replay's spawned jobs) finds the format; the command line sets it.
LOG_FORMAT_ENV = "LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_OWN = "livewindows"
_OWN_LIBRARY_SUFFIX = ".librdkafka"  # librdkafka's lines, logged under livewindows' names
# The parts of a librdkafka connection failure that change from one attempt to the
# next ("after 0ms" or "after 1ms" on a busy host, the count it suppressed itself):
# lines differing only there are the same line.
_VOLATILE = re.compile(r"after \d+ms in state (\w+)(?:, \d+ identical error\(s\) suppressed)?")


class RepeatedLines(logging.Filter):
    def __init__(
        self,
        interval_s: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_kept: int = 1000,
    ) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        self._max_kept = max_kept
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # -> (passed at, held)

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if (name == _OWN or name.startswith(_OWN + ".")) and not name.endswith(_OWN_LIBRARY_SUFFIX):
            return True
        message = record.getMessage()
        key = (name, record.levelno, _VOLATILE.sub(r"after ?ms in state \1", message))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self._interval_s:
            self._seen[key] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg = f"{message} (+{seen[1]} identical lines held back since it last showed)"
            record.args = None
        if len(self._seen) >= self._max_kept:
            self._seen.clear()  # bounded: at worst a line passes once more
        self._seen[key] = (now, 0)
        return True


def hold_back_repeated_lines() -> None:
    """Put a `RepeatedLines` filter on each handler of the root logger."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatedLines())


class _HasLogFormat(Protocol):
    @property
    def log_format(self) -> LogFormat: ...


class Fields(dict[str, Any]):
    """A log message made of named fields, e.g. `log.warning(Fields("request", line))`.

    In a text log it reads as one JSON object (what `str` gives); in a JSON log
    its keys stand at the top level of the line and `message` is its name.
    """

    def __init__(self, message: str, fields: Mapping[str, Any]) -> None:
        super().__init__(fields)
        self.message = message

    def __str__(self) -> str:
        return orjson.dumps(self, default=str).decode()


def record_fields(
    *,
    event_id: str | None = None,
    input_id: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> dict[str, Any]:
    """`extra=` for a log line about one record, under the documented names; None left out."""
    given = {"event_id": event_id, "input_id": input_id, "partition": partition, "offset": offset}
    return {name: value for name, value in given.items() if value is not None}


class _JsonFormatter(OrjsonFormatter):
    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        if isinstance(record.msg, Fields):  # the library gives a dict message no text
            log_data["message"] = record.msg.message


class _TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, except for the loggers named `bare`: their message alone."""

    def __init__(self, bare: Collection[str]) -> None:
        super().__init__(TEXT_FORMAT)
        self._bare = frozenset(bare)
        self._message = logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.name in self._bare:
            return self._message.format(record)
        return super().format(record)


def log_handler(
    log_format: LogFormat,
    *,
    service: str,
    stream: TextIO | None = None,
    bare: Collection[str] = (),
) -> logging.Handler:
    """A handler writing `log_format` lines to `stream` (stderr), repeats held back.

    In text, the lines of the loggers named in `bare` are their message alone: lines
    a command has always written for a person at its terminal (`billing: ...`).
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if log_format == "json":
        handler.setFormatter(
            _JsonFormatter(
                ("levelname", "name", "message"),
                rename_fields={"levelname": "level", "name": "logger"},
                static_fields={"service": service},
                timestamp="time",
            )
        )
    else:
        handler.setFormatter(_TextFormatter(bare))
    # While Kafka is down librdkafka reports each reconnect attempt, twice (its
    # log line and the error callback): a repeat shows once per 10 s, counted.
    handler.addFilter(RepeatedLines())
    return handler


def configure_logging(
    settings_or_format: _HasLogFormat | LogFormat | None = None,
    *,
    service: str,
    level: int = logging.WARNING,
    own_level: int | None = None,
    bare: Collection[str] = (),
) -> None:
    """Log to stderr in the configured format: `level` and up, livewindows' own
    loggers from `own_level` if given.

    The format is `settings_or_format`'s, else `LOG_FORMAT` in the environment,
    else text (`bare`: see `log_handler`). Where the root logger already has a
    handler (a test runner, an embedding program), its handlers are left as they are.
    """
    if settings_or_format is None:
        log_format = _format_from_environment()
    elif isinstance(settings_or_format, str):
        log_format = settings_or_format
    else:
        log_format = settings_or_format.log_format
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(log_handler(log_format, service=service, bare=bare))
        root.setLevel(level)
    if own_level is not None:
        logging.getLogger(_OWN).setLevel(own_level)


def _format_from_environment() -> LogFormat:
    # Settings refuse any other value at start-up; here it falls back to text.
    return "json" if os.environ.get(LOG_FORMAT_ENV, "").strip().lower() == "json" else "text"
