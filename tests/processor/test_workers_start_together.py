"""Workers started at the same moment on a fresh app id, on new topics of a 3-node
cluster (replication 3), all come up and share the partitions (issue #18, item 3).

Starting together is where the start-up races are: every worker creates the
changelog topic at once (one wins, the others must wait for its metadata rather
than read 0 partitions), the transaction and group coordinators of a new app id
are still loading, and the group rebalances while the members join one by one.
Each of these must be waited out, never fatal. A round starts three workers of
one engine within milliseconds on new topics (replication 3, min.insync 2) of
the session's 3-node cluster and a new app id, and asserts that all of them
restored, that the group's final assignment gives each some partitions and every
partition to one, and that the scenario's windows are the core's. Rounds repeat,
since a race that is lost one time in a few is a race all the same: `make chaos`
runs 5 rounds per engine (`LIVEWINDOWS_START_ROUNDS`; `make test` runs 1).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from plumbing.topics import ensure_topics
from tests.kafkakit import produce
from tests.localkafka import Supervised
from tests.processor.workerkit import (
    Topics,
    Worker,
    assert_same_windows_as_the_core,
    new_app_id,
    scenario_records,
    wait_for_windows,
    worker_env,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

WORKERS = 3
PARTITIONS = 6
REPLICATION = 3
INPUTS = 18
# One round per engine in `make test`; `make chaos` repeats them.
ROUNDS = int(os.environ.get("LIVEWINDOWS_START_ROUNDS", "1"))


def group_assignment(bootstrap: str, group_id: str) -> list[set[int]]:
    """The partitions of each member of the consumer group, as its coordinator has them
    (the group must be stable: between rebalances, nothing is assigned)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        group = admin.describe_consumer_groups([group_id])[group_id].result(10)
    except KafkaException:
        return []
    if group.state != ConsumerGroupState.STABLE:
        return []
    return [{tp.partition for tp in m.assignment.topic_partitions} for m in group.members]


def shared_out(bootstrap: str, group_id: str) -> bool:
    """One member per worker, each owning some partitions, every partition owned once."""
    owned = group_assignment(bootstrap, group_id)
    every = set().union(*owned)
    return (
        len(owned) == WORKERS
        and all(owned)
        and sum(len(o) for o in owned) == len(every) == PARTITIONS
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("round_", range(1, ROUNDS + 1), ids=lambda n: f"round{n}")
@pytest.mark.parametrize("engine", ["kafka", "faust"])
def test_workers_started_together_all_recover_and_share_the_partitions(
    three_node_cluster: Supervised, tmp_path: Path, engine: str, round_: int
) -> None:
    bootstrap = three_node_cluster.bootstrap
    suffix = uuid.uuid4().hex[:12]
    topics = Topics(*(f"{name}-{suffix}" for name in ("events", "windows", "late", "dlq")))
    ensure_topics(bootstrap, list(vars(topics).values()), PARTITIONS, REPLICATION)
    # A fresh app id: its changelog does not exist, its group has no members, and
    # its transactional ids have no coordinator state yet.
    app_id = new_app_id()
    env = {**worker_env(bootstrap, topics, app_id, engine), "TOPIC_REPLICATION": "3"}
    # The scenario is waiting for them: written before any worker ticks, no tick can
    # overtake one of its records and make it late (a busy host delays records).
    produce(bootstrap, topics.events, scenario_records(range(INPUTS), int(time.time() * 1000)))
    workers = [
        Worker(env, tmp_path / f"data-{n}", tmp_path / f"worker-{n}.log") for n in range(WORKERS)
    ]
    try:
        for worker in workers:
            worker.wait_for_log("recovery done", timeout_s=120)
        wait_until(lambda: shared_out(bootstrap, app_id), 60, "every worker to own some partitions")
        wait_for_windows(bootstrap, topics, INPUTS, "every window of the scenario")
        assert [w.proc.poll() for w in workers] == [None] * WORKERS, "no worker exited"
        assert shared_out(bootstrap, app_id), "the assignment stayed shared while they worked"
        assert [w.stop() for w in workers] == [0] * WORKERS
    finally:
        for worker in workers:
            if worker.proc.poll() is None:
                worker.kill()
            print(f"--- {worker.log_path.name} (exit {worker.proc.returncode})\n{worker.output}")
    assert_same_windows_as_the_core(bootstrap, topics)
    for worker in workers:
        assert "Traceback" not in worker.output
        assert "must match" not in worker.output
