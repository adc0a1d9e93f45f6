"""A group moving between engines: refused while the other engine holds it, taken once it left."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.kafkakit import (
    produce,
)
from tests.processor.workerkit import (
    Worker,
    assert_same_windows_as_the_core,
    killed_on_exit,
    new_app_id,
    new_topics,
    scenario_records,
    wait_for_windows,
    worker_env,
)

pytestmark = pytest.mark.kafka

SHORTEST_SESSION = {"PROCESSOR_SESSION_TIMEOUT_MS": "1000"}  # Settings' minimum


@pytest.mark.parametrize(("first", "second"), [("faust", "kafka"), ("kafka", "faust")])
def test_a_worker_refuses_a_group_held_by_the_other_engine(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
    first: str,
    second: str,
) -> None:
    """The broker refuses a member whose assignor the group does not share, and both
    clients would retry forever: the second worker must end in one clear line."""
    topics = new_topics(make_topics, partitions=1)
    app_id = new_app_id()
    holder = Worker(
        worker_env(kafka_bootstrap, topics, app_id, first), tmp_path / "a", tmp_path / "a.log"
    )
    with killed_on_exit(holder):
        holder.wait_for_log("recovery done")
        # It waits two of its session timeouts and 5 s for a crashed holder to leave
        # before it refuses; it never joins, so the shortest session keeps that short.
        newcomer = Worker(
            {**worker_env(kafka_bootstrap, topics, app_id, second), **SHORTEST_SESSION},
            tmp_path / "b",
            tmp_path / "b.log",
        )
        assert newcomer.proc.wait(60) == 2, newcomer.output
        assert f"is held by workers of the {first} engine" in newcomer.output
        assert "waiting up to" in newcomer.output
        assert holder.stop() == 0


def test_a_kafka_engine_worker_waits_for_a_crashed_faust_worker_to_leave_the_group(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    """Moving from faust to kafka after a crash: the dead Faust member stays in the group
    until its session times out; the new worker waits for that instead of refusing.

    The successor starts while the Faust worker still runs, and it crashes once the
    successor waits: so the successor surely finds it in the group (started after
    the crash, on a busy host, it might only start after the session expired), and
    the session (the workers' 6 s) need not be long for that."""
    topics = new_topics(make_topics, partitions=1)
    app_id = new_app_id()
    crashed = Worker(
        worker_env(kafka_bootstrap, topics, app_id, "faust"), tmp_path / "a", tmp_path / "a.log"
    )
    with killed_on_exit(crashed):
        crashed.wait_for_log("recovery done")
        successor = Worker(
            worker_env(kafka_bootstrap, topics, app_id, "kafka"),
            tmp_path / "b",
            tmp_path / "b.log",
        )
        with killed_on_exit(successor):
            successor.wait_for_log("is held by the other engine")
            crashed.kill()
            successor.wait_for_log("recovery done", 60)
            produce(
                kafka_bootstrap, topics.events, scenario_records(range(2), int(time.time() * 1000))
            )
            wait_for_windows(kafka_bootstrap, topics, 2, "the windows, written by the successor")
            assert successor.stop() == 0
    assert_same_windows_as_the_core(kafka_bootstrap, topics)
