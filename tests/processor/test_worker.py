"""`livewindows worker`, either engine, against the real broker: its windows are the core's.

Every test here runs on both engines (the `engine` fixture, tests/processor/
conftest.py, or an explicit parameter): same windows, same crash guarantees. See
tests/processor/workerkit.py for how the tests run workers and what they compare.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from livewindows.kafka.launcher import KafkaCluster, free_ports
from plumbing.topics import ensure_topics
from processor.changelog import (
    CHANGELOG_CONFIG,
    Wal,
    changelog_topic,
    encode_input,
    encode_wal_parts,
    fold,
    input_key,
    wal_key,
)
from processor.codec import decode, encode_window
from processor.windows import Config, PartitionState, WindowRecord, process
from tests.kafkakit import (
    event_value,
    produce,
    read_all,
    window_records,
)
from tests.processor.workerkit import (
    GRACE_MS,
    RECORDS_PER_INPUT,
    RW_S,
    Feeder,
    Topics,
    Worker,
    assert_same_windows_as_the_core,
    dead_letters,
    identities,
    killed_on_exit,
    new_app_id,
    new_topics,
    scenario_records,
    scrape,
    worker_env,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka


def test_worker_writes_the_windows_the_core_computes(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    start_worker: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    topics = new_topics(make_topics, partitions=3)
    inputs = range(12)
    scenario = scenario_records(inputs, int(time.time() * 1000))
    produce(kafka_bootstrap, topics.events, scenario)
    (metrics_port,) = free_ports(1)
    worker = start_worker(
        topics, new_app_id(), tmp_path / "data", {"PROCESSOR_METRICS_PORT": str(metrics_port)}
    )

    wait_until(
        lambda: (
            len(identities(kafka_bootstrap, topics.windows)) == RECORDS_PER_INPUT * len(inputs)
            and len(read_all(kafka_bootstrap, topics.late)) == len(inputs)
        ),
        60,
        "every window closed and every late event published",
    )
    # What the worker did, as Prometheus scrapes it (counted once a batch is stored).
    expected_metrics = {
        ("livewindows_worker_windows_total", "window.opened"): 2 * len(inputs),
        ("livewindows_worker_windows_total", "window.closed"): 2 * len(inputs),
        ("livewindows_worker_late_events_total", ""): len(inputs),
        ("livewindows_worker_duplicate_events_total", ""): 12,
        ("livewindows_worker_dead_letters_total", ""): 0,
    }
    wait_until(
        lambda: scrape(metrics_port, expected_metrics) == expected_metrics,
        30,
        "the metrics to count every window",
    )
    assert scrape(metrics_port, {("livewindows_worker_records_total", ""): 0})[
        ("livewindows_worker_records_total", "")
    ] >= len(scenario)  # and the ticks
    started_stop = time.monotonic()
    assert worker.stop() == 0
    assert time.monotonic() - started_stop < 20  # within its own shutdown deadline

    expected = assert_same_windows_as_the_core(kafka_bootstrap, topics)
    written = window_records(kafka_bootstrap, topics.windows)
    assert len(written) == len(expected), "a clean run writes each window record once"
    by_key: dict[str, list[object]] = defaultdict(list)
    for w in written:
        by_key[f"{w['provider']}:{w['input_id']}"].append(w)
    for key, windows in by_key.items():
        assert windows == [w for w in expected if f"{w['provider']}:{w['input_id']}" == key]
    assert {(w["type"], w["close_reason"]) for w in written} == {
        ("window.opened", None),
        ("window.closed", "reconnected"),
        ("window.closed", "timed_out"),
    }

    late = [orjson.loads(r.value or b"") for r in read_all(kafka_bootstrap, topics.late)]
    assert sorted(str(r["event_id"]) for r in late) == sorted(f"in{n}-x" for n in inputs)
    assert {r["late_reason"] for r in late} == {"older_than_applied"}
    assert read_all(kafka_bootstrap, topics.dlq) == []

    log = worker.output
    assert "assigned partitions [0, 1, 2]" in log and "recovery done" in log
    assert f"windows opened={2 * len(inputs)} closed={2 * len(inputs)}" in log
    assert "duplicates=12" in log
    assert "Traceback" not in log and "DEBUG" not in log


def test_worker_sends_poison_records_to_the_dlq_and_keeps_going(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    start_worker: Callable[[Topics, str, Path], Worker],
    tmp_path: Path,
) -> None:
    topics = new_topics(make_topics, partitions=1)
    now_ms = int(time.time() * 1000)
    poison = [
        (b"cloudflare:in0", b"\x00\xffnot json"),
        (b"cloudflare:in0", b'{"schema": "livewindows/event/v9"}'),
        (b"fastpix:somebody-else", event_value("in0-z", "connected", now_ms, input_id="in0")[1]),
    ]
    good = scenario_records(range(2), now_ms)
    produce(kafka_bootstrap, topics.events, good[:3] + poison + good[3:])
    worker = start_worker(topics, new_app_id(), tmp_path / "data")

    wait_until(
        lambda: len(identities(kafka_bootstrap, topics.windows)) == RECORDS_PER_INPUT * 2,
        60,
        "the windows of the records after the poison ones",
    )
    assert worker.stop() == 0

    assert_same_windows_as_the_core(kafka_bootstrap, topics)
    dead = dead_letters(kafka_bootstrap, topics.dlq)
    assert [(key, value) for key, value, _ in dead] == poison
    source_offsets = [
        e.offset for e in read_all(kafka_bootstrap, topics.events) if (e.key, e.value) in poison
    ]
    for (_, _, headers), source_offset in zip(dead, source_offsets, strict=True):
        assert headers["error_type"] == b"DecodeError"
        assert headers["error"]
        assert headers["source_topic"] == topics.events.encode()
        assert headers["source_partition"] == b"0"
        assert headers["source_offset"] == str(source_offset).encode()
    assert worker.output.count("is not a valid event or tick") == 3


@pytest.mark.alone
def test_worker_killed_mid_stream_resumes_from_its_changelog(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    start_worker: Callable[[Topics, str, Path], Worker],
    tmp_path: Path,
    engine: str,
) -> None:
    topics = new_topics(make_topics, partitions=3)
    app_id, data_dir = new_app_id(), tmp_path / "data"
    batches = [range(n, n + 6) for n in range(0, 42, 6)]
    feeder = Feeder(kafka_bootstrap, topics.events, batches, pause_s=0.8)

    first = start_worker(topics, app_id, data_dir)
    first.wait_for_log("recovery done")
    feeder.start()
    wait_until(lambda: identities(kafka_bootstrap, topics.windows), 30, "a first window")
    first.kill()  # SIGKILL with records in flight
    seen = len(identities(kafka_bootstrap, topics.windows))

    second = start_worker(topics, app_id, data_dir)
    second.wait_for_log("recovery done")  # no engine keeps local state: all from the changelog
    wait_until(
        lambda: len(identities(kafka_bootstrap, topics.windows)) > seen + 8,
        60,
        "progress after the first restart",
    )
    second.kill()
    shutil.rmtree(data_dir)  # a new machine: nothing local at all

    third = start_worker(topics, app_id, data_dir)
    # Restored before it is stopped, even if the second wrote every window already.
    # A kafka-engine worker without its data dir has a new transactional.id, so it
    # cannot fence the second's open transaction: its restore waits for it to time
    # out (60 s) and for the coordinator to abort it.
    third.wait_for_log("recovery done", timeout_s=120)
    feeder.join()
    total = RECORDS_PER_INPUT * sum(len(b) for b in batches)
    wait_until(
        lambda: len(identities(kafka_bootstrap, topics.windows)) == total,
        90,
        "every window after the second restart",
    )
    assert third.stop() == 0

    expected = assert_same_windows_as_the_core(kafka_bootstrap, topics)
    assert len(expected) == total
    # Nothing local was left: the position and watermark came from the changelog.
    assert re.search(r"state restored \(next offset \d+, watermark 20", third.output)
    for worker in (first, second, third):
        assert "Traceback" not in worker.output


def test_worker_redoes_a_batch_a_crash_left_half_stored(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    start_worker: Callable[[Topics, str, Path], Worker],
    tmp_path: Path,
) -> None:
    """The crash no kill hits on purpose: batch [r] wrote its outputs, its WAL and one
    of its inputs' keys, then died before the rest and before its position.

    r raises the watermark enough to release input j's reconnect; the record after
    it is an older "ended" of j. Releasing j at r's watermark, as the core does,
    closes j's window as reconnected and makes the "ended" late. A restart that
    ignored the WAL would restore j before r but r's own input after it, take r
    for a duplicate, and leave j's window open (the worker's ticks lag an hour
    behind these events, so no tick releases it): the late event never comes.
    """
    topics = new_topics(make_topics, partitions=1)
    app_id, data_dir = new_app_id(), tmp_path / "data"
    t = int(time.time() * 1000) + 3_600_000

    def event(input_id: str, suffix: str, kind: str, at: int, received: int) -> tuple[bytes, bytes]:
        return event_value(f"{input_id}-{suffix}", kind, t + at, t + received, input_id=input_id)

    produce(
        kafka_bootstrap,
        topics.events,
        [
            event("j", "a", "connected", 0, 0),
            event("j", "b", "disconnected", 50, 50),
            event("j", "c", "connected", 300, 300),
        ],
    )
    first = start_worker(topics, app_id, data_dir)
    wait_until(lambda: identities(kafka_bootstrap, topics.windows), 60, "j's window opened")
    assert first.stop() == 0

    produce(kafka_bootstrap, topics.events, [event("i", "r", "connected", 600, 600)])
    produce(kafka_bootstrap, topics.events, [event("j", "z", "ended", 250, 310)])
    # The crash, as the shell would have left it: r's outputs acked, then r's WAL,
    # then r's own input's key, nothing else of r (no j, no position).
    state, config = PartitionState(), Config(GRACE_MS, RW_S)
    for record in read_all(kafka_bootstrap, topics.events):
        state, outputs = process(state, decode(record.key, record.value), config)
        if record.key == b"cloudflare:i":
            r, r_outputs = record, outputs
            break
    (closed,) = [o for o in r_outputs if isinstance(o, WindowRecord)]
    produce(kafka_bootstrap, topics.windows, [encode_window(closed)])
    changes = {
        key: encode_input(state.inputs[key], r.offset) for key in ("cloudflare:i", "cloudflare:j")
    }
    # The batch starts where the first worker's stored state ends: at r, or at a tick
    # the worker wrote to the topic before r but had not processed when it stopped.
    stored = fold(0, ((c.key, c.value) for c in read_all(kafka_bootstrap, changelog_topic(app_id))))
    assert stored.position is not None and stored.position.next_offset <= r.offset
    first_offset = stored.position.next_offset
    (wal,) = encode_wal_parts(Wal(first_offset, r.offset + 1, state.watermark_ms, changes))
    produce(
        kafka_bootstrap,
        changelog_topic(app_id),
        [(wal_key(0, 0), wal), (input_key(0, "cloudflare:i"), changes["cloudflare:i"])],
    )

    second = start_worker(topics, app_id, data_dir)
    wait_until(
        lambda: (
            len(identities(kafka_bootstrap, topics.windows)) == 2
            and len(read_all(kafka_bootstrap, topics.late)) == 1
        ),
        60,
        "j's window closed and j's late event",
    )
    assert second.stop() == 0

    expected = assert_same_windows_as_the_core(kafka_bootstrap, topics)
    assert [w["close_reason"] for w in expected] == [None, "reconnected"]
    assert "redid the write-ahead record an earlier version left (3 writes)" in second.output


def test_two_workers_in_one_group_write_what_one_would(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    start_worker: Callable[[Topics, str, Path], Worker],
    tmp_path: Path,
) -> None:
    topics = new_topics(make_topics, partitions=4)
    app_id = new_app_id()
    first = start_worker(topics, app_id, tmp_path / "one")
    produce(kafka_bootstrap, topics.events, scenario_records(range(0, 12), int(time.time() * 1000)))
    wait_until(lambda: identities(kafka_bootstrap, topics.windows), 60, "a first window")

    second = start_worker(topics, app_id, tmp_path / "two")
    second.wait_for_log("recovery done; processing partitions [")
    produce(
        kafka_bootstrap, topics.events, scenario_records(range(12, 24), int(time.time() * 1000))
    )
    wait_until(
        lambda: len(identities(kafka_bootstrap, topics.windows)) == RECORDS_PER_INPUT * 24,
        60,
        "every window of both batches",
    )
    assert second.stop() == 0
    assert first.stop() == 0

    expected = assert_same_windows_as_the_core(kafka_bootstrap, topics)
    assert len(expected) == RECORDS_PER_INPUT * 24
    assert re.search(r"recovery done; processing partitions \[\d", second.output)
    assert "state restored" in first.output and "state restored" in second.output


@pytest.mark.timeout(240)
@pytest.mark.alone
@pytest.mark.parametrize("engine_", ["kafka", "faust"])
def test_worker_stops_on_sigterm_while_kafka_is_down(tmp_path: Path, engine_: str) -> None:
    """An outage must not make a worker unstoppable: the batch it cannot commit is left
    uncommitted (it runs again after a restart) and the process exits. Nor may it
    flood its log: the Kafka clients retry in a tight loop, each retry logged."""
    ports = free_ports(2)
    with KafkaCluster(ports[:1], controller_ports=ports[1:]) as cluster:
        bootstrap = cluster.bootstrap
        names = [f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("events", "windows", "late", "dlq")]
        ensure_topics(bootstrap, names, 1, 1)
        topics = Topics(*names)
        produce(bootstrap, topics.events, scenario_records(range(3), int(time.time() * 1000)))
        env = worker_env(bootstrap, topics, new_app_id(), engine_)
        worker = Worker(env, tmp_path / "data", tmp_path / "worker.log")
        with killed_on_exit(worker):
            wait_until(lambda: identities(bootstrap, topics.windows), 60, "a first window")
            cluster.stop_node(0)
            time.sleep(5)  # the worker keeps ticking and committing into the outage
            began = time.monotonic()
            assert worker.stop(timeout_s=60) == 0
            assert time.monotonic() - began < 45
            assert "Traceback" not in worker.output
            assert worker.log_path.stat().st_size < 200_000  # 89 MB a minute unfiltered


def test_worker_reports_an_unreachable_kafka_in_one_line(tmp_path: Path) -> None:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "livewindows.cli", "worker", "--data-dir", str(tmp_path)],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("livewindows worker: cannot reach Kafka at 127.0.0.1:1")
    assert len(done.stderr.strip().splitlines()) == 1
    assert time.monotonic() - began < 30


def test_worker_names_missing_topics_and_a_busy_data_dir(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]], tmp_path: Path
) -> None:
    def run(events_topic: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "livewindows.cli", "worker", "--data-dir", str(tmp_path)],
            env={
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "EVENTS_TOPIC": events_topic,
                "WINDOWS_TOPIC": events_topic,
                "LATE_TOPIC": events_topic,
                "DLQ_TOPIC": events_topic,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = run("no-such-topic-" + uuid.uuid4().hex)
    assert done.returncode == 2
    assert "missing topic(s) no-such-topic-" in done.stderr and "Traceback" not in done.stderr

    (topic,) = make_topics("events")
    from processor.datadir import open_data_dir

    open_data_dir(tmp_path)  # held by this process until it exits
    done = run(topic)
    assert done.returncode == 2
    assert "is in use by another worker" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("engine_", ["kafka", "faust"])
@pytest.mark.parametrize("earlier", [False, True], ids=["new", "earlier"])
def test_a_workers_changelog_is_compacted_in_small_segments(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
    engine_: str,
    earlier: bool,
) -> None:
    """State is restored from the changelog on every start: its segments must be small
    enough for compaction to keep it near the state's size (closed segments only),
    whichever engine created it, and one an earlier version created with the
    broker's 1 GiB segments gets the small ones."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    topics = new_topics(make_topics, partitions=1)
    app_id = new_app_id()
    changelog = changelog_topic(app_id)
    if earlier:
        ensure_topics(kafka_bootstrap, [changelog], 1, 1, {"cleanup.policy": "compact"})
    worker = Worker(
        worker_env(kafka_bootstrap, topics, app_id, engine_),
        tmp_path / "data",
        tmp_path / "worker.log",
    )
    try:
        worker.wait_for_log("recovery done")
    finally:
        worker.stop()
    resource = ConfigResource(ResourceType.TOPIC, changelog)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    configs = admin.describe_configs([resource])[resource].result(30)
    assert {name: configs[name].value for name in CHANGELOG_CONFIG} == CHANGELOG_CONFIG
    assert int(CHANGELOG_CONFIG["segment.bytes"]) <= 128 * 1024 * 1024
    assert ("set segment.bytes=" in worker.output) == earlier


def test_an_earlier_changelog_gets_small_segments_and_an_operators_setting_stays(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Changelogs created before CHANGELOG_CONFIG had the broker's 1 GiB segments,
    which compaction never reaches: a start gives them the small ones, but leaves a
    setting someone made on the topic itself, and one not created yet to its creator."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    from plumbing.topics import adopt_topic_config

    def adopt_changelog_config(bootstrap: str, topic: str) -> dict[str, str]:
        return adopt_topic_config(bootstrap, topic, CHANGELOG_CONFIG)

    earlier, tuned = f"changelog-{uuid.uuid4().hex[:12]}", f"changelog-{uuid.uuid4().hex[:12]}"
    ensure_topics(kafka_bootstrap, [earlier], 1, 1, {"cleanup.policy": "compact"})
    mine = {"cleanup.policy": "compact", "segment.bytes": str(512 * 1024 * 1024)}
    ensure_topics(kafka_bootstrap, [tuned], 1, 1, mine)

    assert adopt_changelog_config(kafka_bootstrap, earlier) == {
        "segment.bytes": CHANGELOG_CONFIG["segment.bytes"],
        "segment.ms": CHANGELOG_CONFIG["segment.ms"],
    }
    assert adopt_changelog_config(kafka_bootstrap, tuned) == {
        "segment.ms": CHANGELOG_CONFIG["segment.ms"]
    }
    assert adopt_changelog_config(kafka_bootstrap, earlier) == {}  # now the topic's own
    with caplog.at_level("WARNING"):
        assert adopt_changelog_config(kafka_bootstrap, f"changelog-{uuid.uuid4().hex[:12]}") == {}
    assert not caplog.records

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for topic, segment_bytes in (
        (earlier, CHANGELOG_CONFIG["segment.bytes"]),
        (tuned, mine["segment.bytes"]),
    ):
        resource = ConfigResource(ResourceType.TOPIC, topic)
        configs = admin.describe_configs([resource])[resource].result(30)
        assert configs["segment.bytes"].value == segment_bytes
        assert configs["segment.ms"].value == CHANGELOG_CONFIG["segment.ms"]
