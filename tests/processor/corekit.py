"""Small builders for driving the pure window core in tests."""

from __future__ import annotations

from collections.abc import Iterable

from processor.windows import (
    Config,
    Event,
    LateEvent,
    Output,
    PartitionState,
    Record,
    Tick,
    WindowRecord,
    process,
    seen_digest,
)

T0 = 1_790_000_000_000  # 2026-09-21T14:13:20.000Z


def ev(
    event_id: str,
    kind: str,
    occurred_ms: int,
    received_ms: int | None = None,
    *,
    input_id: str = "in1",
    provider: str = "cloudflare",
    reconnect_window_s: int | None = None,
) -> Event:
    """An event at T0 + occurred_ms, received at T0 + received_ms (default: when it occurred)."""
    return Event(
        event_id=event_id,
        key=f"{provider}:{input_id}",
        provider=provider,
        input_id=input_id,
        kind=kind,
        occurred_ms=T0 + occurred_ms,
        received_ms=T0 + (occurred_ms if received_ms is None else received_ms),
        reconnect_window_s=reconnect_window_s,
        value=b'{"event_id":"%s"}' % event_id.encode(),
        digest=seen_digest(event_id),  # as the decoder makes it
    )


def tick(received_ms: int) -> Tick:
    return Tick(T0 + received_ms)


def run(
    records: Iterable[Record],
    config: Config,
    state: PartitionState | None = None,
) -> list[Output]:
    state = PartitionState() if state is None else state
    outputs: list[Output] = []
    for record in records:
        state, out = process(state, record, config)
        outputs.extend(out)
    return outputs


def windows(outputs: Iterable[Output]) -> list[WindowRecord]:
    return [o for o in outputs if isinstance(o, WindowRecord)]


def closed(outputs: Iterable[Output]) -> list[WindowRecord]:
    return [o for o in outputs if isinstance(o, WindowRecord) and o.type == "window.closed"]


def late_ids(outputs: Iterable[Output]) -> list[str]:
    return [o.event.event_id for o in outputs if isinstance(o, LateEvent)]
