"""Reading an input's state as changelog format v1 stored it (before 2026-12-05).

v1 stored `{"offset": o, "state": {...}}` as JSON, with every buffered event's whole
record value and every seen id as a string with its release watermark. A worker of
this version reads such values (`changelog.decode_input`) and writes format v2 from
then on, so a deployment upgrades in place. Kept apart so that the format in use is
not mistaken for this one; nothing here writes v1.
"""

from __future__ import annotations

from typing import Any

import orjson

from processor.windows import Event, InputState, OpenWindow, seen_digest

__all__ = ["decode_input_v1"]


def decode_input_v1(raw: bytes) -> tuple[InputState, int]:
    """The state a v1 value holds and the offset of the record that wrote it.

    Seen ids become digests with their release watermarks, oldest first as stored;
    those v1 kept beyond the v2 rule are forgotten at the input's next release. v1
    did not say which ids are those of the events applied at the last applied time,
    which v2 keeps whatever their age: all of v1's ids are taken as such, until the
    input next applies an event at a later time (a superset: nothing is forgotten
    that the rule keeps). Buffered events keep their value (v1 stored it); their
    offset is unknown.
    """
    stored = orjson.loads(raw)
    data: dict[str, Any] = stored["state"]
    window = data["window"]
    seen = {seen_digest(event_id): ms for event_id, ms in data["seen"]}
    state = InputState(
        status=data["status"],
        window=None if window is None else OpenWindow(*window),
        buffer=[_event(item) for item in data["buffer"]],
        last_applied_ms=data["last_applied_ms"],
        seen=seen,
        seen_at_last=list(seen) if data["last_applied_ms"] is not None else [],
        reconnect_window_ms=data["reconnect_window_ms"],
    )
    return state, int(stored["offset"])


def _event(item: list[Any]) -> Event:
    event_id, key, provider, input_id, kind, occurred_ms, received_ms, rw_s, value = item
    return Event(
        event_id,
        key,
        provider,
        input_id,
        kind,
        occurred_ms,
        received_ms,
        rw_s,
        value.encode("utf-8"),
        digest=seen_digest(event_id),
    )
