"""`livewindows replay --jobs N`: the partitions of a replay shared between N processes.

The parent plans the replay (each partition's start and end offsets, once, so
every job stops at the ends seen at start), closes its Kafka client, then starts
N processes with the "spawn" context (a confluent-kafka client does not survive a
fork). Each job assigns its own group of partitions and runs
`processor.replay.replay_partitions`, the loop of the one-process replay, with its
own producer (same configuration, so same partitioner). It reports its counts over
a pipe about twice a second and once at the end; the parent adds them up.

A job that fails sends a one-line reason and exits 1; a job that dies without a
result is a failure too. Either way the parent stops the other jobs and raises
`ReplayFailed`. Jobs ignore SIGINT (Ctrl-C reaches the whole process group): the
parent stops them, and they get SIGKILL if the parent dies.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from plumbing.processes import die_with_parent
from plumbing.settings import Settings
from processor.counts import Counts
from processor.replay_loop import (
    Progress,
    ReplayFailed,
    ReplaySummary,
    assign_ranges,
    configure_logging,
    consumer_config,
    producer_config,
    records_left,
    replay_partitions,
)
from processor.windows import Config

__all__ = ["JobSpec", "run_jobs", "split_partitions"]

_REPORT_EVERY_S = 0.5
_STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What one job replays: `ranges` is ((partition, start, end), ...)."""

    index: int
    parent_pid: int
    bootstrap: str
    events_topic: str
    output_topic: str
    window_grace_ms: int
    reconnect_window_s: int
    ranges: tuple[tuple[int, int, int], ...]


@dataclass(slots=True)
class _Job:
    spec: JobSpec
    process: BaseProcess
    reader: Connection
    counts: Counts = field(default_factory=Counts)
    remaining: int = 0
    done: bool = False

    @property
    def name(self) -> str:
        partitions = ", ".join(str(p) for p, _start, _end in self.spec.ranges)
        return f"job {self.spec.index + 1} (partitions {partitions})"


def split_partitions(
    ranges: dict[int, tuple[int, int]], jobs: int
) -> list[tuple[tuple[int, int, int], ...]]:
    """`jobs` groups of (partition, start, end), balanced by offsets to replay.

    Largest partitions first, each to the group with the fewest offsets so far;
    each group in partition order. Deterministic for the same plan.
    """
    groups: list[list[tuple[int, int, int]]] = [[] for _ in range(jobs)]
    sizes = [0] * jobs
    by_size = sorted(ranges.items(), key=lambda item: (item[1][0] - item[1][1], item[0]))
    for p, (start, end) in by_size:
        target = min(range(jobs), key=lambda j: (sizes[j], j))
        groups[target].append((p, start, end))
        sizes[target] += end - start
    return [tuple(sorted(group)) for group in groups if group]


def run_jobs(
    settings: Settings,
    output_topic: str,
    ranges: dict[int, tuple[int, int]],
    summary: ReplaySummary,
    progress: Progress | None,
) -> ReplaySummary:
    """Replay `ranges` with `summary.jobs` processes; the combined counts go into `summary`."""
    context = multiprocessing.get_context("spawn")
    specs = [
        JobSpec(
            index=index,
            parent_pid=os.getpid(),
            bootstrap=settings.kafka_bootstrap_servers,
            events_topic=settings.events_topic,
            output_topic=output_topic,
            window_grace_ms=settings.window_grace_ms,
            reconnect_window_s=settings.reconnect_window_s,
            ranges=group,
        )
        for index, group in enumerate(split_partitions(ranges, summary.jobs))
    ]
    summary.jobs = len(specs)
    jobs: list[_Job] = []
    began = time.monotonic()
    try:
        with _sigint_ignored():  # the children inherit it: Ctrl-C is the parent's to handle
            for spec in specs:
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(
                    target=job_main,
                    args=(spec, writer),
                    name=f"livewindows-replay-{spec.index + 1}",
                    daemon=True,
                )
                process.start()
                writer.close()
                jobs.append(_Job(spec, process, reader, remaining=_planned(spec)))
        failure = _supervise(jobs, summary, began, progress)
        if failure is not None:
            raise ReplayFailed(failure)
    finally:
        _stop(jobs)
    _combine(jobs, summary)
    summary.seconds = time.monotonic() - began
    return summary


def _supervise(
    jobs: list[_Job], summary: ReplaySummary, began: float, progress: Progress | None
) -> str | None:
    """Read the jobs' reports until all are done; returns the first failure, if any."""
    pending = {job.reader: job for job in jobs}
    last_report = began
    while pending:
        for reader in wait(list(pending), timeout=0.25):
            assert isinstance(reader, Connection)
            job = pending[reader]
            try:
                message = reader.recv()
            except EOFError:  # the job exited: it must have reported its result first
                del pending[reader]
                job.process.join(_STOP_TIMEOUT_S)
                if not job.done:
                    return f"{job.name} exited with code {job.process.exitcode} before it finished"
                continue
            kind = message[0]
            if kind == "error":
                return f"{job.name} failed: {message[1]}"
            job.counts, job.remaining = message[1], message[2]
            job.done = kind == "done"
        now = time.monotonic()
        if progress is not None and now - last_report >= 1.0:
            _combine(jobs, summary)
            summary.seconds = now - began
            progress(summary, sum(job.remaining for job in jobs))
            last_report = now
    return None


def _combine(jobs: list[_Job], summary: ReplaySummary) -> None:
    summary.counts = Counts()
    for job in jobs:
        summary.counts.add(job.counts)


def _stop(jobs: list[_Job]) -> None:
    """Terminate the jobs still running (SIGTERM, then SIGKILL) and reap them all."""
    for job in jobs:
        if job.process.is_alive():
            job.process.terminate()
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    for job in jobs:
        job.process.join(max(0.0, deadline - time.monotonic()))
        if job.process.is_alive():
            job.process.kill()
            job.process.join()
        job.reader.close()


def _planned(spec: JobSpec) -> int:
    return sum(end - start for _p, start, end in spec.ranges)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def job_main(spec: JobSpec, conn: Connection) -> None:
    """A job process: replay `spec.ranges`, report over `conn`, exit 0 (done) or 1 (failed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()  # the job dies with the parent, as `kafka start`'s nodes do
    configure_logging()
    if os.getppid() != spec.parent_pid:  # the parent died before the line above
        sys.exit(1)
    try:
        counts = _replay_job(spec, conn)
    except Exception as exc:
        conn.send(("error", _one_line(exc)))
        conn.close()
        sys.exit(1)
    conn.send(("done", counts, 0))
    conn.close()


def _replay_job(spec: JobSpec, conn: Connection) -> Counts:
    from confluent_kafka import Consumer, Producer

    def report(summary: ReplaySummary, consumer: Consumer, ends: dict[int, int]) -> None:
        conn.send(("progress", summary.counts, records_left(consumer, ends, ranges)))

    ranges = {p: (start, end) for p, start, end in spec.ranges}
    consumer = Consumer(consumer_config(spec.bootstrap))
    try:
        assign_ranges(consumer, spec.events_topic, ranges)
        producer = Producer(producer_config(spec.bootstrap))
        summary = ReplaySummary()
        replay_partitions(
            consumer,
            producer,
            spec.output_topic,
            {p: end for p, (_start, end) in ranges.items()},
            Config(spec.window_grace_ms, spec.reconnect_window_s),
            summary,
            report=report,
            report_every_s=_REPORT_EVERY_S,
        )
    finally:
        consumer.close()
    return summary.counts


def _one_line(exc: Exception) -> str:
    from confluent_kafka import KafkaException

    if isinstance(exc, KafkaException) and exc.args:
        text = f"Kafka error: {exc.args[0]}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())
