"""Batches of events-topic records through the core: decode, process, emit, store.

The order of those steps is the crash-safety argument of `processor.app`; this
module only carries it out. Everything here runs inside the Faust agent, one
batch at a time: each partition's records of a batch go through the core in
offset order, in memory, and the batch is stored (outputs acked, WAL acked, keys
written) before the next batch starts. Which record comes next is part of the
stored state (`Position`), not Faust's business.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

from faust.streams import _current_event
from faust.types import TP, AppT, EventT, Message, RecordMetadata, TopicT

from processor.codec import dead_letter_headers, decode, encode_output
from processor.counts import Counts
from processor.tables import (
    PartitionInputs,
    Position,
    StateTable,
    Wal,
    encode_input,
    input_key,
)
from processor.windows import (
    Config,
    PartitionState,
    Record,
    process,
)
from schemas.timestamps import format_ms

__all__ = ["Shell"]

log = logging.getLogger("livewindows.worker")

_REWIND_EVERY_S = 1.0


@dataclass(slots=True)
class _Partition:
    state: PartitionState
    next_offset: int | None  # None: nothing stored yet
    rewound_at: float = -math.inf


@dataclass(slots=True)
class _Batch:
    """One partition's share of a batch: records run through the core, not yet stored."""

    partition: int
    part: _Partition
    event: EventT[bytes]  # one of the partition's events: Faust's "current event" for its writes
    first_offset: int
    sent: list[Awaitable[RecordMetadata]] = field(default_factory=list)


class Shell:
    """Per-partition core state over the state table, and the batch handler."""

    def __init__(
        self,
        app: AppT,
        config: Config,
        table: StateTable,
        *,
        windows: TopicT,
        late: TopicT,
        dlq: TopicT,
        counts: Counts | None = None,
    ) -> None:
        self._app = app
        self._config = config
        self._table = table
        self._windows, self._late, self._dlq = windows, late, dlq
        self._partitions: dict[int, _Partition] = {}
        self.counts = Counts() if counts is None else counts
        # True from a batch's first local table write to the changelog's ack of its
        # last: a stop in that span leaves the local store untrusted.
        self.storing = False

    def forget(self) -> None:
        """Drop the in-memory states; each is rebuilt from the table on its next record."""
        self._partitions.clear()

    async def handle(self, events: Sequence[EventT[bytes]]) -> None:
        """Carry a batch of records through and store it; skip records that are not next.

        `events` may mix partitions; each partition's are in offset order. Raises
        only if Kafka or the core failed, which is fatal.
        """
        by_partition: dict[int, list[EventT[bytes]]] = {}
        for event in events:
            by_partition.setdefault(event.message.partition, []).append(event)
        batches = []
        for partition, partition_events in by_partition.items():
            with _current(partition_events[0]):
                batch = await self._run(partition, partition_events)
            if batch is not None:
                batches.append(batch)
        if batches:
            await self._store(batches)

    async def _run(self, partition: int, events: list[EventT[bytes]]) -> _Batch | None:
        """One partition's records through the core, outputs handed to the producer."""
        part = await self._partition(events[0].message)
        batch: _Batch | None = None
        counts = self.counts
        for event in events:
            message = event.message
            offset = message.offset
            if part.next_offset is None:  # nothing stored: the partition starts at its beginning
                part.next_offset = await self._earliest(message.tp)
            if offset < part.next_offset:
                continue  # stored already; Faust resumes at its last commit, which may be older
            if offset > part.next_offset and not await self._skip_to(message.tp, part, offset):
                continue
            if batch is None:
                batch = _Batch(partition, part, event, offset)
            counts.records += 1
            try:
                record = decode(message.key, message.value)
            except Exception as exc:  # any decoding failure is the record's fault, not ours
                batch.sent.append(await self._dead_letter(message, exc))
            else:
                await self._emit(part, record, message.timestamp, batch.sent)
            part.next_offset = offset + 1
        return batch

    async def _partition(self, message: Message) -> _Partition:
        """The partition's state: from memory, or from the table, redoing a pending WAL."""
        partition = message.partition
        part = self._partitions.get(partition)
        if part is not None:
            return part
        position = self._table.read_position(partition)
        wal = self._table.read_wal(partition)
        if wal is not None and (position is None or wal.next_offset > position.next_offset):
            position = await self._redo(partition, wal, position)
        watermark_ms = None if position is None else position.watermark_ms
        inputs = PartitionInputs(self._table, partition)
        state = PartitionState.restore(watermark_ms, inputs, self._config)
        next_offset = None if position is None else position.next_offset
        part = self._partitions[partition] = _Partition(state, next_offset)
        log.info(
            "partition %d: state restored (next offset %s, watermark %s, %d inputs pending)",
            partition,
            "none" if next_offset is None else next_offset,
            "none" if watermark_ms is None else format_ms(watermark_ms),
            state.pending(),
        )
        return part

    async def _redo(self, partition: int, wal: Wal, position: Position | None) -> Position:
        """Finish storing the batch a crash interrupted after its WAL: keys, then position."""
        if position is not None and position.next_offset != wal.first_offset:
            raise RuntimeError(
                f"partition {partition}: WAL of offsets {wal.first_offset}..{wal.next_offset - 1}"
                f" does not follow the stored position {position.next_offset}"
            )
        self.storing = True
        table = self._table
        for key, value in wal.changes.items():
            await table.put(partition, input_key(partition, key), value)
        position = Position(wal.next_offset, wal.watermark_ms)
        await table.write_position(partition, position)
        await table.confirm()
        self.storing = False
        self.counts.redone += 1
        log.info(
            "partition %d: redid the write-ahead record of offsets %d to %d (%d inputs)",
            partition,
            wal.first_offset,
            wal.next_offset - 1,
            len(wal.changes),
        )
        return position

    async def _skip_to(self, tp: TP, part: _Partition, offset: int) -> bool:
        """Faust delivered `offset` while `part.next_offset` is due: True if it is next after all.

        Faust 0.15.3 can skip records (its fetcher races its own seek when a
        recovery ends) and then counts them as committable. The records are
        still in Kafka, so the partition is sought back to the next one; only if
        retention deleted them is the gap accepted, loudly.
        """
        assert part.next_offset is not None
        now = time.monotonic()
        if now - part.rewound_at < _REWIND_EVERY_S:
            return False  # sought back just now: records fetched before the seek still drain
        earliest = await self._earliest(tp)
        if earliest > part.next_offset:
            log.error(
                "partition %d: records %d to %d were deleted (retention) before they were "
                "processed; windows they would have changed are missing",
                tp.partition,
                part.next_offset,
                earliest - 1,
            )
            part.next_offset = min(earliest, offset)
            if offset == part.next_offset:
                return True
        log.info(
            "partition %d: Faust skipped to offset %d; seeking back to %d",
            tp.partition,
            offset,
            part.next_offset,
        )
        part.rewound_at = now
        self.counts.rewinds += 1
        await self._app.consumer.seek_wait({tp: part.next_offset})
        return False

    async def _earliest(self, tp: TP) -> int:
        return (await self._app.consumer.earliest_offsets(tp))[tp]

    async def _emit(
        self,
        part: _Partition,
        record: Record,
        timestamp: float,
        sent: list[Awaitable[RecordMetadata]],
    ) -> None:
        """Run the core on one record and hand every output to the producer.

        Records carry the source record's timestamp, so a copy re-sent after a
        crash equals the first in key, value and timestamp. The acks are awaited
        for the whole batch, in `_store`.
        """
        part.state, outputs = process(part.state, record, self._config)
        counts = self.counts
        for out in outputs:
            counts.tally(out)
            encoded = encode_output(out)
            if encoded is None:
                continue  # a duplicate: counted, dropped
            destination, key, value = encoded
            topic = self._windows if destination == "windows" else self._late
            sent.append(await topic.send(key=key, value=value, timestamp=timestamp, force=True))

    async def _store(self, batches: list[_Batch]) -> None:
        """Outputs acked, then each partition's WAL acked, then its keys and position.

        The key and position writes are awaited too, so that when `handle`
        returns (and Faust acks the records) the local store equals the changelog.
        """
        for batch in batches:
            if batch.sent:
                await asyncio.gather(*batch.sent)
        self.storing = True
        table = self._table
        wals = []
        for batch in batches:
            part = batch.part
            assert part.next_offset is not None
            writes = cast(PartitionInputs, part.state.inputs).take_writes()
            last = part.next_offset - 1
            wal = Wal(
                batch.first_offset,
                part.next_offset,
                part.state.watermark_ms,
                {key: encode_input(state, last) for key, state in writes.items()},
            )
            with _current(batch.event):
                await table.write_wal(batch.partition, wal)
            wals.append(wal)
        await table.confirm()
        for batch, wal in zip(batches, wals, strict=True):
            with _current(batch.event):
                for key, value in wal.changes.items():
                    await table.put(batch.partition, input_key(batch.partition, key), value)
                position = Position(wal.next_offset, wal.watermark_ms)
                await table.write_position(batch.partition, position)
        await table.confirm()
        self.storing = False
        self.counts.batches += 1

    async def _dead_letter(self, message: Message, exc: Exception) -> Awaitable[RecordMetadata]:
        self.counts.dead_letters += 1
        error = str(exc) or repr(exc)
        headers = dead_letter_headers(exc, message.topic, message.partition, message.offset)
        sent = await self._dlq.send(
            key=message.key,
            value=message.value,
            headers=headers,
            timestamp=message.timestamp,
            force=True,
        )
        log.warning(
            "%s[%d]@%d is not a valid event or tick (%s: %s); sent to %s",
            message.topic,
            message.partition,
            message.offset,
            type(exc).__name__,
            error[:200],
            self._dlq.get_topic_name(),
        )
        return sent


@contextmanager
def _current(event: EventT[bytes]) -> Iterator[None]:
    """Make `event` Faust's current event: a table read or write goes to the RocksDB and
    the changelog partition of the current event's partition, and the agent's own
    iteration (`take_events` drains the stream in another task) does not set it here."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
