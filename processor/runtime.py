"""The processor's one runtime: owned partitions, restore, batches, aborts. Both engines drive it.

An engine only moves bytes: it fetches records, hands them here, and tells this
runtime which partitions it was assigned or lost. The runtime talks to Kafka
through three small ports, so the same code runs over confluent-kafka in both
engines and over in-memory fakes in the tests (`tests/processor/fakes.py`):
- `ChangelogReader.read`: every record of some changelog partitions, to the end;
- `EventsOffsets`: an events partition's first offset still in Kafka, and the
  record value at an offset (a restored buffered event that turns out late);
- `BatchWriter`: writes batches atomically (`processor.transactions`).

Why a crash or a rebalance loses and changes no window
------------------------------------------------------
The outputs are a pure function of each partition's records (`processor.runner`),
so it suffices that whoever owns partition p resumes from a state that the
uninterrupted run also went through, at the record that run took next.
1. A batch of p — its window, late and DLQ records, the inputs it changed and p's
   new position, written last — goes out in one Kafka transaction (`BatchWriter.
   write`). The changelog partition p therefore only ever holds whole batches, and
   its last position says which record comes next.
2. Before an owner restores p it fences every earlier owner of p
   (`BatchWriter.fence`): no transaction of theirs can commit afterwards.
3. It then reads changelog partition p read_committed until its position passes
   the end offset read uncommitted (`processor.restore`): a transaction the
   earlier owner decided but whose marker is not yet written is waited for, never
   missed (the restore race of KAFKA-10167).
4. A batch whose transaction aborted is forgotten: the runtime restores its
   partition again from the changelog and the engine seeks back to the stored
   position, so the batch runs again from the same state and writes the same
   records, byte-identical. (A partition whose batch was written keeps its state:
   it is what the changelog now holds.)
So a read_committed consumer sees each window record once; a read_uncommitted
one may also see aborted copies, identical. A changelog written by an earlier
version can end in a write-ahead record past its position (that version's
non-transactional Faust engine); `changelog.fold` applies it and the restore
writes it again, in a transaction, before the first batch.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from plumbing.logs import record_fields
from processor.changelog import fold
from processor.counts import Counts
from processor.runner import Batch, Fetched, PartitionRunner, Restored, Written
from processor.tracing import BatchTracer
from processor.windows import Config
from schemas.timestamps import format_ms

__all__ = [
    "Aborted",
    "BatchWriter",
    "ChangelogReader",
    "EventsOffsets",
    "Rewind",
    "Runtime",
    "abort_pause_s",
]

log = logging.getLogger("livewindows.worker")

# Pause before running an aborted batch again: doubles per abort in a row, so a
# lasting refusal (a topic's config, an ACL) is retried without flooding the log.
_ABORT_PAUSE_FIRST_S = 0.5
_ABORT_PAUSE_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class Rewind:
    """After an abort: fetch each owned partition again from `offsets`, after `pause_s`."""

    offsets: dict[int, int]
    pause_s: float


class Aborted(Exception):
    """The batches' transaction was aborted: nothing of them was written, except
    the batches of the `written` partitions (a writer with a transaction per
    partition may commit some and abort others)."""

    def __init__(self, reason: str, written: Iterable[int] = ()) -> None:
        super().__init__(reason)
        self.written = frozenset(written)


class ChangelogReader(Protocol):
    def read(
        self, partitions: Sequence[int]
    ) -> Mapping[int, Iterable[tuple[bytes | None, bytes | None]]]:
        """Each partition's records, oldest first, through every decided transaction."""
        ...


class EventsOffsets(Protocol):
    def earliest(self, partition: int) -> int:
        """The first offset of the events partition still in Kafka."""
        ...

    def value_at(self, partition: int, offset: int) -> bytes | None:
        """The value of the events record at `offset`; None if Kafka no longer has it."""
        ...


class BatchWriter(Protocol):
    def fence(self, partitions: Sequence[int]) -> None:
        """Make sure no earlier owner of `partitions` can commit a write after this returns."""
        ...

    def write(self, batches: Sequence[Batch]) -> None:
        """Write the batches (outputs, changelog, and the engine's offsets) atomically,
        or raise `Aborted` having written nothing of them (or, per partition, only
        those of `Aborted.written`)."""
        ...

    def write_changelog(self, partition: int, writes: Sequence[Written]) -> None:
        """Changelog writes outside any batch (a redone WAL), atomically; an exception
        (`Aborted` among others) fails the restore, and the worker's restart redoes it."""
        ...

    def release(self, partitions: Sequence[int]) -> None:
        """The partitions are no longer this worker's."""
        ...


def abort_pause_s(aborts_before: int) -> float:
    """Seconds to wait before the next attempt, after `aborts_before` aborts in a row."""
    return min(_ABORT_PAUSE_MAX_S, _ABORT_PAUSE_FIRST_S * (1 << min(aborts_before, 16)))


class Runtime:
    """The partitions a worker owns, each a `PartitionRunner`, and the batch cycle over them."""

    def __init__(
        self,
        config: Config,
        events_topic: str,
        changelog: ChangelogReader,
        events: EventsOffsets,
        writer: BatchWriter,
        tracer: BatchTracer | None = None,
    ) -> None:
        self._config = config
        self._tracer = tracer  # None: tracing is off (`processor.tracing`)
        self._events_topic = events_topic
        self._changelog = changelog
        self._events = events
        self._writer = writer
        self.parts: dict[int, PartitionRunner] = {}
        self.counts = Counts()  # of written batches only: an aborted batch counts nothing
        self.aborts_in_a_row = 0

    def owned(self) -> list[int]:
        return sorted(self.parts)

    def skip_deleted(self, partition: int, offset: int) -> bool:
        """Whether retention deleted the records from the owned partition's position up
        to `offset`, fetched next: then it goes on from the first record left, loudly
        (Kafka will never fill the gap)."""
        runner = self.parts[partition]
        earliest = self._events.earliest(partition)
        if earliest <= runner.next_offset:
            return False
        _log_deleted(partition, runner.next_offset, earliest - 1)
        runner.next_offset = min(earliest, offset)
        return True

    def assign(self, partitions: Sequence[int]) -> dict[int, int]:
        """Fence, restore and own `partitions`; returns the offset each must be fetched from."""
        partitions = sorted(partitions)
        if not partitions:
            return {}
        log.info("assigned partitions %s of %s; recovering state", partitions, self._events_topic)
        self._writer.fence(partitions)
        restored = self._restore(partitions)
        log.info("recovery done; processing partitions %s", partitions)
        return restored

    def revoke(self, partitions: Iterable[int]) -> None:
        gone = [p for p in partitions if self.parts.pop(p, None) is not None]
        if gone:
            self._writer.release(gone)

    def handle(self, fetched: Mapping[int, Sequence[Fetched]]) -> Rewind | None:
        """Run and write one batch of records (per partition, in offset order).

        Returns None when it is written (or there was nothing to write); after an
        abort, where to fetch the owned partitions from again (their state restored
        from the changelog) and how long to pause first. Records of partitions not
        owned are ignored.
        """
        batches = []
        tracer, spans = self._tracer, []
        for partition, records in fetched.items():
            runner = self.parts.get(partition)
            if runner is None:
                continue
            if tracer is not None:
                spans += tracer.start(partition, records, runner.next_offset)
            batch = runner.run(records)
            if batch is not None:
                batches.append(batch)
        if not batches:
            return None
        try:
            self._writer.write(batches)
        except Aborted as exc:
            if tracer is not None:
                tracer.end(spans, exc)
            self._written([b for b in batches if b.partition in exc.written])
            return self._rewind(exc, [b for b in batches if b.partition not in exc.written])
        if tracer is not None:
            tracer.end(spans)
        self.aborts_in_a_row = 0
        self._written(batches)
        self.counts.batches += 1
        return None

    def _written(self, batches: Sequence[Batch]) -> None:
        for batch in batches:
            self.counts.add(batch.counts)
            for offset, reason in batch.dead_letters:
                log.warning(
                    "%s[%d]@%d is not a valid event or tick (%s); sent to the DLQ",
                    self._events_topic,
                    batch.partition,
                    offset,
                    reason,
                    extra=record_fields(partition=batch.partition, offset=offset),
                )

    def _rewind(self, exc: Aborted, batches: Sequence[Batch]) -> Rewind:
        """Restore the owned partitions whose batches were not written (their state
        went past what the changelog holds; a written partition's did not)."""
        pause_s = abort_pause_s(self.aborts_in_a_row)
        self.aborts_in_a_row += 1
        self.counts.aborts += 1
        log.warning(
            "transaction aborted (%s); rewinding to the stored state, retrying in %.1f s",
            exc,
            pause_s,
            extra=_aborted_fields(batches),
        )
        again = [p for p in self.owned() if p not in exc.written]
        for partition in again:
            del self.parts[partition]
        return Rewind(self._restore(again), pause_s)

    def _restore(self, partitions: list[int]) -> dict[int, int]:
        read = self._changelog.read(partitions)
        offsets = {}
        for partition in partitions:
            stored = fold(partition, read.get(partition, ()))
            earliest = self._events.earliest(partition)
            runner, restored = PartitionRunner.restore(
                partition,
                self._events_topic,
                self._config,
                stored,
                earliest,
                functools.partial(self._events.value_at, partition),
            )
            if restored.redo:
                self._writer.write_changelog(partition, restored.redo)
                self.counts.redone += 1
            _log_restored(restored)
            self.parts[partition] = runner
            offsets[partition] = runner.next_offset
        return offsets


def _aborted_fields(batches: Sequence[Batch]) -> dict[str, object]:
    """`extra=` of an abort line: the partitions whose batches aborted and, for one
    partition, where its batch began."""
    partitions = sorted(batch.partition for batch in batches)
    fields: dict[str, object] = {"partitions": partitions}
    if len(batches) == 1:
        fields.update(record_fields(partition=partitions[0], offset=batches[0].first_offset))
    return fields


def _log_restored(restored: Restored) -> None:
    partition = restored.partition
    # offset: where the partition resumes
    where = record_fields(partition=partition, offset=restored.next_offset)
    if restored.redo:
        log.info(
            "partition %d: redid the write-ahead record an earlier version left (%d writes)",
            partition,
            len(restored.redo),
            extra=where,
        )
    if restored.deleted is not None:
        _log_deleted(partition, *restored.deleted)
    if restored.ahead:
        log.error(
            "partition %d: %d input(s) stored by records at or past the stored position "
            "%d (e.g. %s): written by an owner that was not fenced? Their windows may "
            "differ from a replay's",
            partition,
            len(restored.ahead),
            restored.next_offset,
            restored.ahead[0],
            extra={**where, **record_fields(input_id=restored.ahead[0].partition(":")[2])},
        )
    log.info(
        "partition %d: state restored (next offset %d, watermark %s, %d inputs pending)",
        partition,
        restored.next_offset,
        "none" if restored.watermark_ms is None else format_ms(restored.watermark_ms),
        restored.pending,
        extra=where,
    )


def _log_deleted(partition: int, first: int, last: int) -> None:
    log.error(
        "partition %d: records %d to %d were deleted (retention) before they were "
        "processed; windows they would have changed are missing",
        partition,
        first,
        last,
        extra={**record_fields(partition=partition, offset=first), "last_offset": last},
    )
