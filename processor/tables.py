"""The worker's state: one Faust table, on RocksDB, behind a changelog topic.

Layout (keys and values are bytes; the table is raw):
- `b"<partition>/<provider>:<input_id>"` → `{"offset": o, "state": InputState.to_dict()}`,
  where `o` is the events-topic offset of the record that last wrote the input;
- `b"<partition>/~position"` → `{"next_offset": n, "watermark_ms": W}`: the
  partition's watermark and the offset of the next record to process, written
  last for every record, so it says exactly how far the stored state goes.

The partition prefix makes a partition's keys recoverable from the table alone
(Faust keeps one RocksDB per partition but only exposes them merged). Both kinds
of key share one table, so one changelog partition holds every write of one
record, in the order the shell makes them; `processor.app` relies on that order.
"""

from __future__ import annotations

import asyncio
from collections.abc import ItemsView, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.types import CodecArg
from faust.types.tuples import FutureMessage

from processor.windows import InputState

__all__ = [
    "PartitionInputs",
    "Position",
    "StateTable",
    "changelog_topic",
    "decode_input",
    "encode_input",
    "input_key",
]

TABLE_NAME = "state"

_POSITION = "~position"  # no ":" so it cannot collide with "<provider>:<input_id>"


def changelog_topic(app_id: str) -> str:
    """The table's changelog topic, as Faust names it."""
    return f"{app_id}-{TABLE_NAME}-changelog"


def input_key(partition: int, key: str) -> bytes:
    return f"{partition}/{key}".encode()


def position_key(partition: int) -> bytes:
    return f"{partition}/{_POSITION}".encode()


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


class StateTable(faust.Table[bytes, bytes]):
    """A raw table whose changelog writes can be awaited.

    Faust hands changelog writes to a buffer and only flushes it before an offset
    commit (a flush that may return with messages still queued), and never says
    when one failed. The shell needs every write of a record acknowledged before
    the next record starts, so each write's future is kept until `confirm`.
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
        self._unconfirmed: list[FutureMessage] = []

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

    async def confirm(self) -> None:
        """Wait until the broker acknowledged every changelog write so far; raise if one failed."""
        futures, self._unconfirmed = self._unconfirmed, []
        if futures:
            await asyncio.gather(*futures)

    def read_position(self, partition: int) -> Position | None:
        raw = self.get(position_key(partition))
        return None if raw is None else Position.decode(raw)

    def write_position(self, partition: int, position: Position) -> None:
        self[position_key(partition)] = position.encode()


class PartitionInputs(MutableMapping[str, InputState]):
    """One partition's inputs as the core's `inputs` mapping: reads go to the table,
    writes are held until `take_writes`, so the shell stores them after the outputs.
    Iteration (only `PartitionState.restore` iterates) sees the stored inputs."""

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

    def written_by(self, key: str) -> int | None:
        """Offset of the record that last stored `key`, or None if it was never stored."""
        raw = self._table.get(input_key(self._partition, key))
        return None if raw is None else decode_input(raw)[1]

    def take_writes(self) -> dict[str, InputState]:
        writes, self._writes = self._writes, {}
        return writes

    def _scan(self) -> Iterator[tuple[str, InputState]]:
        prefix, skip = self._prefix, position_key(self._partition)
        for raw_key, raw_value in self._table.items():
            if raw_key.startswith(prefix) and raw_key != skip:
                yield raw_key[len(prefix) :].decode(), decode_input(raw_value)[0]


class _ScannedItems(ItemsView[str, InputState]):
    _mapping: PartitionInputs

    def __iter__(self) -> Iterator[tuple[str, InputState]]:
        return self._mapping._scan()
