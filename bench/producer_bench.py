"""`producer`: accepted webhooks/s and latency of `livewindows serve` at acks=all.

Open-loop runs at fixed offered loads (latency from each request's scheduled
time), then saturation (wrk if installed, else the async client closed-loop),
against the producer and, in the same run, against two ceilings: a bare aiohttp
app that only answers 202 (HTTP), and Kafka's own ProducerPerformance with
acks=all and the producer's real records as payloads (the broker).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import wrk
from bench.common import (
    Context,
    CpuMeter,
    Profiler,
    Result,
    Row,
    Service,
    free_port,
    say,
    wait_http_ok,
)
from bench.common import services as started_services
from bench.loadgen import LoadSpec, build_requests

if TYPE_CHECKING:
    from schemas.records import Provider

NAME = "producer"
RATES = (500, 2000, 5000)
TARGET_ACCEPTED_PER_S = 5000
TARGET_RATIO = 0.5


def run(ctx: Context) -> Result:
    duration_s = 1.0 if ctx.quick else 10.0
    warmup_s = 0.5 if ctx.quick else 1.0
    saturation_s = 1.0 if ctx.quick else 10.0
    connections = 64
    (events_topic,) = ctx.topics("producer-events")
    wrk_path = wrk.find_wrk()
    result = Result(NAME)
    result.parameters = {
        "offered_per_s": list(RATES),
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "saturation_s": saturation_s,
        "open_loop_connections": 256,
        "saturation_connections": connections,
        "saturation_tool": wrk.version(wrk_path) if wrk_path else "bench.loadgen closed loop",
        "acks": "all (idempotent producer)",
        "providers": "cloudflare, fastpix, gjirafa in turn; one input per sample sequence",
    }
    if wrk_path is None:
        result.notes.append(
            "wrk not found (apt-get install -y wrk): saturation measured with the async client"
        )
    runs: dict[str, dict[str, Any]] = {}
    for target in ("bare", "producer"):
        runs[target] = _measure(ctx, target, events_topic, duration_s, warmup_s, saturation_s,
                                connections, wrk_path)  # fmt: skip
    broker = _producer_performance(ctx)
    landed = _records_in(ctx, events_topic)
    accepted = sum(r["accepted"] for r in runs["producer"]["loads"].values())
    accepted += runs["producer"]["saturation"]["accepted"]
    result.metrics = {
        **runs,
        "broker_ceiling": broker,
        "records_in_events_topic": landed,
        "accepted_total": accepted,
    }
    if landed < accepted:
        result.notes.append(f"only {landed} records landed for {accepted} accepted webhooks")

    producer_sat = runs["producer"]["saturation"]["accepted_per_s"]
    bare_sat = runs["bare"]["saturation"]["accepted_per_s"]
    ok = producer_sat >= TARGET_ACCEPTED_PER_S and producer_sat >= TARGET_RATIO * bare_sat
    result.rows.append(
        Row("accepted/s at saturation (acks=all)", producer_sat, "/s", "bare 202 app", bare_sat,
            f">= {TARGET_ACCEPTED_PER_S:,}/s and >= {TARGET_RATIO}x bare", ok)
    )  # fmt: skip
    result.rows.append(
        Row("accepted/s at saturation vs broker", producer_sat, "/s",
            "ProducerPerformance acks=all", broker.get("records_per_s"))
    )  # fmt: skip
    top = str(RATES[-1])
    mine, bare = runs["producer"]["loads"][top], runs["bare"]["loads"][top]
    result.rows.append(
        Row(f"accepted/s at {RATES[-1]:,}/s offered", mine["accepted_per_s"], "/s",
            "bare 202 app", bare["accepted_per_s"])
    )  # fmt: skip
    result.rows.append(
        Row(f"latency p99 at {RATES[-1]:,}/s offered", mine["latency_ms"]["p99"], "ms",
            "bare 202 app", bare["latency_ms"]["p99"])
    )  # fmt: skip
    return result


def _measure(
    ctx: Context,
    target: str,
    events_topic: str,
    duration_s: float,
    warmup_s: float,
    saturation_s: float,
    connections: int,
    wrk_path: str | None,
) -> dict[str, Any]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    if target == "bare":
        argv = [sys.executable, "-m", "bench.bare", "--port", str(port)]
    else:
        argv = [sys.executable, "-m", "livewindows.cli", "serve", "--host", "127.0.0.1",
                "--port", str(port)]  # fmt: skip
        # BENCH_SERVE_WORKERS=N measures `serve --workers N` (default: one process).
        argv += ["--workers", os.environ.get("BENCH_SERVE_WORKERS", "1")]
    env = ctx.env(EVENTS_TOPIC=events_topic)
    out: dict[str, Any] = {"loads": {}}
    with started_services() as running:
        server = Service(target, argv, env, ctx.work_dir)
        running.append(server)
        wait_http_ok(f"{base_url}/readyz", 60, server)
        for rate in RATES:
            spec = LoadSpec(base_url, "open", duration_s, rate=rate, connections=256,
                            warmup_s=warmup_s, input_prefix=f"{target}-{rate}")  # fmt: skip
            meter = CpuMeter({target: server})
            found = _loadgen(ctx, spec, f"{target}-{rate}")
            found["cpu_share_of_one_core"] = meter.shares()[target]
            out["loads"][str(rate)] = found
            say(f"{NAME}: {target} at {rate}/s offered: {_brief(found)}")
        meter = CpuMeter({target: server})
        profiler = None
        if ctx.profile and target == "producer":
            profiler = Profiler(server.pid, saturation_s, ctx.results_dir / "producer.pyspy.txt")
        if wrk_path is not None:
            requests = build_requests(
                60_000 if not ctx.quick else 6_000, f"{target}-wrk", ctx.settings()
            )
            found = wrk.saturate(wrk_path, base_url, requests, ctx.work_dir,
                                 duration_s=saturation_s, connections=connections)  # fmt: skip
        else:
            spec = LoadSpec(base_url, "closed", saturation_s, connections=connections,
                            warmup_s=warmup_s, input_prefix=f"{target}-sat")  # fmt: skip
            found = _loadgen(ctx, spec, f"{target}-saturation")
        found["cpu_share_of_one_core"] = meter.shares()[target]
        if profiler is not None:
            out["profile"] = profiler.summary()
        out["saturation"] = found
        say(f"{NAME}: {target} at saturation: {_brief(found)}")
    return out


def _loadgen(ctx: Context, spec: LoadSpec, label: str) -> dict[str, Any]:
    from dataclasses import asdict

    spec_path = ctx.work_dir / f"loadgen-{label}.json"
    out_path = ctx.work_dir / f"loadgen-{label}.out.json"
    spec_path.write_text(json.dumps(asdict(spec)))
    shown = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", str(spec_path), str(out_path)],
        env=ctx.env(), capture_output=True, text=True,
        timeout=spec.duration_s + spec.warmup_s + spec.timeout_s + 120,
    )  # fmt: skip
    if shown.returncode != 0:
        raise RuntimeError(f"load generator failed: {shown.stderr[-1500:]}")
    found: dict[str, Any] = json.loads(out_path.read_text())
    found.pop("spec", None)
    return found


def _brief(found: dict[str, Any]) -> str:
    latency = found["latency_ms"]
    others = {k: v for k, v in found["statuses"].items() if k != "202"}
    return (
        f"{found['accepted_per_s']:,.0f} accepted/s, p50 {latency['p50']} ms, "
        f"p99 {latency['p99']} ms" + (f", other answers {others}" if others else "")
    )


def _event_payloads(ctx: Context, path: Path) -> float:
    """The producer's real records (values) for ProducerPerformance; returns the mean size."""
    from producer.normalize import parse_json, to_event
    from producer.publisher import encode
    from producer.sample_webhooks import sample_requests

    settings = ctx.settings()
    values: list[bytes] = []
    providers: tuple[Provider, ...] = ("cloudflare", "fastpix", "gjirafa")
    for n in range(300):
        provider = providers[n % 3]
        for sample in sample_requests(provider, f"perf-{n:05d}", settings, 1_790_000_000_000):
            event = to_event(provider, parse_json(sample.body), 1_790_000_000_123)
            values.append(encode(event)[1])
    path.write_bytes(b"\n".join(values))
    return sum(len(v) for v in values) / len(values)


def _producer_performance(ctx: Context) -> dict[str, Any]:
    from livewindows.kafka.runtime import java_command

    (topic,) = ctx.topics("producer-perf")
    payloads = ctx.work_dir / "event-payloads.txt"
    mean_size = _event_payloads(ctx, payloads)
    records = 10_000 if ctx.quick else 500_000
    argv = java_command(
        "org.apache.kafka.tools.ProducerPerformance",
        "--bootstrap-server", ctx.bootstrap, "--topic", topic,
        "--num-records", str(records), "--throughput", "-1",
        "--payload-file", str(payloads),
        "--command-property", "acks=all", "enable.idempotence=true", "linger.ms=2",
        heap_mb=512,
    )  # fmt: skip
    shown = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    last = [line for line in shown.stdout.splitlines() if "records sent" in line]
    if shown.returncode != 0 or not last:
        output = shown.stdout[-500:] + shown.stderr[-500:]
        raise RuntimeError(f"ProducerPerformance failed: {output}")
    line = last[-1]
    number = r"([\d.]+)"
    found: dict[str, Any] = {"records": records, "mean_record_bytes": round(mean_size, 1),
                             "settings": "acks=all enable.idempotence=true linger.ms=2",
                             "line": line.strip()}  # fmt: skip
    for name, pattern in {
        "records_per_s": number + r" records/sec",
        "mb_per_s": r"\(" + number + r" MB/sec\)",
        "latency_avg_ms": number + r" ms avg latency",
        "latency_p50_ms": number + r" ms 50th",
        "latency_p99_ms": number + r" ms 99th",
    }.items():
        match = re.search(pattern, line)
        if match:
            found[name] = float(match.group(1))
    say(f"{NAME}: ProducerPerformance acks=all: {found.get('records_per_s', 0):,.0f} records/s")
    return found


def _records_in(ctx: Context, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": ctx.bootstrap, "group.id": "bench-count"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()
