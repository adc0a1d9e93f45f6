"""The Faust engine's own mechanisms: a group taken by the other kind of member; the
runtime's process living and dying with the worker."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from plumbing.processes import FATAL_EXIT_CODE, descendants
from plumbing.settings import Settings
from tests.processor.workerkit import (
    SESSION_TIMEOUT_MS,
    Worker,
    killed_on_exit,
    new_app_id,
    new_topics,
    worker_env,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka


def test_a_faust_worker_beaten_to_the_group_by_the_other_engine_stops_in_one_line(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    """The race the check before start cannot see: a member of the kafka engine's kind
    (here a plain consumer, librdkafka's "range" assignor) joins the group after a
    Faust worker's check and before its own join. aiokafka then gives up on the group
    and the worker would wait forever, assigned nothing: it must exit 2 in one line."""
    from confluent_kafka import Consumer

    topics = new_topics(make_topics, partitions=1)
    app_id = new_app_id()
    worker = Worker(
        worker_env(kafka_bootstrap, topics, app_id, "faust"), tmp_path / "a", tmp_path / "a.log"
    )
    rival = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": app_id,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "enable.auto.commit": False,
        }
    )
    with killed_on_exit(worker):
        try:
            worker.wait_for_log("engine faust: joining consumer group")
            rival.subscribe([topics.events])
            deadline = time.monotonic() + 2 * SESSION_TIMEOUT_MS / 1000 + 5 + 45
            held = False
            while worker.proc.poll() is None and time.monotonic() < deadline:
                rival.poll(0.2)  # stays in the group
                held = held or bool(rival.assignment())
        finally:
            rival.close()
        assert held, "the rival never got the group: the race went the other way"
        assert worker.proc.wait(5) == 2, worker.output
    assert "is held by workers of the kafka engine" in worker.output
    assert "waiting up to" not in worker.output  # not the check before start
    assert "Traceback" not in worker.output


@contextmanager
def _recovered_faust_worker(
    bootstrap: str, make_topics: Callable[..., list[str]], tmp_path: Path
) -> Iterator[Worker]:
    topics = new_topics(make_topics, partitions=1)
    env = worker_env(bootstrap, topics, new_app_id(), "faust")
    with killed_on_exit(Worker(env, tmp_path / "a", tmp_path / "a.log")) as worker:
        worker.wait_for_log("recovery done")
        yield worker


def _runtime_process(worker: Worker) -> int:
    """The pid of the worker's runtime process (`processor.runtime_process`)."""

    def found() -> int | None:
        for child in descendants(worker.proc.pid):
            try:
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return child
            except OSError:
                continue
        return None

    wait_until(lambda: found() is not None, 30, "the worker's runtime process")
    pid = found()
    assert pid is not None
    return pid


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_runtime_process_dies_with_its_worker(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    """A SIGKILLed worker takes its runtime process with it: no orphan goes on
    writing transactions for partitions another worker now owns."""
    with _recovered_faust_worker(kafka_bootstrap, make_topics, tmp_path) as worker:
        child = _runtime_process(worker)
        worker.kill()
        wait_until(lambda: not _alive(child), 10, "the runtime process to end")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_whose_runtime_process_died_stops_with_exit_70(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    """The other way round: the worker stops at its next batch (its own ticks come
    every 100 ms) with exit 70, as after any fatal error, not waiting for a runtime
    that is gone."""
    with _recovered_faust_worker(kafka_bootstrap, make_topics, tmp_path) as worker:
        os.kill(_runtime_process(worker), signal.SIGKILL)
        assert worker.proc.wait(30) == FATAL_EXIT_CODE, worker.output
    assert "fatal error, stopping at once" in worker.output


async def test_a_revocation_after_the_engine_closed_has_nothing_to_do(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
) -> None:
    """Faust revokes a worker's partitions as it leaves the group, after its
    `on_before_shutdown` closed the engine if a rebalance was under way when the worker
    was told to stop. That revocation once crashed a stopping worker (exit 1, "cannot
    schedule new futures after shutdown": the runtime's process was gone)."""
    import faust

    from processor.app import _FaustEngine

    topics = new_topics(make_topics, partitions=1)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, events_topic=topics.events)
    engine = _FaustEngine(faust.App(new_app_id()), settings)
    try:
        engine.assigned([0])
        await engine.close()
        await engine.revoke([0])
    finally:
        engine.ticker.close()
