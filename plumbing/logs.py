"""A log filter that lets a repeated library line through once per interval.

While Kafka is down, aiokafka logs the same two ERROR lines thousands of times a
second (89 MB in one minute, measured here): enough to fill a disk or a log
budget, and to bury the worker's own lines. The filter passes a line the first
time, holds back identical ones for `interval_s`, then passes it again with the
number it held back. Lines of livewindows' own loggers always pass: they are
already rate-bound, and tests and operators read them one by one.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

__all__ = ["RepeatedLines", "hold_back_repeated_lines"]

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
