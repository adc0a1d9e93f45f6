"""Whether a worker is behind, per owned partition: computed when Prometheus asks.

Nothing here runs per record or per batch. A scrape reads each owned runner's
position, watermark and state as the engine's thread left them; the engine
supplies the one thing only it knows, the partition's end offset as its Kafka
client last heard it (`EndOffset`). The reads take no lock: `dict(parts)`
copies the runtime's mapping in one C call, so the engine's thread cannot change
it halfway, and each value read is read whole. A scrape during a batch may see
the core's state partly through it (the core updates it in place) while the
position moves at the batch's end: each gauge is then off by at most one batch,
which is what a gauge sampled every few seconds can promise anyway. A partition
the runtime no longer owns is not in `parts`: its series disappear.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from processor.runner import PartitionRunner
from processor.windows import PartitionState

__all__ = ["EndOffset", "PartitionGauges", "open_and_buffered", "partition_gauges"]

# The events partition's end offset (the offset the next record written gets),
# or None while the engine's client has not learnt it yet.
EndOffset = Callable[[int], "int | None"]


class PartitionGauges(NamedTuple):
    partition: int
    lag_records: int | None  # None: the end offset is not known yet
    watermark_age_s: float | None  # None: no watermark yet
    open_windows: int
    buffered_events: int


def partition_gauges(
    parts: Mapping[int, PartitionRunner], end_offset: EndOffset, now_ms: int
) -> list[PartitionGauges]:
    """The gauges of each partition in `parts` (a runtime's owned runners)."""
    gauges = []
    for partition, runner in sorted(dict(parts).items()):
        state, next_offset = runner.state, runner.next_offset
        end = end_offset(partition)
        watermark_ms = state.watermark_ms
        opened, buffered = open_and_buffered(state)
        gauges.append(
            PartitionGauges(
                partition,
                None if end is None else max(0, end - next_offset),
                None if watermark_ms is None else (now_ms - watermark_ms) / 1000,
                opened,
                buffered,
            )
        )
    return gauges


def open_and_buffered(state: PartitionState) -> tuple[int, int]:
    """(inputs with an open window, events buffered) of a partition's state.

    The one place outside the core that looks inside its per-input state. O(inputs)
    at each scrape, off the hot path; `list(...)` copies the values in one C call,
    so inputs the engine's thread adds meanwhile cannot break the loop.
    """
    opened = buffered = 0
    for input_state in list(state.inputs.values()):
        if input_state.window is not None:
            opened += 1
        buffered += len(input_state.buffer)
    return opened, buffered
