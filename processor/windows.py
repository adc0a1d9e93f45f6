"""Disconnect windows as a pure state machine: SPEC §5, rule for rule.

Nothing here does I/O, reads a clock, logs or knows about Kafka or Faust: time
enters only through records (`received_at` of events, ticks). Faust, replay and
the tests all drive `process`, so the windows are a function of the events
topic alone.

Invariants (checked by the tests in tests/processor/):
- Per partition the watermark `W` never decreases; it is the largest
  `received_at` of the non-duplicate events and ticks processed so far.
- An event leaves its input's buffer exactly once, when `received_at + grace <= W`:
  applied, or published late. Either way its id is then *seen*, and a record with
  a seen or buffered id is a duplicate that changes nothing.
- Per input, events are applied in (`occurred_at`, `event_id`) order and the last
  applied time `L` never decreases, so `closed_at >= opened_at` for every window.
- At most one window is open per input, and each opened window is closed exactly
  once: `reconnected`, `ended`, or `timed_out` at `opened_at + reconnect window`.
- `window_id` depends only on the input and the opening event, so a window
  recomputed by a replay or after a crash has the same id and content.

`process` updates the `PartitionState` it is given and returns it, with the key
of every input it changed added to `PartitionState.changed`: the runner stores
exactly those (`processor.runner`), and nothing has to watch the mapping.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from schemas.timestamps import format_ms

__all__ = [
    "Config",
    "DuplicateEvent",
    "Event",
    "InputState",
    "LateEvent",
    "OpenWindow",
    "Output",
    "PartitionState",
    "Record",
    "Tick",
    "WindowRecord",
    "process",
    "seen_digest",
    "window_id",
]

UNKNOWN: Literal["unknown"] = "unknown"
LIVE: Literal["live"] = "live"
DISCONNECTED: Literal["disconnected"] = "disconnected"
ENDED: Literal["ended"] = "ended"

LATE_OLDER_THAN_APPLIED = "older_than_applied"

# Seen ids (SPEC §5): an id is kept while it was released less than SEEN_KEEP_MS
# of watermark time ago, and the ids of the events applied at the input's last
# applied time L are kept whatever their age; nothing else is. So an input's state
# depends on its last day of traffic, never on its age. Why forgetting the others
# changes no window: when an event is released, L becomes at least its
# `occurred_at` (it is applied, or it is late because L is past it), and L never
# decreases. So a redelivery of a forgotten id is released with `occurred_at <= L`:
# below L it is published late; at L it was applied at L, and its id is among the
# ones kept (until L moves on, past it). Ids are kept as 64-bit digests
# (`seen_digest`), in release order with the watermark of their release, never
# their own received_at (an event received long before the watermark is released
# at once, ahead of events that arrived before it, and would otherwise be the first
# forgotten). A flooding input keeps at most SEEN_CAP of each, oldest forgotten first.
SEEN_KEEP_MS = 24 * 60 * 60 * 1000
SEEN_CAP = 10_000
_blake2b = hashlib.blake2b


def seen_digest(event_id: str) -> bytes:
    """The 64-bit digest an id is kept as: 8 bytes stored instead of ~36 characters.
    Two ids of one input collide with odds of about n^2 / 2^65 (n ids kept)."""
    return _blake2b(event_id.encode(), digest_size=8).digest()


@dataclass(frozen=True, slots=True)
class Config:
    grace_ms: int
    reconnect_window_s: int

    def __post_init__(self) -> None:
        if self.grace_ms <= 0:
            raise ValueError("grace_ms must be > 0")
        if self.reconnect_window_s < 0:
            raise ValueError("reconnect_window_s must be >= 0")


# The values built once per record or window (Event, OpenWindow, WindowRecord) are
# NamedTuples: immutable like a frozen dataclass, and about three times cheaper to
# build (a frozen dataclass sets each field through object.__setattr__), which was
# a tenth of the core's time. Code here never compares them with plain tuples.


class Event(NamedTuple):
    """A canonical event as the core needs it.

    `value` (the record as fetched) is echoed to the late topic; it is kept in memory
    while the event is buffered but never stored: a restored buffered event has an
    empty `value` and its events-topic `offset`, where the runner reads it back.
    `traceparent` is the record's W3C trace context header, if it had one.
    """

    event_id: str
    key: str
    provider: str
    input_id: str
    kind: str
    occurred_ms: int
    received_ms: int
    reconnect_window_s: int | None = None
    value: bytes = b""
    offset: int = -1  # in its events partition; -1: unknown (a state stored by format v1)
    traceparent: bytes | None = None
    digest: bytes = b""  # seen_digest(event_id), if the decoder computed it (b"": not yet)


@dataclass(frozen=True, slots=True)
class Tick:
    received_ms: int


Record = Event | Tick


class OpenWindow(NamedTuple):
    window_id: str
    provider: str
    input_id: str
    opened_ms: int
    reconnect_window_ms: int
    opening_received_ms: int
    opening_event_id: str
    open_reason: str
    opening_traceparent: bytes | None = None

    @property
    def timeout_ms(self) -> int:
        """Event time at which the provider gives up on a reconnect."""
        return self.opened_ms + self.reconnect_window_ms


class WindowRecord(NamedTuple):
    """A `window.opened` or `window.closed` record (SPEC §4)."""

    type: Literal["window.opened", "window.closed"]
    window_id: str
    provider: str
    input_id: str
    opened_ms: int
    closed_ms: int | None
    open_reason: str
    close_reason: str | None
    opening_event_id: str
    closing_event_id: str | None
    # W3C trace context of the event that caused the record (for a time-out, the
    # opening event's) and of the opening event; not part of the record's value.
    traceparent: bytes | None = None
    opening_traceparent: bytes | None = None

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.input_id}"

    @property
    def duration_ms(self) -> int | None:
        return None if self.closed_ms is None else self.closed_ms - self.opened_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "livewindows/window/v1",
            "type": self.type,
            "window_id": self.window_id,
            "provider": self.provider,
            "input_id": self.input_id,
            "opened_at": format_ms(self.opened_ms),
            "closed_at": None if self.closed_ms is None else format_ms(self.closed_ms),
            "duration_ms": self.duration_ms,
            "open_reason": self.open_reason,
            "close_reason": self.close_reason,
            "opening_event_id": self.opening_event_id,
            "closing_event_id": self.closing_event_id,
        }


@dataclass(frozen=True, slots=True)
class LateEvent:
    event: Event
    reason: str


@dataclass(frozen=True, slots=True)
class DuplicateEvent:
    event: Event


Output = WindowRecord | LateEvent | DuplicateEvent


@dataclass(slots=True)
class InputState:
    """Everything SPEC §5 keeps per input (`processor.changelog` stores it)."""

    status: str = UNKNOWN
    window: OpenWindow | None = None
    buffer: list[Event] = field(default_factory=list)
    last_applied_ms: int | None = None
    # digest of a released id -> the watermark when it was released, oldest first
    seen: dict[bytes, int] = field(default_factory=dict)
    # digests of the ids of the applied events whose occurred_at is last_applied_ms
    seen_at_last: list[bytes] = field(default_factory=list)
    reconnect_window_ms: int | None = None  # None: the configured default


class PartitionState:
    """One partition's watermark and inputs, plus an index of when each input is next due.

    The index is derived from the inputs, so only `watermark_ms` and `inputs` need
    to be stored; `restore` rebuilds it after a restart. It is a heap of distinct
    deadlines (plain ints, which compare several times faster than `(deadline,
    key)` tuples: the pop was the core's costliest line) and, per deadline, the
    keys scheduled then; `_due` holds each key's current deadline, so a key left
    behind in an earlier bucket by a reschedule is skipped (lazy deletion).
    """

    __slots__ = ("_agenda", "_buckets", "_due", "changed", "inputs", "watermark_ms")

    def __init__(
        self,
        watermark_ms: int | None = None,
        inputs: dict[str, InputState] | None = None,
    ) -> None:
        self.watermark_ms = watermark_ms
        self.inputs: dict[str, InputState] = {} if inputs is None else inputs
        # Keys of the inputs `process` changed since the caller last took them.
        self.changed: set[str] = set()
        self._agenda: list[int] = []
        self._buckets: dict[int, list[str]] = {}
        self._due: dict[str, int] = {}

    @classmethod
    def restore(
        cls,
        watermark_ms: int | None,
        inputs: dict[str, InputState],
        config: Config,
    ) -> PartitionState:
        state = cls(watermark_ms, inputs)
        for key, input_state in inputs.items():
            deadline = _next_deadline(input_state, watermark_ms, config)
            if deadline is not None:
                state._schedule(key, deadline)
        return state

    def _schedule(self, key: str, deadline_ms: int) -> None:
        current = self._due.get(key)
        if current is None or deadline_ms < current:
            self._due[key] = deadline_ms
            bucket = self._buckets.get(deadline_ms)
            if bucket is None:
                self._buckets[deadline_ms] = [key]
                heapq.heappush(self._agenda, deadline_ms)
            else:
                bucket.append(key)

    def pending(self) -> int:
        """Inputs with buffered events or an open window (for metrics)."""
        return len(self._due)

    def take_changed(self) -> set[str]:
        """The keys of the inputs changed since the last call."""
        changed, self.changed = self.changed, set()
        return changed


def window_id(provider: str, input_id: str, opening_event_id: str) -> str:
    """First 32 hex digits of sha256(`<provider>:<input_id>:<opening_event_id>`)."""
    digest = hashlib.sha256(f"{provider}:{input_id}:{opening_event_id}".encode())
    return digest.hexdigest()[:32]


def process(
    state: PartitionState, record: Record, config: Config
) -> tuple[PartitionState, list[Output]]:
    """Step 1 then step 2 of SPEC §5 for one record of the partition, in offset order."""
    # This runs once per record of the events topic, so the deadline index and
    # the watermark are handled inline rather than through helper calls.
    outputs: list[Output] = []
    inputs = state.inputs
    received_ms = record.received_ms
    if not isinstance(record, Tick):
        key = record.key
        input_state = inputs.get(key)
        if input_state is None:
            input_state = inputs[key] = InputState()
        elif _is_duplicate(input_state, record, state.watermark_ms):
            outputs.append(DuplicateEvent(record))
            return state, outputs
        input_state.buffer.append(record)
        state.changed.add(key)
        state._schedule(key, received_ms + config.grace_ms)
    watermark_ms = state.watermark_ms
    if watermark_ms is None or received_ms > watermark_ms:
        state.watermark_ms = watermark_ms = received_ms
    agenda, buckets, due, changed = state._agenda, state._buckets, state._due, state.changed
    # Release the inputs whose deadline has come: earliest deadline first, and by
    # key within a deadline. Keys whose deadline has since moved are skipped. A
    # released input's next deadline is always after the watermark (what is left in
    # its buffer, or a time-out not yet due), so the loop never reschedules into
    # the deadlines it is draining.
    while agenda and agenda[0] <= watermark_ms:
        deadline_ms = heapq.heappop(agenda)
        keys = buckets.pop(deadline_ms)
        if len(keys) > 1:
            keys.sort()
        for key in keys:
            if due.get(key) != deadline_ms:
                continue
            del due[key]
            input_state = inputs[key]
            _release(input_state, watermark_ms, config, outputs)
            changed.add(key)
            deadline = _next_deadline(input_state, watermark_ms, config)
            if deadline is not None:
                state._schedule(key, deadline)
    return state, outputs


def _is_duplicate(state: InputState, record: Event, watermark_ms: int | None) -> bool:
    """Whether the id is buffered, or kept as seen under the SPEC §5 rule (the age is
    checked here: ids are forgotten only when their input is next released)."""
    event_id = record.event_id
    for event in state.buffer:  # a loop: any() of a generator costs more
        if event.event_id == event_id:
            return True
    if not state.seen and not state.seen_at_last:
        return False
    digest = record.digest or seen_digest(event_id)
    released_ms = state.seen.get(digest)
    if released_ms is not None and (
        watermark_ms is None or watermark_ms - released_ms < SEEN_KEEP_MS
    ):
        return True
    return digest in state.seen_at_last


def _next_deadline(state: InputState, watermark_ms: int | None, config: Config) -> int | None:
    """Watermark at which releasing this input can next change it, or None if never.

    A window whose time-out is due but held back by a buffered event that may
    still reconnect it is woken by that event's own deadline instead.
    """
    grace_ms = config.grace_ms
    earliest: int | None = None
    for event in state.buffer:
        deadline = event.received_ms + grace_ms
        if earliest is None or deadline < earliest:
            earliest = deadline
    window = state.window
    if window is not None:
        timeout_due = window.opening_received_ms + window.reconnect_window_ms + grace_ms
        if (watermark_ms is None or timeout_due > watermark_ms) and (
            earliest is None or timeout_due < earliest
        ):
            earliest = timeout_due
    return earliest


def _release(state: InputState, watermark_ms: int, config: Config, outputs: list[Output]) -> None:
    """SPEC §5 step 2 for one input: apply what the grace has let through, then time out."""
    grace_ms = config.grace_ms
    released_up_to = watermark_ms - grace_ms  # received_ms + grace_ms <= watermark_ms
    buffer = state.buffer
    if len(buffer) == 1:  # the usual case: no list built to find it
        ready = buffer if buffer[0].received_ms <= released_up_to else []
    else:
        ready = [e for e in buffer if e.received_ms <= released_up_to]
    if ready:
        if len(ready) == len(buffer):
            state.buffer = []
        else:
            state.buffer = [e for e in buffer if e.received_ms > released_up_to]
        if len(ready) > 1:
            ready.sort(key=_application_order)
        seen = state.seen
        for event in ready:
            occurred_ms = event.occurred_ms
            digest = event.digest or seen_digest(event.event_id)
            last_applied_ms = state.last_applied_ms
            if last_applied_ms is not None and occurred_ms < last_applied_ms:
                outputs.append(LateEvent(event, LATE_OLDER_THAN_APPLIED))
            else:
                window = state.window
                if (
                    window is not None
                    and occurred_ms >= window.opened_ms + window.reconnect_window_ms
                ):
                    _time_out(state, outputs)
                _apply(state, event, config, outputs)
                if occurred_ms == state.last_applied_ms:
                    if len(state.seen_at_last) >= SEEN_CAP:
                        del state.seen_at_last[0]
                    state.seen_at_last.append(digest)
                else:
                    state.seen_at_last = [digest]
                state.last_applied_ms = occurred_ms
            seen.pop(digest, None)  # a redelivery forgotten, or a collision: now the newest
            seen[digest] = watermark_ms
        _forget_seen(seen, watermark_ms)
    window = state.window
    if (
        window is not None
        and watermark_ms >= window.opening_received_ms + window.reconnect_window_ms + grace_ms
        and (not state.buffer or all(e.occurred_ms >= window.timeout_ms for e in state.buffer))
    ):
        _time_out(state, outputs)


def _application_order(event: Event) -> tuple[int, str]:
    return event.occurred_ms, event.event_id


def _apply(state: InputState, event: Event, config: Config, outputs: list[Output]) -> None:
    if event.reconnect_window_s is not None:
        state.reconnect_window_ms = event.reconnect_window_s * 1000
    kind = event.kind
    if kind == "connected":
        if state.window is not None:
            _close(state, event.occurred_ms, "reconnected", event, outputs)
        state.status = LIVE
    elif kind in ("disconnected", "errored"):
        if state.window is None and state.status in (UNKNOWN, LIVE):
            _open(state, event, config, outputs)
        if state.status != ENDED:
            state.status = DISCONNECTED
    elif kind == "ended":
        if state.window is not None:
            _close(state, event.occurred_ms, "ended", event, outputs)
        state.status = ENDED


def _open(state: InputState, event: Event, config: Config, outputs: list[Output]) -> None:
    reconnect_window_ms = state.reconnect_window_ms
    if reconnect_window_ms is None:
        reconnect_window_ms = config.reconnect_window_s * 1000
    window = OpenWindow(  # positionally: the field order of OpenWindow
        window_id(event.provider, event.input_id, event.event_id),
        event.provider,
        event.input_id,
        event.occurred_ms,
        reconnect_window_ms,
        event.received_ms,
        event.event_id,
        event.kind,
        event.traceparent,
    )
    state.window = window
    outputs.append(_record(window, "window.opened", None, None, None, event.traceparent))


def _close(
    state: InputState,
    closed_ms: int,
    reason: str,
    closing: Event | None,
    outputs: list[Output],
) -> None:
    """Close the open window; `closing` is the event that closes it, None on a time-out."""
    window = state.window
    assert window is not None, "only an open window closes"
    state.window = None
    if closing is None:
        record = _record(
            window, "window.closed", closed_ms, reason, None, window.opening_traceparent
        )
    else:
        record = _record(
            window, "window.closed", closed_ms, reason, closing.event_id, closing.traceparent
        )
    outputs.append(record)


def _time_out(state: InputState, outputs: list[Output]) -> None:
    window = state.window
    assert window is not None, "only an open window times out"
    closed_ms = window.timeout_ms
    _close(state, closed_ms, "timed_out", None, outputs)
    state.status = ENDED
    if state.last_applied_ms is None or closed_ms > state.last_applied_ms:
        state.last_applied_ms = closed_ms
        state.seen_at_last = []  # no event was applied at the new L


def _forget_seen(seen: dict[bytes, int], watermark_ms: int) -> None:
    """Drop the seen ids released SEEN_KEEP_MS or more ago, and the oldest beyond SEEN_CAP."""
    oldest_kept_ms = watermark_ms - SEEN_KEEP_MS
    while seen:
        oldest = next(iter(seen))
        if len(seen) <= SEEN_CAP and seen[oldest] > oldest_kept_ms:
            break
        del seen[oldest]


def _record(
    window: OpenWindow,
    type_: Literal["window.opened", "window.closed"],
    closed_ms: int | None,
    close_reason: str | None,
    closing_event_id: str | None,
    traceparent: bytes | None,
) -> WindowRecord:
    return WindowRecord(  # positionally: the field order of WindowRecord
        type_,
        window.window_id,
        window.provider,
        window.input_id,
        window.opened_ms,
        closed_ms,
        window.open_reason,
        close_reason,
        window.opening_event_id,
        closing_event_id,
        traceparent,
        window.opening_traceparent,
    )
