"""`replay`: events/s of `livewindows replay --from-beginning` over the pre-filled topic.

The command runs as an operator runs it (its own process, with its default
`--jobs`: one job process per CPU, at most one per partition); its figure is the
rate it reports itself (records over its own processing time, job start-up
included), and the wall time including start-up is kept too. Baselines in the
same run: the plain loop of the processor benchmark (same core, same output), a
consume-only loop (the confluent-kafka ceiling: fetching alone) and, right after
the default run, the same command with `--jobs 1` (the one-process replay).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Context, Profiler, Result, Row, Service, say
from bench.processor_bench import GRACE_MS, RECONNECT_WINDOW_S, events_dataset, plain_loop
from bench.processor_bench import run_module as run_module

NAME = "replay"
TARGET_PER_S = 100_000
_DONE = re.compile(r"replay: done: ([\d,]+) records in ([\d.]+)s \(([\d,]+)/s\); ([\d,]+) window")
_JOBS = re.compile(r"^replay: (\d+) jobs over", re.MULTILINE)


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
    found = _replay(ctx, filled.topic, "replay", profile=ctx.profile)
    one = _replay(ctx, filled.topic, "replay-jobs-1", "--jobs", "1")
    rate, one_rate = found["records_per_s"], one["records_per_s"]
    result = Result(NAME)
    result.parameters = {
        "events": filled.events,
        "ticks_prefilled": filled.ticks,
        "partitions": len(filled.ends),
        "window_grace_ms": GRACE_MS,
        "jobs": found["jobs"],
        "cpus": os.cpu_count(),
        "command": "livewindows replay --from-beginning --output-topic <new topic>",
        "baseline_command": "the same with --jobs 1, right after",
        "measured_as": "records (events + ticks) over the command's own processing time",
    }
    result.metrics = {"replay": found, "replay_jobs_1": one, "plain_loop": baseline,
                      "consume_only": consume_only}  # fmt: skip
    result.rows.append(
        Row("records/s", rate, "/s", "plain loop, same core", baseline["records_per_s"],
            f">= {TARGET_PER_S:,}/s", rate >= TARGET_PER_S)
    )  # fmt: skip
    result.rows.append(
        Row(f"records/s, {found['jobs']} jobs vs 1", rate, "/s", "same command, --jobs 1",
            one_rate)
    )  # fmt: skip
    result.rows.append(
        Row("records/s vs fetching alone", rate, "/s", "consume-only loop",
            consume_only["records_per_s"])
    )  # fmt: skip
    result.rows.append(Row("records/s incl. start-up", found["records_per_s_wall"], "/s"))
    records, windows = found["records"], found["windows"]
    if baseline["windows"] != windows and abs(records - baseline["records"]) == 0:
        result.notes.append(f"replay wrote {windows} windows, the plain loop {baseline['windows']}")
    if (one["records"], one["windows"]) != (records, windows):
        result.notes.append(
            f"--jobs 1 replayed {one['records']} records into {one['windows']} windows, "
            f"the default {records} into {windows}"
        )
    return result


def _replay(
    ctx: Context, events_topic: str, label: str, *extra: str, profile: bool = False
) -> dict[str, Any]:
    """One `livewindows replay --from-beginning` into a new topic; its own figures."""
    (output,) = ctx.topics(f"{label}-windows")
    env = ctx.env(EVENTS_TOPIC=events_topic, WINDOW_GRACE_MS=str(GRACE_MS),
                  RECONNECT_WINDOW_S=str(RECONNECT_WINDOW_S))  # fmt: skip
    argv = [sys.executable, "-m", "livewindows.cli", "replay", "--from-beginning",
            "--output-topic", output, *extra]  # fmt: skip
    began = time.monotonic()
    replay = Service(label, argv, env, ctx.work_dir)
    profiler = None
    if profile:  # the parent only: with jobs, it mostly waits for them
        profiler = Profiler(replay.pid, 30, ctx.results_dir / f"{label}.pyspy.txt")
    peaks: dict[int, int] = {}
    while replay.alive():
        for pid, peak in _peak_rss_bytes(replay.pid).items():
            peaks[pid] = max(peak, peaks.get(pid, 0))
        time.sleep(0.2)
    wall_s = time.monotonic() - began
    output_text = replay.output()
    match = _DONE.search(output_text)
    if replay.process.returncode != 0 or match is None:
        raise RuntimeError(f"{label} failed ({replay.process.returncode}):\n{replay.tail()}")
    records, seconds = int(match.group(1).replace(",", "")), float(match.group(2))
    jobs_match = _JOBS.search(output_text)
    jobs = int(jobs_match.group(1)) if jobs_match else 1
    rate = records / seconds if seconds > 0 else 0.0
    say(f"{label}: {rate:,.0f} records/s with {jobs} job(s) ({records:,} in {seconds:.1f} s; "
        f"{wall_s:.1f} s wall)")  # fmt: skip
    found: dict[str, Any] = {
        "jobs": jobs,
        "records": records,
        "windows": int(match.group(4).replace(",", "")),
        "seconds": seconds,
        "records_per_s": round(rate, 1),
        "wall_s": round(wall_s, 1),
        "records_per_s_wall": round(records / wall_s, 1),
        # The command and its job processes together (sum of each one's peak).
        "peak_rss_mib": round(sum(peaks.values()) / 1024 / 1024, 1) if peaks else None,
    }
    if profiler is not None:
        found["profile"] = profiler.summary()
    return found


def _peak_rss_bytes(pid: int) -> dict[int, int]:
    """VmHWM of `pid` and of its children (the replay's jobs), by pid."""
    found: dict[int, int] = {}
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    pids += [int(child) for child in children]
    for each in pids:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            found[each] = int(match.group(1)) * 1024
    return found
