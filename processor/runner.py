"""One partition of the events topic through the core: what every engine and replay drive.

No Kafka, Faust, clock or I/O here: records come in as `Fetched` values and
everything to write goes out as values (`Batch`), so the engines, replay,
`explain` and the tests all run the same code, and a test needs no broker.

A `PartitionRunner` is made from the partition's stored state (`restore`) and
then takes that partition's records in offset order (`run`). For a batch it
returns what the engine must write, atomically, before the batch counts as done:
- the outputs (window, late and DLQ records: key, value, timestamp, headers),
  each stamped with its source record's timestamp, so the same batch run again
  from the same state writes byte-identical records;
- the changelog writes: each input the batch changed (its last value, `changelog.
  encode_input`) and, last, the partition's new `Position` (next offset, watermark);
- the counts of what it did.

The stored state holds no buffered event's record value (`processor.changelog`):
a buffered event that turns out late after a restore is written with its value
read back from the events topic by offset, through the engine's `EventValues`
port; an event fetched by this runner still has its value in memory.

An engine that could not write a batch drops the runner and restores a new one
from what the changelog holds: the runner's own state is then ahead of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from processor.changelog import (
    Position,
    StoredPartition,
    encode_input,
    input_key,
    position_key,
)
from processor.codec import dead_letter_headers, decode, encode_output, output_headers
from processor.counts import Counts
from processor.windows import Config, LateEvent, Output, PartitionState, process

__all__ = [
    "Batch",
    "Destination",
    "EventValues",
    "Fetched",
    "PartitionRunner",
    "Restored",
    "Written",
]

Destination = Literal["windows", "late", "dlq", "changelog"]
Headers = list[tuple[str, bytes]]
# The record value at an offset of the runner's events partition; None if Kafka no
# longer has it (retention). Called only for a late event restored without its value.
EventValues = Callable[[int], bytes | None]


class Fetched(NamedTuple):
    """A record of the events topic as a Kafka client fetched it."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int  # the record's own timestamp; 0 if it has none
    headers: Sequence[tuple[str, bytes | None]] | None = None


class Written(NamedTuple):
    """A record to write: to an output topic, or to the partition's changelog partition."""

    destination: Destination
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None  # None: the producer's clock (changelog writes)
    headers: Headers | None = None


@dataclass(slots=True)
class Batch:
    """A batch of one partition's records, run through the core, not yet written."""

    partition: int
    first_offset: int
    next_offset: int  # after the batch's last record
    outputs: list[Written] = field(default_factory=list)
    changelog: list[Written] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    # (offset, reason) of the records sent to the DLQ, for the engine's log
    dead_letters: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restore found, for the engine to log and act on."""

    partition: int
    next_offset: int
    watermark_ms: int | None
    pending: int  # inputs with buffered events or an open window
    deleted: tuple[int, int] | None  # offsets [first, last] retention deleted before processing
    ahead: tuple[str, ...]  # inputs stored at or past the position (see `changelog.fold`)
    # Changelog writes to make before the first batch: a WAL an earlier version
    # left unapplied (its changes, then its position), redone.
    redo: tuple[Written, ...]


class PartitionRunner:
    """A partition's core state and position, and the batch step over it."""

    __slots__ = ("_config", "_source", "_values", "next_offset", "partition", "state", "store")

    def __init__(
        self,
        partition: int,
        source_topic: str,
        config: Config,
        state: PartitionState,
        next_offset: int,
        *,
        store: bool = True,
        values: EventValues | None = None,
    ) -> None:
        self.partition = partition
        self._source = source_topic
        self._config = config
        self.state = state
        self.next_offset = next_offset
        self.store = store  # False (replay, explain): no changelog writes are made
        self._values = values

    @classmethod
    def restore(
        cls,
        partition: int,
        source_topic: str,
        config: Config,
        stored: StoredPartition,
        earliest_offset: int,
        values: EventValues | None = None,
    ) -> tuple[PartitionRunner, Restored]:
        """The runner that resumes from `stored`, the partition's folded changelog.

        `earliest_offset` is the events partition's first offset still in Kafka: a
        stored position below it (or none, which means the beginning) resumes there.
        `values` reads a restored buffered event's record back when it turns out late.
        """
        position = stored.position
        next_offset = earliest_offset if position is None else position.next_offset
        deleted = None
        if next_offset < earliest_offset:
            deleted = (next_offset, earliest_offset - 1)
            next_offset = earliest_offset
        watermark_ms = None if position is None else position.watermark_ms
        state = PartitionState.restore(watermark_ms, stored.inputs, config)
        redo: tuple[Written, ...] = ()
        if stored.redone is not None:
            wal = stored.redone
            redo = (
                *(
                    Written("changelog", input_key(partition, key), value)
                    for key, value in wal.changes.items()
                ),
                Written(
                    "changelog",
                    position_key(partition),
                    Position(wal.next_offset, wal.watermark_ms).encode(),
                ),
            )
        runner = cls(partition, source_topic, config, state, next_offset, values=values)
        restored = Restored(
            partition, next_offset, watermark_ms, state.pending(), deleted, stored.ahead, redo
        )
        return runner, restored

    @classmethod
    def fresh(
        cls, partition: int, source_topic: str, config: Config, start_offset: int
    ) -> PartitionRunner:
        """Empty state from `start_offset` on, nothing stored (replay, explain)."""
        return cls(partition, source_topic, config, PartitionState(), start_offset, store=False)

    def run(self, records: Iterable[Fetched]) -> Batch | None:
        """The records at or past `next_offset`, in offset order; None if there were none.

        Records below `next_offset` are done already and skipped. A record past it
        (the records between were deleted, or aborted in a transactional topic) is
        taken: what is missing cannot be fetched.
        """
        # Once per record of the events topic: everything the loop touches is a local.
        state, config, next_offset = self.state, self._config, self.next_offset
        batch = Batch(self.partition, next_offset, next_offset)
        decode_, process_ = decode, process
        records_run = 0
        for fetched in records:
            offset = fetched.offset
            if offset < next_offset:
                continue
            if not records_run:
                batch.first_offset = offset
            records_run += 1
            try:
                record = decode_(fetched.key, fetched.value, fetched.headers, offset)
            except Exception as exc:  # any decoding failure is the record's fault, not ours
                self._dead_letter(batch, fetched, exc)
            else:
                state, outputs = process_(state, record, config)
                if outputs:
                    _emit(batch, outputs, fetched.timestamp_ms, self._values)
            next_offset = offset + 1
        self.state, self.next_offset = state, next_offset
        if not records_run:
            return None
        batch.counts.records += records_run
        batch.next_offset = next_offset
        changed = state.take_changed()
        if self.store:
            batch.changelog = self._changelog_writes(changed)
        return batch

    def position(self) -> Position:
        return Position(self.next_offset, self.state.watermark_ms)

    def _changelog_writes(self, changed: set[str]) -> list[Written]:
        """Each changed input's last value, then the position: one ordered log per partition,
        so a stored position always says how far the stored inputs go."""
        partition, inputs, last = self.partition, self.state.inputs, self.next_offset - 1
        writes = [
            Written("changelog", input_key(partition, key), encode_input(inputs[key], last))
            for key in sorted(changed)
        ]
        writes.append(Written("changelog", position_key(partition), self.position().encode()))
        return writes

    def _dead_letter(self, batch: Batch, fetched: Fetched, exc: Exception) -> None:
        batch.counts.dead_letters += 1
        headers = dead_letter_headers(exc, self._source, self.partition, fetched.offset)
        batch.outputs.append(
            Written("dlq", fetched.key, fetched.value or b"", fetched.timestamp_ms, headers)
        )
        reason = f"{type(exc).__name__}: {(str(exc) or repr(exc))[:200]}"
        batch.dead_letters.append((fetched.offset, reason))


def _emit(
    batch: Batch, outputs: list[Output], timestamp_ms: int, values: EventValues | None
) -> None:
    counts, written = batch.counts, batch.outputs
    for out in outputs:
        counts.tally(out)
        if type(out) is LateEvent and not out.event.value and values is not None:
            event = out.event
            read_back = values(event.offset) if event.offset >= 0 else None
            if read_back:  # else encode_late writes what the core kept of it
                out = LateEvent(event._replace(value=read_back), out.reason)
        encoded = encode_output(out)
        if encoded is not None:  # None: a duplicate, counted and dropped
            destination, key, value = encoded
            written.append(Written(destination, key, value, timestamp_ms, output_headers(out)))
