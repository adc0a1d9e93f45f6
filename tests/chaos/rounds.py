"""One chaos round: webhooks under load through a producer into two workers of one
engine, on a 3-node cluster (replication 3, min.insync 2), with faults staged
during the load; then what must hold whatever was killed.

What is checked, once the load is over and the output has settled:
- every webhook answered 202 is in the events topic (by event id): a 202 means
  the record was acknowledged by the in-sync replicas, and a killed node or
  producer must not lose it;
- the windows topic, read_committed and deduplicated by (window_id, type),
  equals the pure core run over the events topic as it stands, ticks included
  (the reference a replay computes), so no window is lost or made up;
- no (window_id, type) has two different contents: a copy is byte-identical;
- kafka engine: no window record twice at all (one transaction per batch, the
  group's offsets in it). The Faust engine writes in transactions too, fenced
  per partition; its identical copies are counted and reported.

Why waiting for the output to settle is enough: every sequence the load sends is
complete (retried until accepted), so every window opened is closed once the
events are released by the grace period; after that, ticks change nothing, and
the core over the events topic is what the workers must have written.
"""

from __future__ import annotations

import base64
import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson

from livewindows.kafka.launcher import free_ports
from plumbing.settings import Settings
from plumbing.topics import ensure_topics
from processor.windows import Config
from tests.chaos.load import Load, LoadReport
from tests.chaos.processes import Cluster, Producer, Worker
from tests.kafkakit import by_identity, core_windows, read_all

PARTITIONS = 6
REPLICATION = 3
GRACE_MS = 500
RW_S = 2
TICK_MS = 250
SESSION_TIMEOUT_MS = 6000
WORKERS = 2


@dataclass(frozen=True)
class Fault:
    """At `at_s` into the load: kill `what` ("worker", "workers", "broker", "producer")."""

    at_s: float
    what: str
    target: int = 0  # the worker or node
    keep_data_dir: bool = True  # a worker's restart
    down_s: float = 1.0  # how long it stays dead (the launcher restarts nodes by itself)


@dataclass(frozen=True)
class Plan:
    load_s: float
    rate: float  # webhooks per second
    faults: tuple[Fault, ...]
    settle_s: float = 240.0  # a new owner may wait out a killed worker's transaction (60 s)
    # The rounds at once, on one cluster (to fit `make test`): the first round's
    # broker faults hit both; the others kill no broker (two nodes down at once would
    # stop every write with min.insync 2).
    together: bool = False

    def without_broker_faults(self) -> Plan:
        return replace(self, faults=tuple(f for f in self.faults if f.what != "broker"))


# One fault of each kind, both engines at once: what `make test` runs.
SHORT = Plan(
    load_s=20,
    rate=25,
    faults=(
        Fault(4, "worker", 0),
        Fault(8, "broker", 1),
        Fault(14, "producer", down_s=1.0),
    ),
    settle_s=120,  # the rounds that passed settled within 25 s; a hang fails sooner
    together=True,
)
# `make chaos`: every kind several times, data dirs lost, both workers at once.
FULL = Plan(
    load_s=90,
    rate=40,
    faults=(
        Fault(6, "worker", 0),
        Fault(14, "broker", 1),
        Fault(24, "producer", down_s=2.0),
        Fault(32, "worker", 1, keep_data_dir=False),
        Fault(42, "workers", keep_data_dir=False, down_s=3.0),
        Fault(52, "broker", 2),
        Fault(62, "producer", down_s=0.5),
        Fault(70, "worker", 0, down_s=0.0),
        Fault(78, "broker", 0),
        Fault(85, "worker", 1),
    ),
)


@dataclass
class RoundResult:
    engine: str
    seconds: float = 0.0
    requests: int = 0
    answered_202: int = 0
    accepted_ids: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    inputs: int = 0
    event_records: int = 0
    event_ids: int = 0
    ticks: int = 0
    missing_202: list[str] = field(default_factory=list)
    window_records: int = 0
    windows: int = 0  # distinct (window_id, type)
    core_windows: int = 0
    missing_windows: int = 0  # the core's, not written
    extra_windows: int = 0  # written, not the core's
    identical_duplicates: int = 0
    conflicting: int = 0  # (window_id, type) with two contents
    faults: Counter[str] = field(default_factory=Counter)
    worker_restarts: int = 0
    producer_restarts: int = 0
    node_restarts: int = 0
    settle_s: float = 0.0
    worker_exits: list[int | None] = field(default_factory=list)
    unplanned_exits: list[int] = field(default_factory=list)  # codes of workers that died
    tracebacks: int = 0
    problems: list[str] = field(default_factory=list)

    def check(self) -> None:
        """The round's invariants (the module docstring); collected in `problems`."""
        if self.missing_202:
            self.problems.append(
                f"{len(self.missing_202)} event(s) answered 202 are not in the events "
                f"topic, e.g. {self.missing_202[:3]}"
            )
        if self.missing_windows or self.extra_windows:
            self.problems.append(
                f"windows differ from the core's: {self.missing_windows} missing, "
                f"{self.extra_windows} not the core's"
            )
        if self.conflicting:
            self.problems.append(f"{self.conflicting} window(s) written with two contents")
        if self.engine == "kafka" and self.identical_duplicates:
            self.problems.append(
                f"{self.identical_duplicates} window record(s) visible twice read_committed"
            )
        if self.unplanned_exits:
            self.problems.append(f"workers exited by themselves, codes {self.unplanned_exits}")
        if any(code != 0 for code in self.worker_exits):
            self.problems.append(f"workers stopped with exit codes {self.worker_exits}")


def settings_env(bootstrap: str, engine: str, tag: str) -> dict[str, str]:
    """The environment of the round's producer and workers: its own topics and app id."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "EVENTS_TOPIC": f"chaos-events-{tag}",
        "WINDOWS_TOPIC": f"chaos-windows-{tag}",
        "LATE_TOPIC": f"chaos-late-{tag}",
        "DLQ_TOPIC": f"chaos-dlq-{tag}",
        "TOPIC_PARTITIONS": str(PARTITIONS),
        "TOPIC_REPLICATION": str(REPLICATION),
        "WINDOW_GRACE_MS": str(GRACE_MS),
        "RECONNECT_WINDOW_S": str(RW_S),
        "TICK_INTERVAL_MS": str(TICK_MS),
        "PROCESSOR_APP_ID": f"chaos-{tag}",
        "PROCESSOR_ENGINE": engine,
        "PROCESSOR_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "VIDEO_EVENTS_TOKEN": "chaos-cf-token",
        "CF_WEBHOOK_SECRET": "chaos-cf-secret",
        "FASTPIX_WEBHOOK_SECRET": base64.b64encode(b"chaos fastpix key").decode(),
        "GJIRAFA_WEBHOOK_TOKEN": "chaos-gj-token",
        "LOG_FORMAT": "text",
    }


def settings_of(env: dict[str, str]) -> Settings:
    fields = {k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields}
    return Settings.model_validate(fields)


def run_rounds(
    cluster: Cluster, engines: list[str], plan: Plan, work_dir: Path, say: Callable[[str], None]
) -> list[RoundResult]:
    """One round per engine: in turn, or all at once if the plan says so."""
    if not plan.together:
        return [run_round(cluster, engine, plan, work_dir, say) for engine in engines]
    results: dict[str, RoundResult] = {}
    errors: list[BaseException] = []

    def one(engine: str, plan: Plan) -> None:
        try:
            results[engine] = run_round(cluster, engine, plan, work_dir, say)
        except BaseException as exc:
            errors.append(exc)

    # The processes a round starts die with its thread (PR_SET_PDEATHSIG), after it stopped them.
    threads = [
        threading.Thread(target=one, args=(e, plan if n == 0 else plan.without_broker_faults()))
        for n, e in enumerate(engines)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [results[engine] for engine in engines]


def run_round(
    cluster: Cluster, engine: str, plan: Plan, work_dir: Path, say: Callable[[str], None]
) -> RoundResult:
    """Start the round's services, load and faults, settle, stop, check; the result."""
    started = time.monotonic()
    result = RoundResult(engine)
    tag = f"{engine}-{uuid.uuid4().hex[:8]}"
    env = settings_env(cluster.bootstrap, engine, tag)
    settings = settings_of(env)
    ensure_topics(cluster.bootstrap, settings.topics, PARTITIONS, REPLICATION)
    round_dir = work_dir / tag
    round_dir.mkdir(parents=True)
    (port,) = free_ports(1)
    producer = Producer(port, env, round_dir / "producer.log")
    workers = [
        Worker(f"worker-{n}", env, round_dir / f"data-{n}", round_dir / f"worker-{n}.log")
        for n in range(WORKERS)
    ]
    say(f"[{engine}] topics *-{tag}; logs in {round_dir}")
    load: Load | None = None
    try:
        producer.start_ready()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_for_log("recovery done", 120)
        load = Load(producer.url, settings, plan.rate, senders=8, prefix=f"chaos-{tag}")
        load_started = time.monotonic()
        load.start()
        say(f"[{engine}] load: {plan.rate:.0f} webhooks/s for {plan.load_s:.0f} s")
        for fault in plan.faults:
            time.sleep(max(0.0, load_started + fault.at_s - time.monotonic()))
            say(f"[{engine}] t={time.monotonic() - load_started:5.1f}s {describe(fault)}")
            revive(workers, result)
            inject(fault, cluster, producer, workers, result)
        time.sleep(max(0.0, load_started + plan.load_s - time.monotonic()))
        say(f"[{engine}] load over; finishing the sequences under way")
        load.finish()
        revive(workers, result)
        settle_started = time.monotonic()
        settled(cluster.bootstrap, settings, plan.settle_s, lambda: revive(workers, result))
        result.settle_s = time.monotonic() - settle_started
        say(f"[{engine}] output settled in {result.settle_s:.1f} s; stopping")
        result.worker_exits = [worker.stop() for worker in workers]
        producer.stop()
    finally:
        if load is not None:
            load.abandon()  # a no-op once it finished
        for service in (producer, *workers):
            if service.running:
                service.kill()
    assert load is not None
    measure(result, cluster.bootstrap, settings, load.report)
    result.worker_restarts = sum(w.starts - 1 for w in workers)
    result.producer_restarts = producer.starts - 1
    result.tracebacks = sum(w.output.count("Traceback") for w in workers)
    result.seconds = time.monotonic() - started
    result.check()
    return result


def describe(fault: Fault) -> str:
    if fault.what == "broker":
        return f"SIGKILL broker node {fault.target} (the launcher restarts it)"
    if fault.what == "producer":
        return f"SIGKILL the producer, start it again after {fault.down_s:.1f} s"
    data = "with" if fault.keep_data_dir else "WITHOUT"
    who = "both workers" if fault.what == "workers" else f"worker-{fault.target}"
    return f"SIGKILL {who}, start again after {fault.down_s:.1f} s {data} its data dir"


def inject(
    fault: Fault, cluster: Cluster, producer: Producer, workers: list[Worker], result: RoundResult
) -> None:
    result.faults[fault.what] += 1
    if fault.what == "broker":
        cluster.kill_node(fault.target)
        return
    if fault.what == "producer":
        producer.kill()
        time.sleep(fault.down_s)
        producer.start_ready()
        return
    victims = workers if fault.what == "workers" else [workers[fault.target]]
    for worker in victims:
        worker.kill()
    time.sleep(fault.down_s)
    for worker in victims:
        worker.restart(keep_data_dir=fault.keep_data_dir)


def _windows_now(
    bootstrap: str, settings: Settings
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    written = [
        orjson.loads(r.value) for r in read_all(bootstrap, settings.windows_topic) if r.value
    ]
    expected = core_windows(bootstrap, settings.events_topic, _config(settings))
    return by_identity(written), by_identity(expected)


def revive(workers: list[Worker], result: RoundResult) -> None:
    """Start again, as a process supervisor would, a worker that exited by itself: a
    finding (`unplanned_exits`), since no fault of the plan should end a worker."""
    for worker in workers:
        if worker.proc is not None and not worker.running:
            code = worker.proc.returncode
            result.unplanned_exits.append(code)
            worker.exits.append(code)
            worker.restart(keep_data_dir=True)


def settled(
    bootstrap: str, settings: Settings, timeout_s: float, between: Callable[[], None]
) -> None:
    """Until the windows written are the core's over the events topic, twice in a row
    a few seconds apart (then the workers caught up and nothing is left to release);
    `between` runs between looks."""
    deadline = time.monotonic() + timeout_s
    agreed_at: float | None = None
    while True:
        between()
        written, expected = _windows_now(bootstrap, settings)
        if written == expected:
            if agreed_at is not None and time.monotonic() - agreed_at >= 3:
                return
            agreed_at = agreed_at or time.monotonic()
        else:
            agreed_at = None
        if time.monotonic() > deadline:
            return  # `measure` reports the difference
        time.sleep(1.0)


def _config(settings: Settings) -> Config:
    return Config(settings.window_grace_ms, settings.reconnect_window_s)


def measure(result: RoundResult, bootstrap: str, settings: Settings, load: LoadReport) -> None:
    """The counts of the summary and the comparisons `RoundResult.check` judges."""
    result.requests, result.answered_202 = load.sent, load.answered_202
    result.accepted_ids, result.statuses = len(load.accepted), dict(load.statuses)
    result.inputs = load.inputs
    result.problems += load.rejected[:5]
    ids: set[str] = set()
    for record in read_all(bootstrap, settings.events_topic, timeout_s=60):
        if record.key == b"__tick__":
            result.ticks += 1
            continue
        result.event_records += 1
        ids.add(str(orjson.loads(record.value or b"{}").get("event_id")))
    result.event_ids = len(ids)
    result.missing_202 = sorted(load.accepted - ids)
    copies: defaultdict[str, list[bytes]] = defaultdict(list)
    for record in read_all(bootstrap, settings.windows_topic, timeout_s=60):
        window = orjson.loads(record.value or b"{}")
        copies[f"{window['window_id']}:{window['type']}"].append(record.value or b"")
    result.window_records = sum(len(values) for values in copies.values())
    result.windows = len(copies)
    result.conflicting = sum(len(set(values)) > 1 for values in copies.values())
    result.identical_duplicates = result.window_records - result.windows
    written = by_identity([orjson.loads(v) for values in copies.values() for v in set(values)])
    expected = by_identity(core_windows(bootstrap, settings.events_topic, _config(settings)))
    result.core_windows = len(expected)
    result.missing_windows = len(expected - written)
    result.extra_windows = len(written - expected)


def summary(results: list[RoundResult], cluster: Cluster) -> str:
    """The counts a report needs, one block per round."""
    lines = []
    for r in results:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items()))
        faults = ", ".join(f"{k} x{v}" for k, v in sorted(r.faults.items()))
        lines += [
            f"engine {r.engine}: {r.seconds:.0f} s; output settled {r.settle_s:.1f} s after load",
            f"  webhooks: {r.requests} requests ({statuses}); {r.answered_202} answered 202, "
            f"{r.accepted_ids} distinct event ids, {r.inputs} input sequences complete",
            f"  events topic: {r.event_records} events ({r.event_ids} distinct ids), "
            f"{r.ticks} ticks; 202s missing from it: {len(r.missing_202)}",
            f"  windows topic: {r.window_records} records, {r.windows} distinct; the core's "
            f"{r.core_windows}; missing {r.missing_windows}, not the core's {r.extra_windows}",
            f"  duplicates: {r.identical_duplicates} identical, {r.conflicting} with two contents",
            f"  faults: {faults}; restarts: workers {r.worker_restarts}, producer "
            f"{r.producer_restarts}; worker exit codes at stop {r.worker_exits}, "
            f"unplanned exits {r.unplanned_exits}; "
            f"tracebacks in worker logs {r.tracebacks}",
            f"  verdict: {'OK' if not r.problems else 'FAILED: ' + '; '.join(r.problems)}",
        ]
    lines.append(
        f"cluster: {cluster.kills} node(s) killed, {cluster.restarts} restarted by the launcher"
    )
    return "\n".join(lines)
