"""Changelog format v1's writer, frozen as it was before format v2 (2026-12-05).

A test double of the earlier version: it writes input values and positions byte
for byte as that version's `changelog.encode_input` (`InputState.to_dict` under
`{"offset", "state"}`) and `Position.encode` did, so the upgrade tests read what a
deployment has stored.
v1 kept seen ids as strings: `ids` maps the digests v2 keeps back to them.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from processor.windows import InputState


def encode_input_v1(state: InputState, offset: int, ids: Mapping[bytes, str]) -> bytes:
    w = state.window
    return orjson.dumps(
        {
            "offset": offset,
            "state": {
                "status": state.status,
                "window": None
                if w is None
                else [
                    w.window_id,
                    w.provider,
                    w.input_id,
                    w.opened_ms,
                    w.reconnect_window_ms,
                    w.opening_received_ms,
                    w.opening_event_id,
                    w.open_reason,
                ],
                "buffer": [
                    [
                        e.event_id,
                        e.key,
                        e.provider,
                        e.input_id,
                        e.kind,
                        e.occurred_ms,
                        e.received_ms,
                        e.reconnect_window_s,
                        e.value.decode("utf-8"),
                    ]
                    for e in state.buffer
                ],
                "last_applied_ms": state.last_applied_ms,
                "seen": [(ids[digest], ms) for digest, ms in state.seen.items()],
                "reconnect_window_ms": state.reconnect_window_ms,
            },
        }
    )


def encode_position_v1(next_offset: int, watermark_ms: int | None) -> bytes:
    return orjson.dumps({"next_offset": next_offset, "watermark_ms": watermark_ms})
