"""`replay`: events/s of `livewindows replay --from-beginning` over the pre-filled topic.

The command runs as an operator runs it (its own process); its figure is the
rate it reports itself (records over its own processing time), and the wall
time including start-up is kept too. Baselines in the same run: the plain loop
of the processor benchmark (same core, same output) and a consume-only loop
(the confluent-kafka ceiling: fetching alone).
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

from bench.common import Context, Profiler, Result, Row, Service, say
from bench.processor_bench import GRACE_MS, RECONNECT_WINDOW_S, events_dataset, plain_loop
from bench.processor_bench import run_module as run_module

NAME = "replay"
TARGET_PER_S = 100_000
_DONE = re.compile(r"replay: done: ([\d,]+) records in ([\d.]+)s \(([\d,]+)/s\); ([\d,]+) window")


def run(ctx: Context) -> Result:
    filled = events_dataset(ctx)
    baseline = plain_loop(ctx, filled)
    consume_only = run_module(
        ctx, "bench.plainloop",
        {"bootstrap": ctx.bootstrap, "topic": filled.topic, "grace_ms": GRACE_MS,
         "reconnect_window_s": RECONNECT_WINDOW_S, "consume_only": True},
        "consume-only",
    )  # fmt: skip
    say(f"consume only: {consume_only['records_per_s']:,.0f} records/s")
    output, = ctx.topics("replay-windows")
    env = ctx.env(EVENTS_TOPIC=filled.topic, WINDOW_GRACE_MS=str(GRACE_MS),
                  RECONNECT_WINDOW_S=str(RECONNECT_WINDOW_S))  # fmt: skip
    argv = [sys.executable, "-m", "livewindows.cli", "replay", "--from-beginning",
            "--output-topic", output]  # fmt: skip
    began = time.monotonic()
    replay = Service("replay", argv, env, ctx.work_dir)
    profiler = None
    if ctx.profile:
        profiler = Profiler(replay.pid, 30, ctx.results_dir / "replay.pyspy.txt")
    peak = None
    while replay.alive():
        peak = replay.peak_rss_bytes() or peak
        time.sleep(0.2)
    wall_s = time.monotonic() - began
    match = _DONE.search(replay.output())
    if replay.process.returncode != 0 or match is None:
        raise RuntimeError(f"replay failed ({replay.process.returncode}):\n{replay.tail()}")
    records, seconds = int(match.group(1).replace(",", "")), float(match.group(2))
    windows = int(match.group(4).replace(",", ""))
    rate = records / seconds if seconds > 0 else 0.0
    say(f"replay: {rate:,.0f} records/s ({records:,} in {seconds:.1f} s; {wall_s:.1f} s wall)")
    found: dict[str, Any] = {
        "records": records,
        "windows": windows,
        "seconds": seconds,
        "records_per_s": round(rate, 1),
        "wall_s": round(wall_s, 1),
        "records_per_s_wall": round(records / wall_s, 1),
        "peak_rss_mib": None if peak is None else round(peak / 1024 / 1024, 1),
    }
    if profiler is not None:
        found["profile"] = profiler.summary()
    result = Result(NAME)
    result.parameters = {
        "events": filled.events,
        "ticks_prefilled": filled.ticks,
        "partitions": len(filled.ends),
        "window_grace_ms": GRACE_MS,
        "command": "livewindows replay --from-beginning --output-topic <new topic>",
        "measured_as": "records (events + ticks) over the command's own processing time",
    }
    result.metrics = {"replay": found, "plain_loop": baseline, "consume_only": consume_only}
    result.rows.append(
        Row("records/s", rate, "/s", "plain loop, same core", baseline["records_per_s"],
            f">= {TARGET_PER_S:,}/s", rate >= TARGET_PER_S)
    )  # fmt: skip
    result.rows.append(
        Row("records/s vs fetching alone", rate, "/s", "consume-only loop",
            consume_only["records_per_s"])
    )  # fmt: skip
    result.rows.append(
        Row("records/s incl. start-up", found["records_per_s_wall"], "/s")
    )
    if baseline["windows"] != windows and abs(records - baseline["records"]) == 0:
        result.notes.append(f"replay wrote {windows} windows, the plain loop {baseline['windows']}")
    return result
