"""In-memory Kafka for the runtime's ports: a changelog, an events topic, a transactional writer.

They keep what `processor.runtime` relies on and no more: a changelog partition is
an ordered log of committed writes (a read returns what was committed, in order),
an events partition has a first offset retention may raise, and a writer either
commits a whole transaction or, told to, aborts it and writes nothing of it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from processor.runner import Batch, Fetched, Written
from processor.runtime import Aborted

Log = list[tuple[bytes | None, bytes | None]]


@dataclass
class FakeKafka:
    """The changelog and the output topics as one transactional log each."""

    changelog: defaultdict[int, Log] = field(default_factory=lambda: defaultdict(list))
    outputs: list[Written] = field(default_factory=list)  # committed, in commit order
    earliest_offsets: dict[int, int] = field(default_factory=dict)
    events: dict[int, list[Fetched]] = field(default_factory=dict)  # what value_at reads
    aborts_to_come: int = 0  # the next this many transactions are refused
    # The next write refuses these partitions' batches and commits the others', as
    # the Faust engine's writer (a transaction per partition) can.
    refuse_partitions: set[int] = field(default_factory=set)
    transactions: int = 0
    fenced: list[int] = field(default_factory=list)

    # ChangelogReader
    def read(
        self, partitions: Sequence[int]
    ) -> dict[int, Iterable[tuple[bytes | None, bytes | None]]]:
        return {p: list(self.changelog[p]) for p in partitions}

    # EventsOffsets
    def earliest(self, partition: int) -> int:
        return self.earliest_offsets.get(partition, 0)

    def value_at(self, partition: int, offset: int) -> bytes | None:
        for record in self.events.get(partition, ()):
            if record.offset == offset and offset >= self.earliest(partition):
                return record.value
        return None

    # BatchWriter
    def fence(self, partitions: Sequence[int]) -> None:
        self.fenced.extend(partitions)

    def write(self, batches: Sequence[Batch]) -> None:
        if self.aborts_to_come:
            self.aborts_to_come -= 1
            raise Aborted("refused by the fake broker")
        refused, self.refuse_partitions = self.refuse_partitions, set()
        for batch in batches:
            if batch.partition not in refused:
                self.outputs.extend(batch.outputs)
                self.changelog[batch.partition].extend((w.key, w.value) for w in batch.changelog)
        self.transactions += 1
        if refused:
            written = {b.partition for b in batches} - refused
            raise Aborted("partitions refused by the fake broker", written)

    def write_changelog(self, partition: int, writes: Sequence[Written]) -> None:
        self.changelog[partition].extend((w.key, w.value) for w in writes)

    def release(self, partitions: Sequence[int]) -> None:
        pass


def fetched(records: Sequence[tuple[bytes, bytes]], first_offset: int = 0) -> list[Fetched]:
    """(key, value) records as an events partition holds them from `first_offset`,
    each stamped with a timestamp of its own."""
    return [
        Fetched(first_offset + i, key, value, 1_000_000 + first_offset + i)
        for i, (key, value) in enumerate(records)
    ]
