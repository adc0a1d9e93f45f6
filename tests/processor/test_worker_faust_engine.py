"""The Faust engine's own mechanisms: a group taken by the other kind of member."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processor.workerkit import (
    SESSION_TIMEOUT_MS,
    Worker,
    killed_on_exit,
    new_app_id,
    new_topics,
    worker_env,
)

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
