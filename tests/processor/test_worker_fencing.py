"""A worker that stops in the middle of its work, for good (SIGKILL) or for a while
(SIGSTOP: a long GC pause, a frozen VM), against the real broker.

The worker is stopped, where possible, with a transaction open: its records in the
changelog past the last stable offset, staying there (`stop_in_transaction`). Its
successor then has to deal with that transaction: a restart with the same data dir
fences it at once (the kafka engine's `transactional.id` is the data dir's); a
worker that takes the partitions over from a stalled one fences it by partition
(the Faust engine: `<app>-faust-<partition>`) or waits for it to be decided (the
kafka engine: the restore reads to the end read uncommitted, and the stalled
worker's offsets carry a stale generation, KIP-447). Either way the windows topic
must hold the core's windows, each with one content and no record twice, and no
changelog position may go back."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from processor.changelog import Position, changelog_topic, position_key
from processor.transactions import FENCED_EXIT_CODE
from processor.windows import Config
from tests.kafkakit import by_identity, core_windows, produce, read_all
from tests.processor.workerkit import (
    GRACE_MS,
    RW_S,
    SESSION_TIMEOUT_MS,
    Feeder,
    Topics,
    Worker,
    assert_same_windows_as_the_core,
    identities,
    killed_on_exit,
    new_app_id,
    new_topics,
    scenario_records,
    worker_env,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.alone]

INPUTS = 48
BATCHES = [range(n, n + 2) for n in range(0, INPUTS, 2)]  # over 12 s or more
TRIES = {"kafka": 100, "faust": 20}


def more_records() -> list[tuple[bytes, bytes]]:
    """Inputs past the feeder's, for the successor (however long the catch took)."""
    return scenario_records(range(INPUTS, INPUTS + 4), int(time.time() * 1000))


def undecided(bootstrap: str, topic: str) -> dict[int, int]:
    """The partitions of `topic` whose last stable offset is below their end (a
    transaction open, or decided and not marked yet), with that offset."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions

    def ends(level: IsolationLevel) -> dict[int, int]:
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        futures = admin.list_offsets(
            {TopicPartition(topic, p): latest for p in partitions}, isolation_level=level
        )
        return {tp.partition: int(f.result(30).offset) for tp, f in futures.items()}

    stable, end = ends(IsolationLevel.READ_COMMITTED), ends(IsolationLevel.READ_UNCOMMITTED)
    return {p: offset for p, offset in stable.items() if offset < end[p]}


def stop_in_transaction(worker: Worker, bootstrap: str, changelog: str, tries: int) -> list[int]:
    """SIGSTOP `worker`, at a moment it holds a transaction open with its records in
    the changelog if one of `tries` attempts catches it; returns those changelog
    partitions (none if no attempt did: it is left stopped all the same). Held means:
    below the end and not moving for a second while the worker is stopped (another
    worker's transactions take milliseconds). An attempt that finds no partition
    below its end is over at once: most are, as a transaction is open for a small
    part of each batch."""
    for attempt in range(1, tries + 1):
        worker.proc.send_signal(signal.SIGSTOP)
        held = []
        if before := undecided(bootstrap, changelog):
            time.sleep(1.0)
            now = undecided(bootstrap, changelog)
            held = sorted(p for p, s in now.items() if before.get(p) == s)
        if held or attempt == tries:
            print(f"stopped with a transaction open on {held} at attempt {attempt}")
            return held
        worker.proc.send_signal(signal.SIGCONT)
        time.sleep(random.uniform(0.05, 0.5))
    raise AssertionError("no attempt")


def wait_for_the_cores_windows(bootstrap: str, topics: Topics, what: str) -> None:
    """Until the windows topic holds every window the core makes of the events topic.

    Not a fixed count: a worker stopped for seconds writes no ticks meanwhile, so
    an input's disconnect and reconnect can be released together, opening no window.
    """

    def caught_up() -> bool:
        expected = by_identity(core_windows(bootstrap, topics.events, Config(GRACE_MS, RW_S)))
        return identities(bootstrap, topics.windows) == {identity for identity, _ in expected}

    wait_until(caught_up, 90, what)


def window_copies(bootstrap: str, topic: str) -> int:
    """Window records read_committed beyond the first of each (identical: checked apart)."""
    counted = Counter(
        (w["window_id"], w["type"])
        for w in (orjson.loads(r.value or b"") for r in read_all(bootstrap, topic))
    )
    return sum(n - 1 for n in counted.values())


def positions_go_back(bootstrap: str, changelog: str) -> list[str]:
    """Each changelog partition's committed positions must only go forward: one that
    goes back was written by an owner that restored before a write it missed."""
    last: dict[int, int] = {}
    back = []
    for record in read_all(bootstrap, changelog):
        if record.key != position_key(record.partition) or record.value is None:
            continue
        position = Position.decode(record.value).next_offset
        if position < last.get(record.partition, 0):
            back.append(f"partition {record.partition}: {last[record.partition]} -> {position}")
        last[record.partition] = position
    return back


def test_a_kafka_engine_worker_killed_mid_transaction_is_replaced_at_once(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    """SIGKILL with the batch's records in the changelog and windows topics and no
    commit yet, then a new worker at once on the same data dir: its transactional.id
    fences the dead one's and aborts the open transaction, its restore starts from
    the batch before, and that batch is written once."""
    topics = new_topics(make_topics, partitions=3)
    app_id, data_dir = new_app_id(), tmp_path / "data"
    env = worker_env(kafka_bootstrap, topics, app_id, "kafka")
    feeder = Feeder(kafka_bootstrap, topics.events, BATCHES, pause_s=0.5)
    first = Worker(env, data_dir, tmp_path / "first.log")
    with killed_on_exit(first):
        first.wait_for_log("recovery done")
        feeder.start()
        wait_until(lambda: bool(identities(kafka_bootstrap, topics.windows)), 30, "a first window")
        held = stop_in_transaction(first, kafka_bootstrap, changelog_topic(app_id), 100)
        assert held, "never caught the worker with a transaction open"
        first.kill()
    second = Worker(env, data_dir, tmp_path / "second.log")
    with killed_on_exit(second):
        second.wait_for_log("recovery done")
        feeder.join()
        produce(kafka_bootstrap, topics.events, more_records())
        wait_for_the_cores_windows(kafka_bootstrap, topics, "every window after the restart")
        assert second.stop() == 0
    assert_same_windows_as_the_core(kafka_bootstrap, topics, changelog_topic(app_id))
    assert window_copies(kafka_bootstrap, topics.windows) == 0
    assert positions_go_back(kafka_bootstrap, changelog_topic(app_id)) == []
    assert "Traceback" not in second.output


@pytest.mark.parametrize("engine_", ["faust", "kafka"])
def test_a_stalled_worker_cannot_write_once_its_partitions_moved(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
    engine_: str,
) -> None:
    """Two workers; one is stopped (SIGSTOP) while records flow, past its session
    timeout, so the other takes its partitions over; then it resumes (SIGCONT),
    where it was. Nothing it writes after that may commit over the new owner's:
    - Faust engine: the new owner's init_transactions (`<app>-faust-<partition>`)
      fenced its producers and aborted a transaction left open: its next commit
      fails, it says so and exits (FENCED_EXIT_CODE), writing nothing more. Resumed
      between batches, it may learn of the rebalance first: then it only rejoins.
    - kafka engine (stopped with a transaction open): the new owner's restore waits
      for it. The stalled worker's offsets, sent after its records, carry a stale
      generation by then: refused, aborted (or, taken before the stop, committed:
      then the waiting restore includes the batch); it loses its partitions and
      rejoins."""
    topics = new_topics(make_topics, partitions=4)
    app_id = new_app_id()
    changelog = changelog_topic(app_id)
    env = worker_env(kafka_bootstrap, topics, app_id, engine_)
    feeder = Feeder(kafka_bootstrap, topics.events, BATCHES, pause_s=0.5)
    stalled = Worker(env, tmp_path / "stalled", tmp_path / "stalled.log")
    other = Worker(env, tmp_path / "other", tmp_path / "other.log")
    with killed_on_exit(stalled), killed_on_exit(other):
        stalled.wait_for_log("recovery done")
        other.wait_for_log("recovery done")
        feeder.start()
        wait_until(lambda: bool(identities(kafka_bootstrap, topics.windows)), 30, "a first window")
        # A Faust-engine transaction is open for a millisecond or two of each batch
        # (its offsets are not in it): it is caught in some runs only.
        held = stop_in_transaction(stalled, kafka_bootstrap, changelog, TRIES[engine_])
        assert held or engine_ == "faust", "never caught the worker with a transaction open"
        assigned, recovered = (other.output.count(s) for s in ("assigned", "recovery done"))
        wait_until(
            lambda: other.output.count("assigned") > assigned,
            3 * SESSION_TIMEOUT_MS / 1000 + 10,
            "the other worker to take the stalled one's partitions",
        )
        if engine_ == "kafka":
            other.wait_for_log("a transaction still open holds a partition", 30)
        else:
            wait_until(lambda: other.output.count("recovery done") > recovered, 30, "takeover")
        produce(kafka_bootstrap, topics.events, more_records())
        stalled.proc.send_signal(signal.SIGCONT)
        feeder.join()
        wait_for_the_cores_windows(kafka_bootstrap, topics, "every window")
        assert other.stop() == 0
        fenced = stalled.proc.poll() is not None
        assert fenced or stalled.stop() == 0
    print(f"stalled worker {'fenced' if fenced else 'rejoined'}: exit {stalled.proc.returncode}")
    assert_same_windows_as_the_core(kafka_bootstrap, topics, changelog)
    assert window_copies(kafka_bootstrap, topics.windows) == 0
    assert positions_go_back(kafka_bootstrap, changelog) == []
    assert "Traceback" not in stalled.output + other.output
    if engine_ == "kafka":
        assert not fenced
        assert "lost (session timed out)" in stalled.output
    elif held or fenced:  # a Faust worker caught in a transaction must have been fenced
        assert stalled.proc.returncode == FENCED_EXIT_CODE
        line = stalled.output.index(f"transactional.id {app_id}-faust-")
        assert "is fenced" in stalled.output[line:]
        assert "another worker took over" in stalled.output[line:]
        assert "records in" not in stalled.output[line:]  # no batch after it
    else:
        assert "is fenced" not in stalled.output
