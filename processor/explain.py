"""One input's timeline, as the worker computes it: the pure half of `livewindows explain`.

Every record of the input's partition goes through a `PartitionRunner`, the runner
the workers and replay drive: the watermark is per partition, so the other
inputs' events and the ticks move this input's releases and time-outs as they
moved the worker's. Only this input's records and outputs are reported.

An event's outcome is read off the runner's outputs, never recomputed here:
- the record went to the DLQ (the batch's `dead_letters`): *undecodable*;
- the batch of that one record counted a duplicate: *duplicate* (the core drops
  a record whose id it has seen or holds, so nothing else can have counted it);
- otherwise the event entered the input's buffer. It leaves it exactly once
  (windows.py's invariant): with a `late` record naming its id, *late*; else
  *applied*, in the batch after which the id is no longer in the buffer. One
  still there when the reading stops is *buffered*.
So this module depends on the core only through its outputs and the input's
public `buffer` (the ids in it).

Records of the input run as batches of one, and so does every record while the
input has something buffered or a window open, so each release and window is
tied to the offset (and watermark) that caused it. Otherwise nothing of the input
can change, and records run in batches as the worker runs them: batch bounds
change nothing in what the runner computes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from processor.codec import DecodeError, decode
from processor.runner import Batch, Fetched, PartitionRunner
from processor.windows import Config, Event
from schemas.records import Provider
from schemas.timestamps import format_ms, parse_ms

__all__ = [
    "PROVIDERS",
    "EventLine",
    "Explainer",
    "Outcome",
    "Timeline",
    "WindowLine",
    "parse_key",
]

PROVIDERS: tuple[Provider, ...] = ("cloudflare", "fastpix", "gjirafa")
Outcome = Literal["applied", "late", "duplicate", "buffered", "undecodable"]

# Records of other inputs run in batches of at most this many while this input
# has nothing pending (the worker's batches are of the same order).
_BATCH = 5000


def parse_key(text: str) -> tuple[str, str]:
    """(provider, input_id) of `<provider>:<input_id>`; ValueError with a one-line reason."""
    provider, colon, input_id = text.partition(":")
    if not colon or not input_id:
        raise ValueError(f"{text!r} is not <provider>:<input_id>, e.g. cloudflare:abc123")
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
    return provider, input_id


@dataclass(slots=True)
class EventLine:
    """One record of the input, and what the runner did with it."""

    offset: int
    outcome: Outcome
    event_id: str | None = None
    kind: str | None = None
    provider_event_type: str | None = None
    occurred_ms: int | None = None
    received_ms: int | None = None
    reconnect_window_s: int | None = None
    late_reason: str | None = None
    # The record after which the event left the buffer (applied or late), and the
    # partition's watermark then.
    released_offset: int | None = None
    released_watermark_ms: int | None = None
    duplicate_of: int | None = None  # offset of the record with the same id
    error: str | None = None  # undecodable: why

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "event_id": self.event_id,
            "kind": self.kind,
            "provider_event_type": self.provider_event_type,
            "occurred_at": _ts(self.occurred_ms),
            "received_at": _ts(self.received_ms),
            "reconnect_window_s": self.reconnect_window_s,
            "outcome": self.outcome,
            "late_reason": self.late_reason,
            "released_offset": self.released_offset,
            "released_watermark": _ts(self.released_watermark_ms),
            "duplicate_of": self.duplicate_of,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class WindowLine:
    """A window record of the input, exactly as the worker writes it, and why it was written."""

    record: dict[str, Any]
    offset: int  # the record whose processing emitted it
    watermark_ms: int | None
    rule: str
    event_id: str | None  # the event whose application wrote it; None: the watermark did

    def to_dict(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "offset": self.offset,
            "watermark": _ts(self.watermark_ms),
            "rule": self.rule,
            "event_id": self.event_id,
        }


@dataclass(slots=True)
class Timeline:
    """What `explain` reports for one input over offsets [start_offset, end_offset)."""

    key: str
    partition: int
    start_offset: int
    end_offset: int
    grace_ms: int
    reconnect_window_s: int
    # None: the run started with the partition's whole history; else why the state
    # before `start_offset` is unknown (so annotations may differ from the worker's).
    state_unknown: str | None = None
    records: int = 0
    other_records: int = 0  # ticks and other inputs' events, run but not listed
    events: list[EventLine] = field(default_factory=list)
    windows: list[WindowLine] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        provider, _, input_id = self.key.partition(":")
        return {
            "schema": "livewindows/explain/v1",
            "input": self.key,
            "provider": provider,
            "input_id": input_id,
            "partition": self.partition,
            "start_offset": self.start_offset,
            "end_offset": self.end_offset,
            "grace_ms": self.grace_ms,
            "reconnect_window_s": self.reconnect_window_s,
            "state_before_start_known": self.state_unknown is None,
            "state_unknown_reason": self.state_unknown,
            "records": self.records,
            "other_records": self.other_records,
            "events": [e.to_dict() for e in self.events],
            "windows": [w.to_dict() for w in self.windows],
        }


class Explainer:
    """One partition's records, in offset order, through a fresh runner (see the module doc)."""

    def __init__(
        self,
        key: str,
        partition: int,
        source_topic: str,
        config: Config,
        start_offset: int,
        *,
        state_unknown: str | None = None,
    ) -> None:
        self._key = key
        self._key_bytes = key.encode()
        self._config = config
        self._runner = PartitionRunner.fresh(partition, source_topic, config, start_offset)
        self._pending: dict[str, EventLine] = {}  # event id -> its line, while buffered
        self._applied: dict[str, EventLine] = {}  # event id -> its last applied line
        self._by_id: dict[str, EventLine] = {}  # event id -> its first line (for duplicates)
        self._open = 0  # windows opened and not yet closed (0 or 1)
        self.timeline = Timeline(
            key,
            partition,
            start_offset,
            start_offset,
            config.grace_ms,
            config.reconnect_window_s,
            state_unknown,
        )

    def feed(self, records: Iterable[Fetched]) -> None:
        """The partition's next records, in offset order."""
        group: list[Fetched] = []
        for fetched in records:
            if self._is_mine(fetched):
                self._run(group)
                group = []
                self._run_own(fetched)
            elif self._pending or self._open:
                self._run(group)
                group = []
                self._run([fetched])
            else:
                group.append(fetched)
                if len(group) >= _BATCH:
                    self._run(group)
                    group = []
        self._run(group)

    def finish(self) -> Timeline:
        """The timeline so far; events still in the buffer stay `buffered`."""
        return self.timeline

    def _is_mine(self, fetched: Fetched) -> bool:
        if fetched.key is not None:
            return fetched.key == self._key_bytes
        try:  # no key: the event's own provider and input_id say whose it is
            record = decode(None, fetched.value)
        except DecodeError:
            return False
        return isinstance(record, Event) and record.key == self._key

    def _run(self, records: list[Fetched]) -> None:
        if not records:
            return
        batch = self._runner.run(records)
        if batch is not None:
            self.timeline.other_records += batch.counts.records
            self._absorb(batch)

    def _run_own(self, fetched: Fetched) -> None:
        line = _event_line(fetched)
        batch = self._runner.run([fetched])
        if batch is None:  # below the start offset
            return
        if not batch.dead_letters and line.event_id is None:  # a tick under this key
            self.timeline.other_records += batch.counts.records
            self._absorb(batch)
            return
        self.timeline.events.append(line)
        if batch.dead_letters:
            line.outcome = "undecodable"
            line.error = batch.dead_letters[0][1]
        elif batch.counts.duplicates:
            line.outcome = "duplicate"
            first = self._by_id.get(line.event_id or "")
            line.duplicate_of = None if first is None else first.offset
        else:
            assert line.event_id is not None, "the runner decoded it"
            self._pending[line.event_id] = line
            self._by_id.setdefault(line.event_id, line)
        self._absorb(batch)

    def _absorb(self, batch: Batch) -> None:
        """Tie the batch's outputs of this input, and its releases, to the batch's last record."""
        timeline = self.timeline
        timeline.records += batch.counts.records
        timeline.end_offset = batch.next_offset
        offset, watermark_ms = batch.next_offset - 1, self._runner.position().watermark_ms
        released: list[EventLine] = []
        windows: list[dict[str, Any]] = []
        for written in batch.outputs:
            if written.key != self._key_bytes:
                continue
            if written.destination == "windows":
                windows.append(orjson.loads(written.value))
            elif written.destination == "late":
                late = orjson.loads(written.value)
                line = self._pending.pop(late["event_id"])
                line.outcome, line.late_reason = "late", late["late_reason"]
                released.append(line)
        if self._pending:
            input_state = self._runner.state.inputs.get(self._key)
            buffered = {e.event_id for e in input_state.buffer} if input_state else set()
            for event_id in [i for i in self._pending if i not in buffered]:
                line = self._pending.pop(event_id)
                line.outcome = "applied"
                self._applied[event_id] = line
                released.append(line)
        for line in released:
            line.released_offset, line.released_watermark_ms = offset, watermark_ms
        applied_now = [line for line in released if line.outcome == "applied"]
        for record in windows:
            self._open += 1 if record["type"] == "window.opened" else -1
            rule, cause = self._rule(record, watermark_ms, applied_now)
            timeline.windows.append(WindowLine(record, offset, watermark_ms, rule, cause))

    def _rule(
        self, record: dict[str, Any], watermark_ms: int | None, applied_now: list[EventLine]
    ) -> tuple[str, str | None]:
        """Why the core wrote this window record (SPEC §5), and the event that made it, if any."""
        if record["type"] == "window.opened":
            opening = record["opening_event_id"]
            return f"opened by {record['open_reason']} event {opening}", opening
        reason, closing = record["close_reason"], record["closing_event_id"]
        if reason == "reconnected":
            return f"reconnected by event {closing} at {record['closed_at']}", closing
        if reason == "ended":
            return f"ended by event {closing} at {record['closed_at']}", closing
        return self._time_out_rule(record, watermark_ms, applied_now)

    def _time_out_rule(
        self, record: dict[str, Any], watermark_ms: int | None, applied_now: list[EventLine]
    ) -> tuple[str, str | None]:
        """SPEC §5 times a window out in two places, checked here in the core's order: before
        applying a released event that occurred at or after the time-out (the first such
        in application order), else once the watermark reached the opening event's
        received_at + reconnect window + grace."""
        rw_ms = record["duration_ms"]
        head = (
            f"timed out at opened_at + reconnect window {_seconds(rw_ms)} = {record['closed_at']}"
        )
        closed_ms = parse_ms(record["closed_at"])
        opened = (parse_ms(record["opened_at"]), record["opening_event_id"])
        after = [  # applied after the opening event (a window of 0 s times out at once)
            line
            for line in applied_now
            if line.occurred_ms is not None
            and line.occurred_ms >= closed_ms
            and (line.occurred_ms, line.event_id or "") > opened
        ]
        if after:
            first = min(after, key=lambda line: (line.occurred_ms or 0, line.event_id or ""))
            return (
                f"{head}, before event {first.event_id}, which occurred at or after that, "
                "was applied"
            ), first.event_id
        opening = self._applied.get(record["opening_event_id"])
        if opening is not None and opening.received_ms is not None and watermark_ms is not None:
            due_ms = opening.received_ms + rw_ms + self._config.grace_ms
            return (
                f"{head}, once the watermark ({format_ms(watermark_ms)}) reached the opening "
                f"event's received_at + reconnect window + grace ({format_ms(due_ms)})"
            ), None
        return head, None


def _event_line(fetched: Fetched) -> EventLine:
    """The record's fields as far as they can be read (an undecodable one may have none)."""
    line = EventLine(fetched.offset, "buffered")
    try:
        record = decode(fetched.key, fetched.value)
    except DecodeError:
        record = None
    if isinstance(record, Event):
        line.event_id, line.kind = record.event_id, record.kind
        line.occurred_ms, line.received_ms = record.occurred_ms, record.received_ms
        line.reconnect_window_s = record.reconnect_window_s
    try:
        fields = orjson.loads(fetched.value or b"")
    except orjson.JSONDecodeError:
        return line
    if isinstance(fields, dict):
        line.event_id = line.event_id or _text(fields.get("event_id"))
        line.kind = line.kind or _text(fields.get("kind"))
        line.provider_event_type = _text(fields.get("provider_event_type"))
    return line


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _ts(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def _seconds(ms: int) -> str:
    return f"{ms // 1000} s" if ms % 1000 == 0 else f"{ms} ms"
