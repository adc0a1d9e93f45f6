"""What a worker did, for its periodic log line."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields

from processor.windows import LateEvent, Output, WindowRecord

__all__ = ["LOG_EVERY_S", "Counts", "CountsLog"]

log = logging.getLogger("livewindows.worker")
LOG_EVERY_S = 30.0  # how often a worker logs its counts (if they changed)


@dataclass(slots=True)
class Counts:
    records: int = 0
    opened: int = 0
    closed: int = 0
    late: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    redone: int = 0  # WALs a crash left unapplied, applied on restore
    rewinds: int = 0  # times Faust skipped records and the partition was sought back
    aborts: int = 0  # transactions aborted (kafka engine): the batch runs again

    def tally(self, out: Output) -> None:
        """Count one output of the core."""
        if isinstance(out, WindowRecord):
            if out.type == "window.opened":
                self.opened += 1
            else:
                self.closed += 1
        elif isinstance(out, LateEvent):
            self.late += 1
        else:
            self.duplicates += 1

    def add(self, other: Counts) -> None:
        """Add what `other` counted (a batch's counts, once it is written)."""
        for name in _FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> str:
        return (
            f"{self.records} records in {self.batches} batches: windows opened={self.opened} "
            f"closed={self.closed}, late={self.late}, duplicates={self.duplicates}, "
            f"dlq={self.dead_letters}"
            + (f", batches redone after crash={self.redone}" if self.redone else "")
            + (f", rewinds={self.rewinds}" if self.rewinds else "")
            + (f", transactions aborted={self.aborts}" if self.aborts else "")
        )


_FIELDS = tuple(f.name for f in fields(Counts))


class CountsLog:
    """The periodic log line of a worker's counts: every 30 s, if they changed."""

    def __init__(self) -> None:
        self._last = ""
        self._next = time.monotonic()

    def maybe(self, counts: Counts) -> None:
        if time.monotonic() >= self._next:
            self.now(counts)

    def now(self, counts: Counts) -> None:
        self._next = time.monotonic() + LOG_EVERY_S
        summary = counts.summary()
        if summary != self._last:
            log.info("%s", summary)
            self._last = summary
