"""The worker's state: one Faust table, on RocksDB, behind a changelog topic.

Layout (keys and values are bytes; the table is raw):
- `b"<partition>/<provider>:<input_id>"` → `{"offset": o, "state": InputState.to_dict()}`,
  where `o` is the events-topic offset of the last record of the batch that wrote it;
- `b"<partition>/~position"` → `{"next_offset": n, "watermark_ms": W}`: the
  partition's watermark and the offset of the next record to process, written
  last for every batch, so it says exactly how far the stored input keys go;
- `b"<partition>/~wal"`, `b"<partition>/~wal1"`, ...: the write-ahead record of
  the partition's latest batch, in parts of at most `WAL_PART_BYTES` each, every
  part `{"first_offset", "next_offset", "watermark_ms", "part", "parts",
  "changes": {key: stored input value}}` (see `Wal`).

The partition prefix makes a partition's keys recoverable from the table alone
(Faust keeps one RocksDB per partition but only exposes them merged). All kinds
of key share one table, so one changelog partition holds every write of one
partition, in the order the shell makes them; `processor.app` relies on that order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, ItemsView, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.types import CodecArg, RecordMetadata
from faust.types.tuples import FutureMessage

from processor.windows import InputState

__all__ = [
    "WAL_PART_BYTES",
    "PartitionInputs",
    "Position",
    "StateTable",
    "Wal",
    "changelog_topic",
    "decode_input",
    "encode_input",
    "encode_wal_parts",
    "input_key",
    "wal_key",
]

TABLE_NAME = "state"

# Bookkeeping keys start with "~": an input key starts with its provider's name.
_POSITION = "~position"
_WAL = "~wal"

# Faust's producer refuses requests over 1,000,000 bytes (producer_max_request_size);
# a part holds changes up to this many bytes, or a single larger input on its own.
WAL_PART_BYTES = 600_000


def changelog_topic(app_id: str) -> str:
    """The table's changelog topic, as Faust names it."""
    return f"{app_id}-{TABLE_NAME}-changelog"


def input_key(partition: int, key: str) -> bytes:
    return f"{partition}/{key}".encode()


def position_key(partition: int) -> bytes:
    return f"{partition}/{_POSITION}".encode()


def wal_key(partition: int, part: int) -> bytes:
    return f"{partition}/{_WAL}{part or ''}".encode()


def encode_input(state: InputState, offset: int) -> bytes:
    return orjson.dumps({"offset": offset, "state": state.to_dict()})


def decode_input(raw: bytes) -> tuple[InputState, int]:
    """The stored state and the offset of the record that wrote it."""
    stored = orjson.loads(raw)
    return InputState.from_dict(stored["state"]), int(stored["offset"])


@dataclass(frozen=True, slots=True)
class Position:
    """How far a partition's stored state goes."""

    next_offset: int
    watermark_ms: int | None

    def encode(self) -> bytes:
        return orjson.dumps({"next_offset": self.next_offset, "watermark_ms": self.watermark_ms})

    @classmethod
    def decode(cls, raw: bytes) -> Position:
        stored = orjson.loads(raw)
        return cls(int(stored["next_offset"]), stored["watermark_ms"])


@dataclass(frozen=True, slots=True)
class Wal:
    """A batch's write-ahead record: what its records did to the partition's stored state.

    `changes` maps input keys to their stored values (`encode_input`) after the batch
    `[first_offset, next_offset)`; `watermark_ms` is the partition's watermark after it.
    """

    first_offset: int
    next_offset: int
    watermark_ms: int | None
    changes: dict[str, bytes]


def encode_wal_parts(wal: Wal) -> list[bytes]:
    """The WAL's parts: changes split, in order, so that each part stays under the size cap.

    Each stored input value is spliced into the part as it is (it is JSON already),
    so a change is encoded once for both the WAL and its own key.
    """
    groups: list[list[bytes]] = [[]]
    size = 0
    for key, value in wal.changes.items():
        entry = orjson.dumps(key) + b":" + value
        if groups[-1] and size + len(entry) > WAL_PART_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += len(entry) + 1
    head = b'{"first_offset":%d,"next_offset":%d,"watermark_ms":%s,"parts":%d,"part":' % (
        wal.first_offset,
        wal.next_offset,
        orjson.dumps(wal.watermark_ms),
        len(groups),
    )
    return [
        head + b'%d,"changes":{' % part + b",".join(entries) + b"}}"
        for part, entries in enumerate(groups)
    ]


class StateTable(faust.Table[bytes, bytes]):
    """A raw table whose changelog writes can be awaited.

    Faust hands changelog writes to a buffer and only flushes it before an offset
    commit (a flush that may return with messages still queued), and never says
    when one failed. The shell needs a batch's WAL acknowledged before the batch
    counts as done, so each write's future is kept until `confirm`.
    """

    def __init__(self, app: faust.App, partitions: int) -> None:
        super().__init__(
            app,
            name=TABLE_NAME,
            partitions=partitions,
            key_type=bytes,  # bytes means the "raw" codec, both ways
            value_type=bytes,
            beacon=app.tables.beacon,
        )
        self._unconfirmed: list[Awaitable[RecordMetadata]] = []

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: CodecArg | None = None,
        value_serializer: CodecArg | None = None,
    ) -> FutureMessage:
        future = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        self._unconfirmed.append(future)
        return future

    async def put(self, partition: int, key: bytes, value: bytes) -> None:
        """`self[key] = value`, with the changelog record sent straight to the producer.

        Faust's own path (`send_soon`) queues each changelog record for a
        background task that sends them one by one, and throttles the stream
        while more than 100 wait: far too slow for a batch's writes. This sends
        each directly, to changelog partition `partition`, keeping Faust's
        callback (which records the changelog offset the local store holds).
        The local write goes to the RocksDB of Faust's current event's partition,
        so the caller makes one of `partition`'s records the current event.
        """
        self.data[key] = value
        sent = await self.changelog_topic.send(
            key=key,
            value=value,
            partition=partition,
            key_serializer="raw",
            value_serializer="raw",
            callback=self._on_changelog_sent,
            force=True,
        )
        self._unconfirmed.append(sent)

    async def confirm(self) -> None:
        """Wait until the broker acknowledged every changelog write so far; raise if one failed."""
        futures, self._unconfirmed = self._unconfirmed, []
        if futures:
            await asyncio.gather(*futures)

    def read_position(self, partition: int) -> Position | None:
        raw = self.get(position_key(partition))
        return None if raw is None else Position.decode(raw)

    async def write_position(self, partition: int, position: Position) -> None:
        await self.put(partition, position_key(partition), position.encode())

    async def write_wal(self, partition: int, wal: Wal) -> None:
        for part, value in enumerate(encode_wal_parts(wal)):
            await self.put(partition, wal_key(partition, part), value)

    def read_wal(self, partition: int) -> Wal | None:
        """The partition's last WAL if all its parts are stored, else None.

        A part left over from an earlier batch names other offsets, so a WAL whose
        writing a crash cut short is never mistaken for a whole one.
        """
        raw = self.get(wal_key(partition, 0))
        if raw is None:
            return None
        first = orjson.loads(raw)
        batch = (first["first_offset"], first["next_offset"], first["parts"])
        changes = {key: orjson.dumps(value) for key, value in first["changes"].items()}
        for part in range(1, first["parts"]):
            raw = self.get(wal_key(partition, part))
            if raw is None:
                return None
            more = orjson.loads(raw)
            if (more["first_offset"], more["next_offset"], more["parts"]) != batch:
                return None
            changes.update((key, orjson.dumps(value)) for key, value in more["changes"].items())
        return Wal(
            int(first["first_offset"]), int(first["next_offset"]), first["watermark_ms"], changes
        )


class PartitionInputs(MutableMapping[str, InputState]):
    """One partition's inputs as the core's `inputs` mapping: reads go to the table,
    writes are held (the batch's last value of each key) until `take_writes`, so the
    shell stores them after the outputs. Iteration (only `PartitionState.restore`
    iterates) sees the stored inputs."""

    def __init__(self, table: StateTable, partition: int) -> None:
        self._table = table
        self._partition = partition
        self._prefix = f"{partition}/".encode()
        self._writes: dict[str, InputState] = {}

    def __getitem__(self, key: str) -> InputState:
        held = self._writes.get(key)
        if held is not None:
            return held
        raw = self._table.get(input_key(self._partition, key))
        if raw is None:
            raise KeyError(key)
        return decode_input(raw)[0]

    def __setitem__(self, key: str, state: InputState) -> None:
        self._writes[key] = state

    def __delitem__(self, key: str) -> None:
        raise TypeError("the window core never deletes an input")

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._scan())

    def __len__(self) -> int:
        return sum(1 for _ in self._scan())

    def items(self) -> ItemsView[str, InputState]:
        """One pass over the stored inputs (what `PartitionState.restore` iterates)."""
        return _ScannedItems(self)

    def take_writes(self) -> dict[str, InputState]:
        writes, self._writes = self._writes, {}
        return writes

    def _scan(self) -> Iterator[tuple[str, InputState]]:
        prefix, start = self._prefix, len(self._prefix)
        for raw_key, raw_value in self._table.items():
            if raw_key.startswith(prefix) and raw_key[start : start + 1] != b"~":
                yield raw_key[start:].decode(), decode_input(raw_value)[0]


class _ScannedItems(ItemsView[str, InputState]):
    _mapping: PartitionInputs

    def __iter__(self) -> Iterator[tuple[str, InputState]]:
        return self._mapping._scan()
