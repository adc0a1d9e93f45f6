"""The Faust engine's state: one Faust table, on RocksDB, behind the changelog topic.

The record format (input keys, `~position`, `~wal` parts) is `processor.changelog`'s.
Faust keeps one RocksDB per partition but only exposes them merged, hence the
partition prefix of every key; all kinds of key share one table, so one
changelog partition holds every write of one partition, in the order the shell
makes them; `processor.app` relies on that order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, ItemsView, Iterator, MutableMapping
from typing import Any

import faust
from faust.types import CodecArg, RecordMetadata
from faust.types.tuples import FutureMessage

from processor.changelog import (
    CHANGELOG_CONFIG,
    TABLE_NAME,
    WAL_PART_BYTES,
    Position,
    Wal,
    changelog_topic,
    decode_input,
    encode_input,
    encode_wal_parts,
    input_key,
    position_key,
    read_wal,
    wal_key,
)
from processor.windows import InputState

__all__ = [
    "TABLE_NAME",
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
            extra_topic_configs=CHANGELOG_CONFIG,  # when Faust creates the changelog
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
        """The partition's last WAL if all its parts are stored (`changelog.read_wal`)."""
        return read_wal(self.get, partition)


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
