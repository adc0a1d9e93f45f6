"""`livewindows explain`'s two outputs: a text timeline for people, JSON for programs.

The JSON shape is `Timeline.to_dict` (schema `livewindows/explain/v1`): fields
are only ever added to it. Its `windows[].record` are the window records exactly
as the worker writes them to the windows topic.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from processor.explain import EventLine, Timeline

__all__ = ["render_json", "render_text"]


def render_json(timeline: Timeline) -> str:
    return orjson.dumps(timeline.to_dict(), option=orjson.OPT_INDENT_2).decode()


def render_text(timeline: Timeline, topic: str) -> str:
    return "\n".join(_text_lines(timeline, topic))


def _text_lines(timeline: Timeline, topic: str) -> Iterator[str]:
    t = timeline
    last = f"{t.end_offset - 1}" if t.end_offset > t.start_offset else "none"
    yield f"{t.key}: partition {t.partition} of {topic}, offsets {t.start_offset}-{last}"
    yield (
        f"grace {t.grace_ms} ms, default reconnect window {t.reconnect_window_s} s; "
        f"{t.other_records:,} records of other inputs and ticks run too, not listed"
    )
    if t.state_unknown is not None:
        yield (
            f"NOTE: {t.state_unknown}: state before offset {t.start_offset} is not known, "
            "so these outcomes and windows may differ from the worker's"
        )
    yield ""
    yield f"events ({len(t.events)})"
    rows = [_event_row(line, t) for line in t.events]
    header = ("offset", "received_at", "occurred_at", "kind", "event type", "event id", "outcome")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    widths[0] = max([widths[0], *(len(str(w.offset)) for w in t.windows)])
    for row in [header, *rows]:
        cells = [
            cell.rjust(w) if i == 0 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        ]
        yield "  ".join([*cells, row[-1]]).rstrip()
    yield ""
    opened = sum(1 for w in t.windows if w.record["type"] == "window.opened")
    yield f"windows ({opened} opened, {len(t.windows) - opened} closed)"
    yield f"{'offset':>{widths[0]}}  {'record':<13}  {'window id':<32}  {'at':<24}  rule"
    for window in t.windows:
        record = window.record
        when = record["opened_at"] if record["type"] == "window.opened" else record["closed_at"]
        yield (
            f"{window.offset:>{widths[0]}}  {record['type']:<13}  {record['window_id']}  "
            f"{when}  {window.rule}"
        )


def _event_row(line: EventLine, timeline: Timeline) -> tuple[str, ...]:
    d = line.to_dict()
    return (
        str(line.offset),
        d["received_at"] or "-",
        d["occurred_at"] or "-",
        line.kind or "-",
        line.provider_event_type or "-",
        line.event_id or "-",
        _outcome(line, timeline),
    )


def _outcome(line: EventLine, timeline: Timeline) -> str:
    if line.outcome == "duplicate":
        of = "" if line.duplicate_of is None else f" of offset {line.duplicate_of}"
        return f"duplicate{of} (dropped)"
    if line.outcome == "undecodable":
        return f"undecodable, sent to the DLQ: {line.error}"
    if line.outcome == "buffered":
        return "buffered: not released yet (the watermark has not reached received_at + grace)"
    at = f"at offset {line.released_offset}"
    if line.outcome == "late":
        return f"late ({line.late_reason}) {at}"
    caused = ", ".join(_caused(line, timeline))
    return f"applied {at}" + (f": {caused}" if caused else "")


def _caused(line: EventLine, timeline: Timeline) -> Iterator[str]:
    """The window records the event's release wrote ("timed out ab006e40, closed 1c9d0e2f")."""
    for window in timeline.windows:
        if window.event_id == line.event_id and window.offset == line.released_offset:
            record = window.record
            if record["type"] == "window.opened":
                did = "opened"
            else:
                did = "timed out" if record["close_reason"] == "timed_out" else "closed"
            yield f"{did} {record['window_id'][:8]}"
