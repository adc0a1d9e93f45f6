"""`livewindows replay` against the real broker: same core, same windows, every time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from livewindows.kafka.launcher import KafkaCluster
from plumbing.settings import Settings
from plumbing.topics import ensure_topics
from processor.replay import StartAt, run_replay
from processor.replay_jobs import run_jobs, split_partitions
from processor.replay_loop import (
    ReplayFailed,
    ReplaySummary,
    assign_ranges,
    consumer_config,
    producer_config,
    records_left,
    replay_partitions,
)
from processor.windows import Config
from tests.kafkakit import (
    by_identity,
    core_windows,
    event_value,
    port_with_controller_port,
    produce,
    read_all,
    tick_value,
    window_records,
)

pytestmark = pytest.mark.kafka

T0 = 1_790_000_000_000
GRACE_MS = 500
RW_S = 2


def _history() -> list[tuple[bytes, bytes]]:
    """Twelve inputs, each with a reconnect, a time-out and a late event, plus ticks."""
    records: list[tuple[bytes, bytes]] = []
    for n in range(12):
        base = T0 + n * 10
        name = f"in{n}"
        records += [
            event_value(f"{name}-a", "connected", base, input_id=name),
            event_value(f"{name}-b", "disconnected", base + 1000, input_id=name),
            event_value(f"{name}-b", "disconnected", base + 1000, base + 1100, input_id=name),
            event_value(f"{name}-c", "connected", base + 1500, base + 1400, input_id=name),
            event_value(f"{name}-d", "errored", base + 3000, input_id=name),
        ]
    records.append(tick_value(T0 + 3600))
    for n in range(12):
        name = f"in{n}"
        records.append(event_value(f"{name}-x", "other", T0 + 100, T0 + 3700, input_id=name))
    records.append(tick_value(T0 + 20_000))
    return records


def _settings(bootstrap: str, events_topic: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        events_topic=events_topic,
        window_grace_ms=GRACE_MS,
        reconnect_window_s=RW_S,
        topic_partitions=3,
    )


def test_replay_from_the_beginning_equals_the_core_and_itself(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    events, first, second = make_topics("events", "replay-a", "replay-b", partitions=3)
    produce(kafka_bootstrap, events, _history())
    settings = _settings(kafka_bootstrap, events)

    summary = run_replay(settings, StartAt(), first)
    run_replay(settings, StartAt(), second)

    expected = core_windows(kafka_bootstrap, events, Config(GRACE_MS, RW_S))
    assert len(expected) == 12 * 4  # two windows per input, opened and closed
    assert by_identity(window_records(kafka_bootstrap, first)) == by_identity(expected)
    assert window_records(kafka_bootstrap, second) and sorted(
        map(str, window_records(kafka_bootstrap, second))
    ) == sorted(map(str, window_records(kafka_bootstrap, first)))
    assert (summary.windows, summary.late, summary.duplicates) == (48, 12, 12)


def test_replay_from_an_offset_starts_with_empty_state(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    events, output = make_topics("events", "replay", partitions=1)
    produce(
        kafka_bootstrap,
        events,
        [
            event_value("b", "disconnected", T0),
            event_value("c", "connected", T0 + 300),
            event_value("d", "disconnected", T0 + 600),
            tick_value(T0 + 10_000),
        ],
    )
    run_replay(_settings(kafka_bootstrap, events), StartAt(offset=1), output)
    windows = window_records(kafka_bootstrap, output)
    # The window opened by "b" before offset 1 is unknown: only "d"'s window exists.
    assert {(w["type"], w["opening_event_id"]) for w in windows} == {
        ("window.opened", "d"),
        ("window.closed", "d"),
    }


def test_replay_from_a_timestamp_after_the_end_writes_nothing(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    events, output = make_topics("events", "replay", partitions=2)
    produce(kafka_bootstrap, events, _history())
    summary = run_replay(_settings(kafka_bootstrap, events), StartAt(timestamp_ms=2**62), output)
    assert summary.records == 0
    assert window_records(kafka_bootstrap, output) == []


def _by_key(bootstrap: str, topic: str) -> dict[bytes | None, list[bytes | None]]:
    """Each output key's record values, in offset order (a key is in one partition)."""
    records: dict[bytes | None, list[bytes | None]] = defaultdict(list)
    for record in read_all(bootstrap, topic):
        records[record.key].append(record.value)
    return dict(records)


@pytest.mark.timeout(180)
def test_parallel_replay_equals_the_one_process_replay_per_key(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    events, alone, parallel = make_topics("events", "replay-1", "replay-2", partitions=5)
    history = _history()
    # More inputs than partitions, several windows per key: order within a key matters.
    for n in range(12, 40):
        base = T0 + 30_000 + n * 10
        name = f"in{n}"
        for step in range(4):
            history.append(
                event_value(f"{name}-{step}", "disconnected", base + step * 600, input_id=name)
            )
            history.append(
                event_value(f"{name}-{step}c", "connected", base + step * 600 + 300, input_id=name)
            )
    history.append(tick_value(T0 + 60_000))
    produce(kafka_bootstrap, events, history)
    settings = _settings(kafka_bootstrap, events)

    one = run_replay(settings, StartAt(), alone, jobs=1)
    two = run_replay(settings, StartAt(), parallel, jobs=2)

    assert (one.jobs, two.jobs) == (1, 2)
    counts = ("records", "windows", "late", "duplicates", "undecodable")
    assert [getattr(two, c) for c in counts] == [getattr(one, c) for c in counts]
    assert two.partitions == one.partitions
    expected = _by_key(kafka_bootstrap, alone)
    assert len(expected) == 40 and sum(map(len, expected.values())) == one.windows
    assert _by_key(kafka_bootstrap, parallel) == expected


@pytest.mark.timeout(120)
def test_a_failing_job_fails_the_replay_with_one_line(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    (events,) = make_topics("events", partitions=2)
    produce(kafka_bootstrap, events, _history())
    settings = _settings(kafka_bootstrap, events)
    ends = {p: high for p, (_low, high) in _watermarks(kafka_bootstrap, events).items()}
    # The broker refuses this topic name: each job fails on its first window record.
    with pytest.raises(ReplayFailed) as failed:
        run_jobs(
            settings,
            "not a topic",
            {p: (0, end) for p, end in ends.items()},
            ReplaySummary(jobs=2),
            None,
        )
    message = str(failed.value)
    # librdkafka reports the refusal as the broker's "Invalid topic" or, when its
    # metadata for the name came back empty first, as its own "Unknown topic".
    assert "failed: Kafka error:" in message
    assert "Invalid topic" in message or "Unknown topic" in message
    assert "\n" not in message


@pytest.mark.timeout(120)
def test_progress_counts_what_is_left_from_the_start_offsets_down_to_zero(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    """The progress line's "left" figure: before the first fetch it is the planned
    records (from each range's start, not the partition's), and at every report
    after it the records replayed so far plus those left are the planned total."""
    events, output = make_topics("events", "replay-out", partitions=2)
    produce(
        kafka_bootstrap,
        events,
        [
            event_value(f"in{n % 500}-{n}", "connected", T0 + n, input_id=f"in{n % 500}")
            for n in range(20_000)
        ],
    )
    ends = {p: high for p, (_low, high) in _watermarks(kafka_bootstrap, events).items()}
    ranges = {0: (100, ends[0]), 1: (0, ends[1])}
    planned = ends[0] - 100 + ends[1]
    consumer = Consumer(consumer_config(kafka_bootstrap))
    producer = Producer(producer_config(kafka_bootstrap))
    reports: list[tuple[int, int]] = []

    def report(summary: ReplaySummary, consumer: Consumer, ends: dict[int, int]) -> None:
        reports.append((summary.records, records_left(consumer, ends, ranges)))

    try:
        assign_ranges(consumer, events, ranges)
        assert records_left(consumer, dict(ends), ranges) == planned
        summary = ReplaySummary()
        replay_partitions(
            consumer,
            producer,
            output,
            dict(ends),
            Config(GRACE_MS, RW_S),
            summary,
            report=report,
            report_every_s=0.0,
        )
    finally:
        consumer.close()
    assert summary.records == planned
    assert len([left for _done, left in reports if left > 0]) >= 2, reports  # mid-replay
    assert all(done + left == planned for done, left in reports), reports
    assert records_left(consumer, {}, ranges) == 0  # every partition done


def _watermarks(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-replay"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in partitions
        }
    finally:
        consumer.close()


def test_partitions_are_split_into_balanced_groups() -> None:
    ranges = {0: (0, 100), 1: (0, 10), 2: (50, 100), 3: (0, 90), 4: (0, 5)}
    groups = split_partitions(ranges, 2)
    # Largest first, to the lighter group: {0, 1, 4} (115 offsets), {2, 3} (140).
    assert groups == [((0, 0, 100), (1, 0, 10), (4, 0, 5)), ((2, 50, 100), (3, 0, 90))]
    assert split_partitions(ranges, 1) == [tuple((p, *r) for p, r in sorted(ranges.items()))]
    assert len(split_partitions({0: (0, 1)}, 3)) == 1


def _cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.run(
        [sys.executable, "-m", "livewindows.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_replay_command_reports_what_it_did(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    events, output = make_topics("events", "replay", partitions=3)
    produce(kafka_bootstrap, events, _history())
    env_topics = ["--from-beginning", "--output-topic", output]
    done = subprocess.run(
        [sys.executable, "-m", "livewindows.cli", "replay", *env_topics],
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "EVENTS_TOPIC": events,
            "WINDOW_GRACE_MS": str(GRACE_MS),
            "RECONNECT_WINDOW_S": str(RW_S),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "48 window records written to" in done.stderr
    assert "12 late, 12 duplicates" in done.stderr


def test_replay_refuses_to_write_into_the_events_topic(kafka_bootstrap: str) -> None:
    done = _cli(
        kafka_bootstrap, "replay", "--from-beginning", "--output-topic", "video.live-input-events"
    )
    assert done.returncode == 2
    assert "is an input or side topic" in done.stderr
    assert "Traceback" not in done.stderr


def test_replay_of_a_missing_events_topic_is_a_clear_error(kafka_bootstrap: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "livewindows.cli",
            "replay",
            "--from-beginning",
            "--output-topic",
            "whatever-out",
        ],
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "EVENTS_TOPIC": "no-such-topic-here",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_replay_refuses_to_write_into_the_live_windows_topic() -> None:
    # Billing reads it; checked before Kafka is asked anything (none listens on :1).
    for start in (["--from-beginning"], ["--from-offset", "5"]):
        done = _cli("127.0.0.1:1", "replay", *start, "--output-topic", "video.disconnect-windows")
        assert done.returncode == 2, done.stderr
        assert "is the live windows topic" in done.stderr and "Traceback" not in done.stderr


def test_replay_without_kafka_says_so_in_one_line() -> None:
    done = _cli("127.0.0.1:1", "replay", "--from-beginning", "--output-topic", "x")
    assert done.returncode == 1
    assert done.stderr == "livewindows replay: cannot reach Kafka at 127.0.0.1:1 within 5 s\n"


def test_replay_needs_at_least_one_job() -> None:
    done = _cli("127.0.0.1:1", "replay", "--from-beginning", "--output-topic", "x", "--jobs", "0")
    assert done.returncode == 2 and "--jobs must be >= 1" in done.stderr
    assert "Traceback" not in done.stderr


def test_replay_needs_exactly_one_starting_point() -> None:
    done = _cli("127.0.0.1:1", "replay", "--output-topic", "x")
    assert done.returncode == 2 and "one of the arguments" in done.stderr
    done = _cli("127.0.0.1:1", "replay", "--from-timestamp", "soon", "--output-topic", "x")
    assert done.returncode == 2 and "neither RFC 3339 nor epoch" in done.stderr
    done = _cli("127.0.0.1:1", "replay", "--from-timestamp", "9" * 20, "--output-topic", "x")
    assert done.returncode == 2 and "past any Kafka timestamp" in done.stderr


def test_a_replay_from_the_beginning_says_when_records_were_deleted(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    # Retention took the first records: the replay cannot reproduce the live windows,
    # and must say so rather than report a clean "done".
    events, output = make_topics("events", "replay", partitions=1)
    produce(kafka_bootstrap, events, _history())
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    deleted = admin.delete_records([TopicPartition(events, 0, 7)])
    deleted[TopicPartition(events, 0, 7)].result(30)
    done = subprocess.run(
        [sys.executable, "-m", "livewindows.cli", "replay", "--from-beginning",
         "--output-topic", output],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "EVENTS_TOPIC": events},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "WARNING: partition 0 begins at offset 7: offsets 0-6 were deleted" in done.stderr


def test_a_replay_whose_kafka_goes_away_fails_instead_of_hanging(
    make_topics: Callable[..., list[str]], tmp_path: Path
) -> None:
    [port] = [port_with_controller_port()]
    cluster = KafkaCluster([port], data_dir=tmp_path / "kafka")
    cluster.start()
    bootstrap = f"127.0.0.1:{port}"
    try:
        ensure_topics(bootstrap, ["events"], 1, 1)
        produce(bootstrap, "events", _history())
        consumer = Consumer(consumer_config(bootstrap))
        producer = Producer(producer_config(bootstrap))
        assign_ranges(consumer, "events", {0: (0, len(_history()))})
    finally:
        cluster.stop()  # before a single record was fetched
    summary = ReplaySummary()
    with pytest.raises(ReplayFailed, match="no record for 2 s"):
        replay_partitions(
            consumer, producer, "out", {0: len(_history())}, Config(GRACE_MS, RW_S), summary,
            stall_s=2.0,
        )  # fmt: skip


def test_a_replay_into_a_topic_that_holds_records_says_it_appends(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    events, output = make_topics("events", "replay", partitions=2)
    produce(kafka_bootstrap, events, _history())
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "EVENTS_TOPIC": events}
    command = [sys.executable, "-m", "livewindows.cli", "replay", "--from-beginning"]
    command += ["--output-topic", output, "--jobs", "1"]
    first, second = (
        subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
        for _ in range(2)
    )
    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    assert "already holds" not in first.stderr
    written = re.search(r"([\d,]+) window records written", first.stderr)
    assert written is not None
    assert f"WARNING: the output topic already holds {written[1]} records" in second.stderr
