"""`livewindows explain` against the real broker: the worker's windows, the producer's partition."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from livewindows.cli import main
from plumbing.partitioner import key_partition
from plumbing.settings import Settings
from processor import explain_command
from processor.explain_command import read_timeline
from producer.publisher import producer_config
from schemas.timestamps import parse_ms
from tests.kafkakit import event_value, read_all, tick_value, window_records
from tests.processor.workerkit import (
    GRACE_MS,
    RW_S,
    Topics,
    Worker,
    scenario_records,
    worker_env,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

INPUTS = 12
PARTITIONS = 3


def _publish(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Write events with the producer's own configuration, so with its partitioner."""
    producer = Producer(producer_config(bootstrap, 10_000))
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def _key(n: int) -> str:
    return f"{('cloudflare', 'fastpix', 'gjirafa')[n % 3]}:in{n}"


def _settings(bootstrap: str, events: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        events_topic=events,
        window_grace_ms=GRACE_MS,
        reconnect_window_s=RW_S,
    )


def test_explain_shows_the_windows_the_worker_wrote_for_each_input(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]], tmp_path: Path
) -> None:
    topics = Topics(*make_topics("events", "windows", "late", "dlq", partitions=PARTITIONS))
    _publish(
        kafka_bootstrap, topics.events, scenario_records(range(INPUTS), int(time.time() * 1000))
    )
    env = worker_env(kafka_bootstrap, topics, f"test-explain-{uuid.uuid4().hex[:12]}", "kafka")
    worker = Worker(env, tmp_path / "data", tmp_path / "worker.log")
    try:
        wait_until(
            lambda: (
                len(window_records(kafka_bootstrap, topics.windows)) == 4 * INPUTS
                and len(read_all(kafka_bootstrap, topics.late)) == INPUTS
            ),
            90,
            "every window closed and every late event published",
        )
        assert worker.stop() == 0
    finally:
        if worker.proc.poll() is None:
            worker.kill()
        print(worker.output)

    # The broker holds each key where the partitioner says, and partitions are shared.
    held = {r.key: r.partition for r in read_all(kafka_bootstrap, topics.events) if r.key}
    for n in range(INPUTS):
        assert held[_key(n).encode()] == key_partition(_key(n).encode(), PARTITIONS)
    assert len({p for k, p in held.items() if k != b"__tick__"}) < INPUTS

    written: dict[str, list[object]] = {}
    for window in window_records(kafka_bootstrap, topics.windows):
        written.setdefault(f"{window['provider']}:{window['input_id']}", []).append(window)
    late = {
        orjson.loads(r.value or b"")["event_id"] for r in read_all(kafka_bootstrap, topics.late)
    }
    settings = _settings(kafka_bootstrap, topics.events)
    for n in range(INPUTS):
        timeline = read_timeline(settings, _key(n), None)
        assert [w.record for w in timeline.windows] == written[_key(n)], _key(n)
        assert [(e.event_id, e.outcome) for e in timeline.events] == [
            (f"in{n}-a", "applied"),
            (f"in{n}-b", "applied"),
            (f"in{n}-b", "duplicate"),
            (f"in{n}-c", "applied"),
            (f"in{n}-d", "applied"),
            (f"in{n}-x", "late"),
        ]
        assert f"in{n}-x" in late
        assert timeline.other_records > 0  # the ticks and the partition's other inputs

    # The command itself, as an operator runs it: stdout is the JSON, and only it.
    done = subprocess.run(
        [sys.executable, "-m", "livewindows.cli", "explain", _key(4), "--format", "json"],
        env=env,  # the worker's: same topics, grace and reconnect window
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    shown = orjson.loads(done.stdout)
    assert shown["partition"] == key_partition(_key(4).encode(), PARTITIONS)
    assert [w["record"] for w in shown["windows"]] == written[_key(4)]
    assert [w["rule"].split(" ")[0] for w in shown["windows"]] == [
        "opened",
        "reconnected",
        "opened",
        "timed",
    ]


def test_explain_from_a_timestamp_starts_there_and_says_so(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    (events,) = make_topics("events", partitions=1)
    t0 = 1_790_000_000_000
    records = [
        event_value("a", "disconnected", t0),
        event_value("b", "connected", t0 + 300),
        event_value("c", "disconnected", t0 + 600),
        tick_value(t0 + 10_000),
    ]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for key, value in records:
        at = parse_ms(orjson.loads(value)["received_at"])
        producer.produce(events, value, key, timestamp=at)
    assert producer.flush(30) == 0
    settings = _settings(kafka_bootstrap, events)

    timeline = read_timeline(settings, "cloudflare:in1", t0 + 300)
    assert timeline.start_offset == 1
    assert timeline.state_unknown == "read from 2026-09-21T14:13:20.300Z (offset 1)"
    assert [(e.event_id, e.outcome) for e in timeline.events] == [
        ("b", "applied"),
        ("c", "applied"),
    ]
    assert [w.record["opening_event_id"] for w in timeline.windows] == ["c", "c"]


def test_explain_refuses_what_it_cannot_explain_in_one_line(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (events,) = make_topics("events", partitions=2)
    _publish(kafka_bootstrap, events, [event_value("a", "connected", 1_790_000_000_000)])
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("EVENTS_TOPIC", events)

    def run(*argv: str) -> tuple[int, str]:
        code = main(["explain", *argv])
        captured = capsys.readouterr()
        assert captured.out == ""
        assert len(captured.err.splitlines()) == 1, captured.err
        return code, captured.err.strip()

    absent = key_partition(b"cloudflare:nobody", 2)
    if absent == key_partition(b"cloudflare:in1", 2):
        where = f"in partition {absent} of {events} (offsets 0-0)"
    else:
        where = f": partition {absent} of {events} has no records there"
    assert run("cloudflare:nobody") == (
        1,
        f"livewindows explain: no events of cloudflare:nobody {where}".replace(" :", ":"),
    )
    code, error = run("cloudflare:in1", "--from-timestamp", "2100-01-01T00:00:00Z")
    assert code == 1 and "no events of cloudflare:in1 at or after 2100-01-01T00:00:00.000Z" in error
    assert run("nocolon") == (
        2,
        "livewindows: 'nocolon' is not <provider>:<input_id>, e.g. cloudflare:abc123",
    )
    assert run("mux:x") == (
        2,
        "livewindows: unknown provider 'mux' (one of cloudflare, fastpix, gjirafa)",
    )
    assert run("cloudflare:in1", "--from-timestamp", "yesterday")[0] == 2
    monkeypatch.setenv("EVENTS_TOPIC", "no-such-" + uuid.uuid4().hex)
    code, error = run("cloudflare:in1")
    assert code == 1 and error.endswith("does not exist (run 'livewindows topics create')")
    monkeypatch.setattr(explain_command, "_REACH_TIMEOUT_S", 1.0)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert run("cloudflare:in1") == (
        1,
        "livewindows explain: cannot reach Kafka at 127.0.0.1:1 within 1 s",
    )
