"""`state`: what long-lived inputs cost in stored state (issue #17's scenario).

The long-lived dataset (`bench.dataset`, `Spec.days`): `BENCH_STATE_INPUTS` inputs
(default 10,000; 200 with --quick) with 100 events each, in short sessions spread
over 30 days of event time (1M events at the default size), ticks every 5
simulated minutes, times in 2030 so the workers' own wall-clock ticks never move
a watermark.

Measured:
- offline, no Kafka (the unit-level figure): the pure runner over the same records
  (keys spread over the partitions by crc32, not murmur2: the figure needs the
  spread, not the exact placement), in batches of `DRAIN_BATCH` records per
  partition as a draining kafka engine makes them, and of one record (every
  record its own transaction: the most a live worker writes). Changelog bytes
  (keys and values) per processed event, per input write, and each input's
  encoded state at the end of day 1, 10 and 30 (it must not grow with history);
- per engine (`BENCH_STATE_ENGINES`, default `kafka,faust`), one worker draining
  the pre-filled topic (`bench.processor_bench`'s run): the changelog bytes it
  wrote per processed event (read back from the topic), the topic on disk, peak
  RSS, the data dir, and the time a restart over that state takes to be restored.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from collections.abc import Iterator
from statistics import mean
from typing import Any

from bench.common import Context, Result, Row, say
from bench.dataset import DAY_MS, Filled, Spec, fill, records
from bench.processor_bench import _worker, topic_records

NAME = "state"
EVENTS_PER_INPUT = 100
DAYS = 30
DRAIN_BATCH = 800  # ~ the kafka engine's 5,000-record consume() over 6 partitions
GRACE_MS = 5000
RECONNECT_WINDOW_S = 60
TARGET_BYTES_PER_EVENT = 300
TARGET_RSS_MIB = 1024
TARGET_RESTORE_S = 10.0
_MIB = 1024 * 1024


def dataset_spec(ctx: Context) -> Spec:
    inputs = int(os.environ.get("BENCH_STATE_INPUTS", "200" if ctx.quick else "10000"))
    return Spec(events=inputs * EVENTS_PER_INPUT, inputs=inputs, days=DAYS)


def run(ctx: Context) -> Result:
    spec = dataset_spec(ctx)
    result = Result(NAME)
    result.parameters = {
        "inputs": spec.inputs,
        "events": spec.events,
        "days": spec.days,
        "partitions": spec.partitions,
        "seed": spec.seed,
        "window_grace_ms": GRACE_MS,
        "reconnect_window_s": RECONNECT_WINDOW_S,
        "offline_drain_batch": DRAIN_BATCH,
    }
    say(f"offline: {spec.inputs:,} inputs x {EVENTS_PER_INPUT} events over {spec.days} days")
    drain = offline(spec, DRAIN_BATCH)
    live = offline(spec, 1)
    result.metrics["offline"] = {"drain": drain, "one_record_batches": live}
    result.rows += [
        Row("changelog bytes per event, offline, drain batches", drain["bytes_per_event"], "B",
            target=f"<= {TARGET_BYTES_PER_EVENT}",
            passed=drain["bytes_per_event"] <= TARGET_BYTES_PER_EVENT),
        Row("changelog bytes per event, offline, one-record batches", live["bytes_per_event"],
            "B"),
        Row("changelog bytes per input write (key + value), offline", drain["bytes_per_write"],
            "B"),
        Row("encoded input state after day 1 / mean", drain["state_bytes_by_day"]["1"], "B"),
        Row(f"encoded input state after day {spec.days} / mean",
            drain["state_bytes_by_day"][str(spec.days)], "B",
            baseline="after day 1", baseline_value=drain["state_bytes_by_day"]["1"]),
    ]  # fmt: skip
    (topic,) = ctx.topics("state-events", partitions=spec.partitions)
    say(f"pre-filling {topic} with the long-lived dataset")
    filled = _fill(ctx, topic, spec)
    result.parameters["events_topic_bytes"] = filled.bytes
    result.parameters["ticks"] = filled.ticks
    engines = os.environ.get("BENCH_STATE_ENGINES", "kafka,faust").split(",")
    for engine in engines:
        worker = _worker(ctx, filled, 0, engine)
        written = _changelog_bytes(ctx.bootstrap, worker["changelog_topic"])
        worker["changelog_bytes_written"] = written
        worker["changelog_bytes_per_event"] = round(written / filled.events, 1)
        worker.pop("samples", None)
        result.metrics[f"worker_{engine}"] = worker
        per_event = worker["changelog_bytes_per_event"]
        result.rows.append(
            Row(f"changelog bytes per event, --engine {engine}", per_event, "B",
                target=f"<= {TARGET_BYTES_PER_EVENT}", passed=per_event <= TARGET_BYTES_PER_EVENT)
        )  # fmt: skip
        if worker.get("changelog_mib") is not None:
            result.rows.append(
                Row(f"changelog topic on disk, --engine {engine}", worker["changelog_mib"], "MiB")
            )
        rss = worker["peak_rss_mib"]
        result.rows.append(
            Row(f"worker peak RSS, --engine {engine}", rss, "MiB",
                target=f"<= {TARGET_RSS_MIB} MiB" if engine == "kafka" else "",
                passed=(rss is not None and rss <= TARGET_RSS_MIB) if engine == "kafka" else None)
        )  # fmt: skip
        if engine == "faust":
            result.rows.append(
                Row("data dir, --engine faust", worker["data_dir_mib"], "MiB")
            )  # fmt: skip
        restore_s = worker.get("restart_to_recovered_s")
        result.rows.append(
            Row(f"restart to state restored, --engine {engine}",
                float("nan") if restore_s is None else restore_s, "s",
                target=f"<= {TARGET_RESTORE_S:.0f} s",
                passed=restore_s is not None and restore_s <= TARGET_RESTORE_S)
        )  # fmt: skip
        if not worker["drained"]:
            result.notes.append(
                f"The {engine} worker did not drain the topic within its cap: "
                f"{worker['records_done']:,} of {worker['records_target']:,} records."
            )
    return result


def _fill(ctx: Context, topic: str, spec: Spec) -> Filled:
    began = time.monotonic()
    filled = fill(ctx.bootstrap, topic, spec)
    say(
        f"pre-filled {filled.records:,} records ({filled.bytes / _MIB:,.0f} MiB) in "
        f"{time.monotonic() - began:.0f} s"
    )
    return filled


def offline(spec: Spec, batch_records: int) -> dict[str, Any]:
    """The pure runner over the dataset, `batch_records` records per partition and batch."""
    from processor.changelog import encode_input
    from processor.runner import Fetched, PartitionRunner
    from processor.windows import Config, PartitionState

    config = Config(GRACE_MS, RECONNECT_WINDOW_S)
    runners = [
        PartitionRunner(p, "events", config, PartitionState(), 0) for p in range(spec.partitions)
    ]
    pending: list[list[Fetched]] = [[] for _ in runners]
    events = input_writes = input_bytes = position_bytes = 0
    day_marks = {1: spec.base_ms + DAY_MS, 10: spec.base_ms + 10 * DAY_MS}
    by_day: dict[str, float] = {}
    cpu_began = time.process_time()

    def run(partition: int) -> None:
        nonlocal input_writes, input_bytes, position_bytes
        batch = runners[partition].run(pending[partition])
        pending[partition] = []
        if batch is None:
            return
        for write in batch.changelog:
            size = len(write.key or b"") + len(write.value)
            if write.key is not None and write.key.endswith(b"/~position"):
                position_bytes += size
            else:
                input_writes += 1
                input_bytes += size

    for key, value, partition, offset in _placed(spec):
        if partition < 0:
            continue
        if key != b"__tick__":
            events += 1
        pending[partition].append(Fetched(offset, key, value, 0))
        if len(pending[partition]) >= batch_records:
            run(partition)
        watermark = runners[partition].state.watermark_ms or 0
        for day, at_ms in list(day_marks.items()):
            if watermark >= at_ms:
                by_day[str(day)] = _mean_state(runners, encode_input)
                del day_marks[day]
    for partition in range(len(runners)):
        run(partition)
    cpu_s = time.process_time() - cpu_began
    by_day[str(spec.days)] = _mean_state(runners, encode_input)
    seen = [len(s.seen) for r in runners for s in r.state.inputs.values()]
    total = input_bytes + position_bytes
    return {
        "events": events,
        "changelog_bytes": total,
        "bytes_per_event": round(total / events, 1),
        "input_writes": input_writes,
        "bytes_per_write": round(input_bytes / max(1, input_writes), 1),
        "position_bytes": position_bytes,
        "state_bytes_by_day": by_day,
        "seen_ids_per_input_mean": round(mean(seen), 2) if seen else 0,
        "seen_ids_per_input_max": max(seen, default=0),
        "runner_cpu_s": round(cpu_s, 1),
    }


def _placed(spec: Spec) -> Iterator[tuple[bytes, bytes, int, int]]:
    """(key, value, partition, offset) of every record; a tick once per partition."""
    offsets = [0] * spec.partitions
    for key, value, partition in records(spec):
        p = zlib.crc32(key) % spec.partitions if partition is None else partition
        yield key, value, p, offsets[p]
        offsets[p] += 1


def _mean_state(runners: list[Any], encode: Any) -> float:
    sizes = [
        len(key) + 2 + len(encode(state, 0))
        for runner in runners
        for key, state in runner.state.inputs.items()
    ]
    return round(mean(sizes), 1) if sizes else 0.0


def _changelog_bytes(bootstrap: str, topic: str) -> int:
    """Keys and values of every record in `topic` (what the workers wrote, before compaction)."""
    return sum(
        len(key or b"") + len(value or b"")
        for key, value in topic_records(bootstrap, topic, "read_uncommitted")
    )


if __name__ == "__main__":
    # The offline part alone, no Kafka: python -m bench.state_bench [INPUTS]
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    spec = Spec(events=count * EVENTS_PER_INPUT, inputs=count, days=DAYS)
    found = {"drain": offline(spec, DRAIN_BATCH), "one_record_batches": offline(spec, 1)}
    print(json.dumps(found, indent=2))
