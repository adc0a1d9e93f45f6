"""The worker state's changelog: its record format, and a partition's state folded from it.

Both worker engines store state in the same changelog topic, in the same format,
so either can resume what the other stored (`processor.tables` keeps it in a
Faust table; `processor.kafka_worker` keeps it in memory). Layout (keys and
values are bytes):
- `b"<partition>/<provider>:<input_id>"` → the input's state (`encode_input`, format
  v2 below) and `o`, the events-topic offset of the last record of the batch that
  wrote it;
- `b"<partition>/~position"` → `{"next_offset": n, "watermark_ms": W}`: the
  partition's watermark and the offset of the next record to process, written
  last for every batch, so it says exactly how far the stored input keys go;
- `b"<partition>/~wal"`, `b"<partition>/~wal1"`, ...: the write-ahead record of
  the partition's latest batch (Faust engine only), in parts of at most
  `WAL_PART_BYTES` each, every part `{"first_offset", "next_offset",
  "watermark_ms", "part", "parts", "changes": {key: stored input value}}` (see `Wal`).

Format v2 of an input's value (since 2026-12-05) is one version byte, 0x02, then
a MessagePack array: `[o, status, L, reconnect window ms, window, buffer, seen
digests, seen release times, digests of the ids seen at L]`. It stores no more than
the core needs to continue: no provider, input id or window id (the key names the
input, and a window's id is a hash of it and the opening event's id), no buffered
event's record value (its offset instead; the runner reads a late event's value
back), seen ids as 64-bit digests, and times as differences where they are close.
A trace context is stored only where the event record had one. Format v1 (JSON
objects, `processor.changelog_v1`) is still read, whichever engine or version wrote
it. The position is the same byte and `[next offset, watermark]`; v1's JSON object
is read too. The WAL (written only by an earlier version) stays JSON.

The partition prefix makes a partition's keys recoverable from the changelog
alone. All kinds of key of events partition p go to changelog partition p, in
the order the worker makes them; the crash argument of `processor.app` relies
on that order. Nothing here does I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from processor.changelog_v1 import decode_input_v1
from processor.windows import Event, InputState, OpenWindow, seen_digest, window_id

__all__ = [
    "CHANGELOG_CONFIG",
    "TABLE_NAME",
    "WAL_PART_BYTES",
    "Position",
    "StoredPartition",
    "UnknownFormat",
    "Wal",
    "changelog_topic",
    "decode_input",
    "encode_input",
    "encode_wal_parts",
    "fold",
    "input_key",
    "position_key",
    "read_wal",
    "wal_key",
]

TABLE_NAME = "state"

# The changelog topic's settings, whichever engine creates it. It is compacted,
# and only closed segments are: with Kafka's default 1 GiB segments a partition is
# never compacted below ~1 GiB of history, and a restart (state is restored from
# the changelog) reads all of it. Small segments keep it near the live state's size.
CHANGELOG_CONFIG = {
    "cleanup.policy": "compact",
    "segment.bytes": str(64 * 1024 * 1024),
    "segment.ms": str(60 * 60 * 1000),
}

# Bookkeeping keys start with "~": an input key starts with its provider's name.
_POSITION = "~position"
_WAL = "~wal"

# Faust's producer refuses requests over 1,000,000 bytes (producer_max_request_size);
# a part holds changes up to this many bytes, or a single larger input on its own.
WAL_PART_BYTES = 600_000


def changelog_topic(app_id: str) -> str:
    """The state changelog topic, named as Faust names its table's changelog."""
    return f"{app_id}-{TABLE_NAME}-changelog"


def input_key(partition: int, key: str) -> bytes:
    return f"{partition}/{key}".encode()


def position_key(partition: int) -> bytes:
    return f"{partition}/{_POSITION}".encode()


def wal_key(partition: int, part: int) -> bytes:
    return f"{partition}/{_WAL}{part or ''}".encode()


_V2 = b"\x02"
_STATUSES = ("unknown", "live", "disconnected", "ended")
_KINDS = ("connected", "disconnected", "errored", "ended", "other")
_STATUS_CODE = {status: code for code, status in enumerate(_STATUSES)}
_KIND_CODE = {kind: code for code, kind in enumerate(_KINDS)}
_encode_msgpack = msgspec.msgpack.Encoder().encode
_decode_msgpack = msgspec.msgpack.Decoder().decode


def encode_input(state: InputState, offset: int) -> bytes:
    """Format v2 of an input's state, written by the record at `offset`."""
    window = state.window
    stored_window: list[Any] | None = None
    if window is not None:
        stored_window = [
            window.opened_ms,
            window.reconnect_window_ms,
            window.opening_received_ms,
            window.opening_event_id,
            _KIND_CODE[window.open_reason],
        ]
        if window.opening_traceparent is not None:
            stored_window.append(window.opening_traceparent)
    # Release times, in release order, each as its difference to the one before
    # (the first to L): a few bytes each instead of nine.
    times = []
    previous = state.last_applied_ms or 0
    for released_ms in state.seen.values():
        times.append(released_ms - previous)
        previous = released_ms
    return _V2 + _encode_msgpack(
        [
            offset,
            _STATUS_CODE[state.status],
            state.last_applied_ms,
            state.reconnect_window_ms,
            stored_window,
            [_buffered(event) for event in state.buffer],
            b"".join(state.seen),
            times,
            b"".join(state.seen_at_last),
        ]
    )


class UnknownFormat(ValueError):
    """A changelog value of a format this version does not know (a newer version wrote it)."""


def _check_v1(raw: bytes) -> None:
    if raw[:1] != b"{":
        raise UnknownFormat(
            f"changelog value of format version {raw[:1]!r}, unknown to this version (v1, v2): "
            "written by a newer livewindows? Run that version, or reset the changelog and replay"
        )


def _buffered(event: Event) -> list[Any]:
    occurred_ms = event.occurred_ms
    item: list[Any] = [
        event.event_id,
        _KIND_CODE[event.kind],
        occurred_ms,
        event.received_ms - occurred_ms,
        event.reconnect_window_s,
        event.offset,
    ]
    # The record value only where there is no offset to read it back from (an event
    # a v1 state buffered); the trace context only where the record had one.
    value = event.value if event.offset < 0 else None
    if event.traceparent is not None:
        item += (value, event.traceparent)
    elif value is not None:
        item.append(value)
    return item


def decode_input(name: str, raw: bytes) -> tuple[InputState, int]:
    """Input `name`'s stored state (format v2 or v1) and the offset of the record that wrote it."""
    if raw[:1] != _V2:
        _check_v1(raw)
        return decode_input_v1(raw)
    offset, status, last_ms, rw_ms, window, buffer, seen, times, at_last = _decode_msgpack(
        memoryview(raw)[1:]
    )
    provider, _, input_id = name.partition(":")
    released: dict[bytes, int] = {}
    released_ms = last_ms or 0
    for n, delta in enumerate(times):
        released_ms += delta
        released[seen[8 * n : 8 * n + 8]] = released_ms
    state = InputState(
        status=_STATUSES[status],
        window=None if window is None else _open_window(provider, input_id, window),
        buffer=[_event(name, provider, input_id, item) for item in buffer],
        last_applied_ms=last_ms,
        seen=released,
        seen_at_last=[at_last[n : n + 8] for n in range(0, len(at_last), 8)],
        reconnect_window_ms=rw_ms,
    )
    return state, offset


def _open_window(provider: str, input_id: str, stored: list[Any]) -> OpenWindow:
    opened_ms, rw_ms, opening_received_ms, opening_event_id, reason, *traceparent = stored
    return OpenWindow(
        window_id(provider, input_id, opening_event_id),
        provider,
        input_id,
        opened_ms,
        rw_ms,
        opening_received_ms,
        opening_event_id,
        _KINDS[reason],
        traceparent[0] if traceparent else None,
    )


def _event(key: str, provider: str, input_id: str, stored: list[Any]) -> Event:
    event_id, kind, occurred_ms, delay_ms, rw_s, offset, *more = stored
    value = more[0] if more and more[0] is not None else b""
    return Event(
        event_id,
        key,
        provider,
        input_id,
        _KINDS[kind],
        occurred_ms,
        occurred_ms + delay_ms,
        rw_s,
        value,
        offset,
        more[1] if len(more) > 1 else None,
        seen_digest(event_id),
    )


@dataclass(frozen=True, slots=True)
class Position:
    """How far a partition's stored state goes."""

    next_offset: int
    watermark_ms: int | None

    def encode(self) -> bytes:
        """Format v2: 0x02, then `[next_offset, watermark_ms]` in MessagePack (~15 bytes,
        written with every batch; v1's JSON object took ~50)."""
        return _V2 + _encode_msgpack([self.next_offset, self.watermark_ms])

    @classmethod
    def decode(cls, raw: bytes) -> Position:
        if raw[:1] == _V2:
            next_offset, watermark_ms = _decode_msgpack(memoryview(raw)[1:])
            return cls(next_offset, watermark_ms)
        _check_v1(raw)
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

    A v1 input value is spliced into the part as it is (it is JSON already); a v2
    one goes in as a base64 string. Only an earlier version wrote WALs (and tests
    write them as it did).
    """
    groups: list[list[bytes]] = [[]]
    size = 0
    for key, value in wal.changes.items():
        stored = orjson.dumps(base64.b64encode(value).decode()) if value[:1] == _V2 else value
        entry = orjson.dumps(key) + b":" + stored
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


def read_wal(get: Callable[[bytes], bytes | None], partition: int) -> Wal | None:
    """The partition's last WAL if all its parts are stored, else None.

    A part left over from an earlier batch names other offsets, so a WAL whose
    writing a crash cut short is never mistaken for a whole one.
    """
    raw = get(wal_key(partition, 0))
    if raw is None:
        return None
    first = orjson.loads(raw)
    batch = (first["first_offset"], first["next_offset"], first["parts"])
    changes = {key: _wal_value(value) for key, value in first["changes"].items()}
    for part in range(1, first["parts"]):
        raw = get(wal_key(partition, part))
        if raw is None:
            return None
        more = orjson.loads(raw)
        if (more["first_offset"], more["next_offset"], more["parts"]) != batch:
            return None
        changes.update((key, _wal_value(value)) for key, value in more["changes"].items())
    first_offset, next_offset = int(first["first_offset"]), int(first["next_offset"])
    return Wal(first_offset, next_offset, first["watermark_ms"], changes)


def _wal_value(stored: Any) -> bytes:
    return base64.b64decode(stored) if isinstance(stored, str) else orjson.dumps(stored)


class ChangelogGap(RuntimeError):
    """A stored WAL that does not follow the stored position: the changelog lost writes."""


@dataclass(slots=True)
class StoredPartition:
    """One partition's state as its changelog holds it."""

    position: Position | None  # None: nothing stored, the partition starts at its beginning
    inputs: dict[str, InputState]
    redone: Wal | None = None  # a whole WAL past the position, applied here; store it again
    # Inputs written by a record at or past the position: a writer the position does
    # not account for (a previous owner's late write). Never so when the writes of
    # one partition are ordered and fenced; a restore reports them.
    ahead: tuple[str, ...] = ()


def fold(partition: int, records: Iterable[tuple[bytes | None, bytes | None]]) -> StoredPartition:
    """The stored state of `partition` from its changelog records, oldest first.

    The last value of each key wins (what compaction keeps; a None value is a
    tombstone). A whole WAL past the stored position is the batch a crash cut
    short after its outputs were acknowledged (see `processor.app`): its changes
    and position are applied, and `redone` tells the caller to write them again.
    """
    latest: dict[bytes, bytes] = {}
    for key, value in records:
        if key is None:
            continue
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    raw_position = latest.get(position_key(partition))
    position = None if raw_position is None else Position.decode(raw_position)
    wal = read_wal(latest.get, partition)
    prefix = f"{partition}/".encode()
    start = len(prefix)
    inputs: dict[str, InputState] = {}
    written_at: dict[str, int] = {}
    for raw_key, raw_value in latest.items():
        if raw_key.startswith(prefix) and raw_key[start : start + 1] != b"~":
            name = raw_key[start:].decode()
            inputs[name], written_at[name] = decode_input(name, raw_value)
    if wal is None or (position is not None and wal.next_offset <= position.next_offset):
        return StoredPartition(position, inputs, ahead=_ahead(written_at, position))
    if position is not None and position.next_offset != wal.first_offset:
        raise ChangelogGap(
            f"partition {partition}: WAL of offsets {wal.first_offset}..{wal.next_offset - 1}"
            f" does not follow the stored position {position.next_offset}"
        )
    for changed, value in wal.changes.items():
        inputs[changed], written_at[changed] = decode_input(changed, value)
    position = Position(wal.next_offset, wal.watermark_ms)
    return StoredPartition(position, inputs, redone=wal, ahead=_ahead(written_at, position))


def _ahead(written_at: dict[str, int], position: Position | None) -> tuple[str, ...]:
    next_offset = 0 if position is None else position.next_offset
    return tuple(sorted(key for key, offset in written_at.items() if offset >= next_offset))
