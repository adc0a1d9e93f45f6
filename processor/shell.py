"""One record of the events topic through the core: decode, process, emit, store.

The order of those steps is the crash-safety argument of `processor.app`; this
module only carries it out. Everything here runs inside the Faust agent, one
record at a time, so a partition's records are handled strictly in offset order
and a record starts only after the previous one is fully stored. Which record
comes next is part of the stored state (`Position`), not Faust's business.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

from faust.types import TP, AppT, Message, RecordMetadata, TopicT

from processor.codec import decode, encode_late, encode_window
from processor.tables import PartitionInputs, Position, StateTable, encode_input, input_key
from processor.windows import (
    Config,
    DuplicateEvent,
    Event,
    LateEvent,
    Output,
    PartitionState,
    Tick,
    WindowRecord,
    process,
)
from schemas.timestamps import format_ms

__all__ = ["Counts", "Shell"]

log = logging.getLogger("livewindows.worker")

_MAX_ERROR_HEADER = 1000
_REWIND_EVERY_S = 1.0


@dataclass(slots=True)
class Counts:
    records: int = 0
    opened: int = 0
    closed: int = 0
    late: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    completed: int = 0  # records whose storing a crash had interrupted
    rewinds: int = 0  # times Faust skipped records and the partition was sought back

    def summary(self) -> str:
        return (
            f"{self.records} records: windows opened={self.opened} closed={self.closed}, "
            f"late={self.late}, duplicates={self.duplicates}, dlq={self.dead_letters}"
            + (f", completed after crash={self.completed}" if self.completed else "")
            + (f", rewinds={self.rewinds}" if self.rewinds else "")
        )


@dataclass(slots=True)
class _Partition:
    state: PartitionState
    next_offset: int | None  # None: nothing stored yet
    rewound_at: float = -math.inf


class Shell:
    """Per-partition core state over the state table, and the record handler."""

    def __init__(
        self,
        app: AppT,
        config: Config,
        table: StateTable,
        *,
        windows: TopicT,
        late: TopicT,
        dlq: TopicT,
    ) -> None:
        self._app = app
        self._config = config
        self._table = table
        self._windows, self._late, self._dlq = windows, late, dlq
        self._partitions: dict[int, _Partition] = {}
        self.counts = Counts()
        # True between a record's first local table write and the changelog's ack
        # of its last: a stop in that span leaves the local store untrusted.
        self.storing = False

    def forget(self) -> None:
        """Drop the in-memory states; each is rebuilt from the table on its next record."""
        self._partitions.clear()

    async def handle(self, message: Message) -> None:
        """Carry one record through, or skip it if it is not the partition's next.

        Raises only if Kafka or the core failed, which is fatal.
        """
        part = self._partition(message.partition)
        offset = message.offset
        if part.next_offset is None:  # nothing stored: the partition starts at its beginning
            part.next_offset = await self._earliest(message.tp)
        if offset < part.next_offset:
            return  # stored already; Faust resumes at its last commit, which may be older
        if offset > part.next_offset and not await self._skip_to(message.tp, part, offset):
            return
        log.debug("record %s[%d]@%d", message.topic, message.partition, offset)
        self.counts.records += 1
        try:
            record = decode(message.key, message.value)
        except Exception as exc:  # any decoding failure is the record's fault, not ours
            await self._dead_letter(message, exc)
        else:
            outputs = self._process(part, record, message.partition, offset)
            await self._emit(outputs, message.timestamp)
        await self._store(message.partition, offset, part)

    def _partition(self, partition: int) -> _Partition:
        part = self._partitions.get(partition)
        if part is None:
            position = self._table.read_position(partition)
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

    def _process(
        self, part: _Partition, record: Event | Tick, partition: int, offset: int
    ) -> list[Output]:
        state, outputs = process(part.state, record, self._config)
        if isinstance(record, Event) and self._interrupted(state, record, offset, outputs):
            # The record's input was stored by an earlier run that died before
            # storing the rest (see processor.app): finish its release at the
            # watermark it had reached.
            now_ms = max(record.received_ms, state.watermark_ms or record.received_ms)
            state, rest = process(state, Tick(now_ms), self._config)
            self.counts.completed += 1
            log.info(
                "partition %d offset %d: finished storing a record a crash interrupted",
                partition,
                offset,
            )
            outputs += rest
        return outputs

    @staticmethod
    def _interrupted(
        state: PartitionState, event: Event, offset: int, outputs: list[Output]
    ) -> bool:
        """A duplicate of itself: this very record already stored the event's input."""
        if not (outputs and isinstance(outputs[0], DuplicateEvent)):
            return False
        return cast(PartitionInputs, state.inputs).written_by(event.key) == offset

    async def _emit(self, outputs: list[Output], timestamp: float) -> None:
        """Send every output and wait for the broker's ack of each.

        Records carry the source record's timestamp, so a copy re-sent after a
        crash equals the first in key, value and timestamp.
        """
        sent: list[Awaitable[RecordMetadata]] = []
        counts = self.counts
        for out in outputs:
            if isinstance(out, WindowRecord):
                key, value = encode_window(out)
                topic = self._windows
                if out.type == "window.opened":
                    counts.opened += 1
                else:
                    counts.closed += 1
            elif isinstance(out, LateEvent):
                key, value = encode_late(out)
                topic = self._late
                counts.late += 1
            else:
                counts.duplicates += 1
                log.debug("duplicate event %s of %s dropped", out.event.event_id, out.event.key)
                continue
            sent.append(await topic.send(key=key, value=value, timestamp=timestamp, force=True))
        if sent:
            await asyncio.gather(*sent)

    async def _store(self, partition: int, offset: int, part: _Partition) -> None:
        """Write the inputs the record changed, then its position, and wait for the changelog."""
        self.storing = True
        writes = cast(PartitionInputs, part.state.inputs).take_writes()
        for key, input_state in writes.items():
            self._table[input_key(partition, key)] = encode_input(input_state, offset)
        part.next_offset = offset + 1
        self._table.write_position(partition, Position(offset + 1, part.state.watermark_ms))
        await self._table.confirm()
        self.storing = False

    async def _dead_letter(self, message: Message, exc: Exception) -> None:
        self.counts.dead_letters += 1
        error = str(exc) or repr(exc)
        headers = [
            ("error", error[:_MAX_ERROR_HEADER].encode()),
            ("error_type", type(exc).__name__.encode()),
            ("source_topic", message.topic.encode()),
            ("source_partition", str(message.partition).encode()),
            ("source_offset", str(message.offset).encode()),
        ]
        sent = await self._dlq.send(
            key=message.key,
            value=message.value,
            headers=headers,
            timestamp=message.timestamp,
            force=True,
        )
        await sent
        log.warning(
            "%s[%d]@%d is not a valid event or tick (%s: %s); sent to %s",
            message.topic,
            message.partition,
            message.offset,
            type(exc).__name__,
            error[:200],
            self._dlq.get_topic_name(),
        )
