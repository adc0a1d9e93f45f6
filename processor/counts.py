"""What a worker did, for its periodic log line."""

from __future__ import annotations

from dataclasses import dataclass

from processor.windows import LateEvent, Output, WindowRecord

__all__ = ["Counts"]


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

    def summary(self) -> str:
        return (
            f"{self.records} records in {self.batches} batches: windows opened={self.opened} "
            f"closed={self.closed}, late={self.late}, duplicates={self.duplicates}, "
            f"dlq={self.dead_letters}"
            + (f", batches redone after crash={self.redone}" if self.redone else "")
            + (f", rewinds={self.rewinds}" if self.rewinds else "")
            + (f", transactions aborted={self.aborts}" if self.aborts else "")
        )
