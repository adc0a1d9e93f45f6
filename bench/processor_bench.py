"""`processor`: events/s of one `livewindows worker` draining a pre-filled events topic.

Both engines are measured, each with a fresh app id (consumer group and changelog):
`--engine kafka` (confluent-kafka loop, one transaction per batch) and `--engine
faust`. `BENCH_PROCESSOR_ENGINES=kafka` (comma-separated) measures only those;
`BENCH_PROCESSOR_EVENTS=N` sizes a trial run (default 1,000,000).

The topic holds 1,000,000 realistic events over 100,000 inputs in 6 partitions
(`bench.dataset`), with ticks. Baselines in the same run: `bench.plainloop`, a
plain confluent-kafka loop around the same core that also writes the windows,
for both engines; and for the Faust engine also `bench.bare_faust`, a bare
faust-streaming agent that only iterates and acks (the Faust engine's target
is 0.6 of it).
Progress is the worker's committed offsets (its consumer group), sampled every
second, up to the pre-filled end offsets (the worker's own ticks come after).
The run ends when the group's lag on the pre-filled records is 0 or after a cap
(`CAP_S`), in which case the rate over the records done so far is reported with
the time a full drain would take at that rate.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

from bench.common import (
    Context,
    CpuMeter,
    Profiler,
    Result,
    Row,
    Service,
    dir_bytes,
    say,
)
from bench.dataset import Filled, Spec, fill

NAME = "processor"
GRACE_MS = 5000
RECONNECT_WINDOW_S = 60
TARGET_PER_S = 20_000
TARGET_RATIO = 0.5
FAUST_TARGET_RATIO = 0.6  # of the bare faust-streaming agent
CAP_S = 450.0
QUICK_CAP_S = 20.0
RESTART_CAP_S = 300.0  # a restart over the drained state, to "recovery done"
_MIB = 1024 * 1024


def dataset_spec(ctx: Context) -> Spec:
    """1M events over 100k inputs; `BENCH_PROCESSOR_EVENTS=N` for N over N/10 (a trial)."""
    events = int(os.environ.get("BENCH_PROCESSOR_EVENTS", 20_000 if ctx.quick else 1_000_000))
    return Spec(events, max(1, events // 10))


def events_dataset(ctx: Context) -> Filled:
    """The run's pre-filled events topic (made once, shared with `replay`)."""
    filled = ctx.cache.get("dataset")
    if isinstance(filled, Filled):
        return filled
    spec = dataset_spec(ctx)
    (topic,) = ctx.topics("events", partitions=spec.partitions)
    say(f"pre-filling {topic} with {spec.events:,} events over {spec.inputs:,} inputs")
    began = time.monotonic()
    filled = fill(ctx.bootstrap, topic, spec)
    say(
        f"pre-filled {filled.records:,} records ({filled.bytes / _MIB:,.0f} MiB) in "
        f"{time.monotonic() - began:.0f} s"
    )
    ctx.cache["dataset"] = filled
    return filled


def plain_loop(ctx: Context, filled: Filled) -> dict[str, Any]:
    """The baseline: the same core in a plain loop (cached for the run)."""
    cached = ctx.cache.get("plainloop")
    if isinstance(cached, dict):
        return cached
    (output_topic,) = ctx.topics("plainloop-windows")
    spec = {
        "bootstrap": ctx.bootstrap,
        "topic": filled.topic,
        "output_topic": output_topic,
        "grace_ms": GRACE_MS,
        "reconnect_window_s": RECONNECT_WINDOW_S,
    }
    found = run_module(ctx, "bench.plainloop", spec, "plainloop",
                       profile_s=30 if ctx.profile else 0)  # fmt: skip
    say(f"plain loop: {found['records_per_s']:,.0f} records/s, {found['windows']:,} windows")
    ctx.cache["plainloop"] = found
    return found


def bare_faust(ctx: Context, filled: Filled) -> dict[str, Any]:
    """The Faust engine's baseline: a bare faust-streaming agent over the same topic."""
    spec = {"bootstrap": ctx.bootstrap, "topic": filled.topic, "records": sum(filled.ends.values())}
    found = run_module(ctx, "bench.bare_faust", spec, "bare-faust")
    say(f"bare faust agent: {found['records_per_s']:,.0f} records/s")
    return found


def run_module(
    ctx: Context, module: str, spec: dict[str, Any], label: str, *, profile_s: float = 0
) -> dict[str, Any]:
    """`python -m module SPEC OUT` as a service; its JSON result plus peak RSS (and profile)."""
    spec_path = ctx.work_dir / f"{label}.spec.json"
    out_path = ctx.work_dir / f"{label}.out.json"
    spec_path.write_text(json.dumps(spec))
    service = Service(label, [sys.executable, "-m", module, str(spec_path), str(out_path)],
                      ctx.env(), ctx.work_dir)  # fmt: skip
    profiler = None
    if profile_s:
        profiler = Profiler(service.pid, profile_s, ctx.results_dir / f"{label}.pyspy.txt")
    peak = None
    while service.alive():
        peak = service.peak_rss_bytes() or peak
        time.sleep(0.2)
    if service.process.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{service.tail()}")
    found: dict[str, Any] = json.loads(out_path.read_text())
    found["peak_rss_mib"] = None if peak is None else round(peak / _MIB, 1)
    if profiler is not None:
        found["profile"] = profiler.summary()
    return found


def run(ctx: Context) -> Result:
    filled = events_dataset(ctx)
    spec = dataset_spec(ctx)
    baseline = plain_loop(ctx, filled)
    engines = os.environ.get("BENCH_PROCESSOR_ENGINES", "kafka,faust").split(",")
    bare = bare_faust(ctx, filled) if "faust" in engines else None
    workers = {engine: _worker(ctx, filled, baseline["windows"], engine) for engine in engines}
    result = Result(NAME)
    result.parameters = {
        "events": filled.events,
        "ticks": filled.ticks,
        "inputs": spec.inputs,
        "partitions": spec.partitions,
        "seed": spec.seed,
        "pre_fill_s": round(filled.seconds, 1),
        "events_topic_bytes": filled.bytes,
        "window_grace_ms": GRACE_MS,
        "reconnect_window_s": RECONNECT_WINDOW_S,
        "cap_s": QUICK_CAP_S if ctx.quick else CAP_S,
        "measured_as": "records (events + ticks) the worker's group committed, per second, "
        "from its first commit to the end of the run",
    }
    result.metrics = {"plain_loop": baseline}
    if bare is not None:
        result.metrics["bare_faust"] = bare
    base_rate = baseline["records_per_s"]
    for engine, worker in workers.items():
        result.metrics[_metric_key(engine)] = worker
        rate = worker["records_per_s"]
        ok = rate >= TARGET_PER_S and rate >= TARGET_RATIO * base_rate
        result.rows.append(
            Row(f"records/s, one worker, --engine {engine}", rate, "/s",
                "plain confluent-kafka loop, same core", base_rate,
                f">= {TARGET_PER_S:,}/s and >= {TARGET_RATIO}x plain loop", ok)
        )  # fmt: skip
        if engine == "faust" and bare is not None:
            bare_rate = bare["records_per_s"]
            result.rows.append(
                Row("records/s, one worker, --engine faust, against bare Faust", rate, "/s",
                    "bare faust-streaming agent (iterate and ack)", bare_rate,
                    f">= {FAUST_TARGET_RATIO}x bare Faust",
                    rate >= FAUST_TARGET_RATIO * bare_rate)
            )  # fmt: skip
    for engine, worker in workers.items():
        result.rows.append(
            Row(f"worker peak RSS, --engine {engine}", worker["peak_rss_mib"], "MiB",
                "plain loop peak RSS", baseline["peak_rss_mib"])
        )  # fmt: skip
        if engine == "faust":
            result.rows.append(Row("state on disk (data dir), --engine faust",
                                   worker["data_dir_mib"], "MiB"))  # fmt: skip
        if worker.get("changelog_mib") is not None:
            result.rows.append(
                Row(f"changelog topic on disk, --engine {engine}", worker["changelog_mib"], "MiB")
            )
        if worker.get("restart_to_recovered_s") is not None:
            result.rows.append(
                Row(f"restart over that state to recovered, --engine {engine}",
                    worker["restart_to_recovered_s"], "s")
            )  # fmt: skip
        if worker.get("rebuild_from_changelog_s") is not None:
            result.rows.append(
                Row(f"restart without the data dir (rebuilt from the changelog), --engine {engine}",
                    worker["rebuild_from_changelog_s"], "s")
            )  # fmt: skip
        elif engine == "faust":
            result.notes.append(
                f"The faust worker, started without its data dir, had not rebuilt its tables "
                f"from the changelog within {RESTART_CAP_S:.0f} s."
            )
        if not worker["drained"]:
            result.notes.append(
                f"The {engine} worker did not drain the topic within the "
                f"{result.parameters['cap_s']:.0f} s cap: it processed "
                f"{worker['records_done']:,} of {worker['records_target']:,} records; at its rate "
                f"a full drain takes ~{worker['projected_drain_s']:,.0f} s. State sizes are for "
                "the records processed."
            )
    return result


def _metric_key(engine: str) -> str:
    return "worker" if engine == "faust" else f"worker_{engine}"


def _worker(ctx: Context, filled: Filled, expected_windows: int, engine: str) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    from processor.changelog import changelog_topic

    app_id = f"bench-worker-{engine}-{uuid.uuid4().hex[:8]}"
    windows, late, dlq = ctx.topics(
        f"worker-{engine}-windows", f"worker-{engine}-late", f"worker-{engine}-dlq"
    )
    env = ctx.env(
        EVENTS_TOPIC=filled.topic,
        WINDOWS_TOPIC=windows,
        LATE_TOPIC=late,
        DLQ_TOPIC=dlq,
        PROCESSOR_APP_ID=app_id,
        WINDOW_GRACE_MS=str(GRACE_MS),
        RECONNECT_WINDOW_S=str(RECONNECT_WINDOW_S),
        TICK_INTERVAL_MS="1000",
        PROCESSOR_ENGINE=engine,
    )
    data_dir = ctx.work_dir / f"worker-{engine}-data"
    cap_s = QUICK_CAP_S if ctx.quick else CAP_S
    target = sum(filled.ends.values())
    partitions = [TopicPartition(filled.topic, p) for p in sorted(filled.ends)]
    watcher = Consumer({"bootstrap.servers": ctx.bootstrap, "group.id": app_id})
    samples: list[tuple[float, int, int]] = []  # (s since spawn, records done, windows written)
    argv = [sys.executable, "-m", "livewindows.cli", "worker", "--data-dir", str(data_dir)]
    worker = Service(f"worker-{engine}", argv, env, ctx.work_dir)
    spawned = time.monotonic()
    first: tuple[float, int] | None = None
    meter: CpuMeter | None = None
    profiler = None
    peak = None
    try:
        while True:
            time.sleep(1.0)
            if not worker.alive():
                raise RuntimeError(f"the worker exited:\n{worker.tail()}")
            committed = watcher.committed(partitions, timeout=10)
            done = sum(min(max(tp.offset, 0), filled.ends[tp.partition]) for tp in committed)
            written = _offsets(watcher, windows)
            now = time.monotonic() - spawned
            samples.append((round(now, 2), done, written))
            peak = worker.peak_rss_bytes() or peak
            if first is None and done > 0:
                first = (now, done)
                meter = CpuMeter({"worker": worker})
                if ctx.profile:
                    profiler = Profiler(
                        worker.pid, 30, ctx.results_dir / f"worker-{engine}.pyspy.txt"
                    )
            if done >= target or (first is not None and now - first[0] >= cap_s):
                break
            if first is None and now > 120:
                raise RuntimeError(f"the worker committed nothing in 120 s:\n{worker.tail()}")
        cpu = meter.shares()["worker"] if meter is not None else None
        profile = profiler.summary() if profiler is not None else None
    finally:
        worker.stop(30)
        watcher.close()
    assert first is not None
    restart_s = _restart_s(ctx, argv, env, engine)
    # The Faust engine trusts its local tables after a clean stop; without them
    # (a crash, a new host) it rebuilds them from the whole changelog.
    rebuild_s = None
    if engine == "faust":
        empty = ctx.work_dir / f"worker-{engine}-rebuild"
        rebuild_s = _restart_s(ctx, [*argv[:-1], str(empty)], env, f"{engine}-rebuild")
    end_s, done, written = samples[-1]
    seconds = end_s - first[0]
    rate = (done - first[1]) / seconds if seconds > 0 else 0.0
    drained = done >= target
    written = _count_records(ctx.bootstrap, windows)  # offsets count transaction markers too
    say(f"worker --engine {engine}: {rate:,.0f} records/s "
        f"({done:,} of {target:,} records in {end_s:.0f} s)")  # fmt: skip
    changelog = changelog_topic(app_id)
    changelog_bytes = ctx.topic_disk_bytes(changelog)
    found: dict[str, Any] = {
        "records_per_s": round(rate, 1),
        "records_done": done,
        "records_target": target,
        "drained": drained,
        "seconds_measured": round(seconds, 1),
        "startup_s": round(first[0], 1),
        "projected_drain_s": round(target / rate, 0) if rate > 0 else None,
        "windows_written": written,
        "windows_expected_full_drain": expected_windows,
        "cpu_share_of_one_core": cpu,
        "cpu_ms_per_record": round(cpu * 1000 / rate, 3) if cpu and rate else None,
        "peak_rss_mib": None if peak is None else round(peak / _MIB, 1),
        "data_dir_mib": round(dir_bytes(data_dir) / _MIB, 1),
        "changelog_topic": changelog,
        "changelog_offsets": _offsets_from(ctx, changelog),
        "changelog_mib": None if changelog_bytes is None else round(changelog_bytes / _MIB, 1),
        "restart_to_recovered_s": restart_s,
        "rebuild_from_changelog_s": rebuild_s,
        "samples": samples,
    }
    if profile is not None:
        found["profile"] = profile
    if drained and written < expected_windows:
        raise RuntimeError(f"the worker wrote {written} windows, the core {expected_windows}")
    return found


def _restart_s(ctx: Context, argv: list[str], env: dict[str, str], name: str) -> float | None:
    """Seconds from spawning the worker again, over the state the drain left, to its
    "recovery done" (state restored, processing); None if not within the cap."""
    service = Service(f"worker-{name}-restart", argv, env, ctx.work_dir)
    spawned = time.monotonic()
    try:
        while service.alive() and time.monotonic() - spawned < RESTART_CAP_S:
            if "recovery done" in service.output():
                return round(time.monotonic() - spawned, 1)
            time.sleep(0.2)
        return None
    finally:
        service.stop(30)


def _count_records(bootstrap: str, topic: str) -> int:
    """Records of `topic` a read_committed consumer sees (no markers, no aborted writes)."""
    return sum(1 for _ in topic_records(bootstrap, topic))


def topic_records(
    bootstrap: str, topic: str, isolation: str = "read_committed"
) -> Iterator[tuple[bytes | None, bytes | None]]:
    """(key, value) of every record of `topic`, to its end (up to 300 s)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count",
                         "enable.partition.eof": True, "enable.auto.commit": False,
                         "isolation.level": isolation})  # fmt: skip
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        left = set(partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + 300
        while left and time.monotonic() < deadline:
            for message in consumer.consume(10_000, 1.0):
                error = message.error()
                if error is None:
                    yield message.key(), message.value()
                elif error.code() == KafkaError._PARTITION_EOF:
                    left.discard(message.partition())
    finally:
        consumer.close()


def _offsets(client: Any, topic: str) -> int:
    from confluent_kafka import TopicPartition

    described = client.list_topics(topic, timeout=10).topics[topic]
    total = 0
    for p in described.partitions:
        low, high = client.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        total += high - low
    return total


def _offsets_from(ctx: Context, topic: str) -> int | None:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": ctx.bootstrap, "group.id": "bench-count"})
    try:
        if topic not in consumer.list_topics(timeout=10).topics:
            return None
        return _offsets(consumer, topic)
    finally:
        consumer.close()
