"""The kafka engine's own mechanisms: aborted transactions, and a group it cannot join."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from livewindows.kafka.launcher import free_ports
from tests.kafkakit import (
    produce,
    read_all,
)
from tests.processor.workerkit import (
    SESSION_TIMEOUT_MS,
    Worker,
    assert_same_windows_as_the_core,
    killed_on_exit,
    log_time,
    new_app_id,
    new_topics,
    scenario_records,
    scrape,
    set_topic_config,
    wait_for_windows,
    worker_env,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka


def test_kafka_engine_aborts_a_refused_batch_and_writes_it_exactly_once_later(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    """A batch whose transaction Kafka refuses (here the windows topic takes no record:
    its max.message.bytes is below any batch of window records, though above the
    transaction markers) is aborted, the worker rewinds to its stored state and
    retries with a growing pause; once Kafka takes the batch, every window is visible
    exactly once, and no aborted record ever is."""
    topics = new_topics(make_topics, partitions=2)
    set_topic_config(kafka_bootstrap, topics.windows, "max.message.bytes", "200")
    (metrics_port,) = free_ports(1)
    worker = Worker(
        {
            **worker_env(kafka_bootstrap, topics, new_app_id(), "kafka"),
            "PROCESSOR_METRICS_PORT": str(metrics_port),
        },
        tmp_path / "data",
        tmp_path / "worker.log",
    )
    with killed_on_exit(worker):
        produce(kafka_bootstrap, topics.events, scenario_records(range(6), int(time.time() * 1000)))
        wait_until(
            lambda: len(re.findall(r"transaction aborted .* retrying in", worker.output)) >= 2,
            90,
            "two aborted attempts",
        )
        assert not read_all(kafka_bootstrap, topics.windows)
        # Aborts count as they happen (each once the abort is done, a moment after its
        # log line); what the aborted batches did never counts.
        aborted = ("livewindows_worker_transactions_aborted_total", "")
        opened = ("livewindows_worker_windows_total", "window.opened")
        scraped: dict[tuple[str, str], int] = {}

        def two_aborts_counted() -> bool:
            scraped.update(scrape(metrics_port, {aborted: 0, opened: 0}))
            return scraped[aborted] >= 2

        wait_until(two_aborts_counted, 30, "two aborts in the metrics")
        assert scraped[opened] == 0
        pauses = [float(s) for s in re.findall(r"retrying in ([\d.]+) s", worker.output)]
        assert pauses[1] > pauses[0], pauses  # growing: a lasting refusal is not hammered

        set_topic_config(kafka_bootstrap, topics.windows, "max.message.bytes", "1048588")
        wait_for_windows(kafka_bootstrap, topics, 6, "every window once Kafka takes them")
        assert worker.stop() == 0
    expected = assert_same_windows_as_the_core(kafka_bootstrap, topics)
    assert len(read_all(kafka_bootstrap, topics.windows)) == len(expected)  # no copies
    # Each abort follows librdkafka's report of the failed transaction within
    # seconds (the two are logged from different threads, in either order), where a
    # commit waiting out its whole timeout took 30 s to notice one. The bound leaves
    # room for a report held back as a repeat (plumbing/logs.py, 10 s).
    lines = worker.output.splitlines()
    failed = [log_time(line) for line in lines if "TXNERR" in line]
    for line in lines:
        if "transaction aborted" in line:
            aborted = log_time(line)
            reported = [at for at in failed if at <= aborted + 1]
            assert reported and aborted - max(reported) < 15, line


def test_a_kafka_engine_worker_refused_by_the_group_stops_in_one_line(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    """The kafka engine's side of the same race: a member with another protocol holds
    the group when the worker joins (here a consumer with the "cooperative-sticky"
    assignor, which the check before start does not take for Faust, so the join is
    refused), and librdkafka would retry the join forever: exit 2 in one line."""
    from confluent_kafka import Consumer

    topics = new_topics(make_topics, partitions=1)
    app_id = new_app_id()
    rival = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": app_id,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )
    try:
        rival.subscribe([topics.events])
        wait_until(lambda: bool(rival.poll(0.2) or rival.assignment()), 30, "the rival's join")
        worker = Worker(
            worker_env(kafka_bootstrap, topics, app_id, "kafka"),
            tmp_path / "a",
            tmp_path / "a.log",
        )
        with killed_on_exit(worker):
            deadline = time.monotonic() + 2 * SESSION_TIMEOUT_MS / 1000 + 5 + 45
            while worker.proc.poll() is None and time.monotonic() < deadline:
                rival.poll(0.2)  # stays in the group
            assert worker.proc.wait(5) == 2, worker.output
    finally:
        rival.close()
    # The line names who holds the group, asked at that moment: not a Faust worker.
    assert "held by consumers with assignor 'cooperative-sticky'" in worker.output
    assert "the kafka engine cannot join them" in worker.output
    assert "Inconsistent group protocol" in worker.output  # the join was tried, and refused
    assert "Traceback" not in worker.output
