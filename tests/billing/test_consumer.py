"""The billing consumer end to end: a real Kafka, and SQLite or a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from livewindows.billing.consumer import BillingConsumer
from livewindows.billing.periods import rollups
from livewindows.billing.rows import fold, totals
from livewindows.billing.store import Applied, SQLiteStore, Store, open_store
from plumbing.settings import Settings
from schemas.records import Window
from tests.billing.windowkit import closed, encode, opened

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

MakeTopics = Callable[..., list[str]]

E1_OPEN, E1_CLOSE = opened("e1"), closed("e1", 1500)
E2_OPEN, E2_CLOSE = opened("e2", "in2"), closed("e2", 700, "in2", close_reason="timed_out")
E3_OPEN = opened("e3", provider="fastpix")
E4_CLOSE = closed("e4", 42, provider="gjirafa", close_reason="ended")
# Duplicates, a closed before its opened (e2), an open-only window (e3), a close alone (e4).
WINDOWS = [E1_OPEN, E1_CLOSE, E1_CLOSE, E2_CLOSE, E3_OPEN, E2_OPEN, E4_CLOSE, E3_OPEN, E1_OPEN]
INVALID = [b"not json", b'{"schema": "livewindows/event/v1"}', b""]


def produce(bootstrap: str, topic: str, values: Sequence[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in values:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def keyed(windows: Sequence[Window]) -> list[tuple[bytes | None, bytes]]:
    return [(f"{w.provider}:{w.input_id}".encode(), encode(w)) for w in windows]


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
        return {tp.partition: tp.offset for tp in offsets if tp.offset >= 0}
    finally:
        consumer.close()


def run_consumer(
    bootstrap: str, topic: str, store: Store, group: str, reports: list[str] | None = None
) -> BillingConsumer:
    settings = Settings(kafka_bootstrap_servers=bootstrap, windows_topic=topic)
    consumer = BillingConsumer(
        settings, store, group_id=group, report=(reports if reports is not None else []).append
    )
    try:
        consumer.run(max_idle_s=3.0)
    finally:
        consumer.close()
    return consumer


def test_consumer_builds_the_tables_and_replays_change_nothing(
    kafka_bootstrap: str, make_topics: MakeTopics, make_db_url: Callable[[], str]
) -> None:
    [topic] = make_topics("billing", partitions=3)
    produce(kafka_bootstrap, topic, keyed(WINDOWS) + [(b"junk", value) for value in INVALID])
    expected = fold(WINDOWS)
    store = open_store(make_db_url())
    try:
        group = f"billing-{uuid.uuid4().hex}"
        reports: list[str] = []
        first = run_consumer(kafka_bootstrap, topic, store, group, reports).summary
        assert store.rows() == expected
        assert store.totals() == totals(expected.values())
        assert store.periods() == rollups(expected.values(), store.zone)
        assert len(expected) == 4 and sum(t.windows_closed for t in store.totals().values()) == 3
        assert (first.records, first.invalid) == (len(WINDOWS) + len(INVALID), len(INVALID))
        skipped = [line for line in reports if line.startswith("billing: skipped ")]
        assert len(skipped) == len(INVALID)
        assert all(f"billing: skipped {topic}/" in line and "@" in line for line in skipped)
        assert sum(committed(kafka_bootstrap, group, topic, 3).values()) == first.records

        snapshot, totals_before = store.rows_with_updated_at(), store.totals()
        periods_before = store.periods()
        again = run_consumer(kafka_bootstrap, topic, store, group).summary
        assert again.records == 0  # the group resumes after its committed offsets
        replay = run_consumer(kafka_bootstrap, topic, store, f"replay-{uuid.uuid4().hex}").summary
        assert replay.records == first.records
        assert (replay.rows_written, replay.windows_closed) == (0, 0)
        assert store.rows_with_updated_at() == snapshot
        assert store.totals() == totals_before
        assert store.periods() == periods_before
    finally:
        store.close()


class _FailsOnSecondBatch(SQLiteStore):
    """A store whose database goes away after one batch."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.written = 0

    def apply(self, windows: Sequence[Window], now_ms: int) -> Applied:
        if self.written:
            raise RuntimeError("database went away")
        applied = super().apply(windows, now_ms)
        self.written += len(windows)
        return applied


def test_offsets_are_committed_only_after_the_database(
    kafka_bootstrap: str, make_topics: MakeTopics, tmp_path: Path
) -> None:
    [topic] = make_topics("billing-fail")
    windows = [w for n in range(10) for w in (opened(f"e{n}"), closed(f"e{n}", n))]
    produce(kafka_bootstrap, topic, keyed(windows))
    group = f"billing-{uuid.uuid4().hex}"
    failing = _FailsOnSecondBatch(str(tmp_path / "billing.db"))
    failing.create_schema()
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, windows_topic=topic)
    consumer = BillingConsumer(settings, failing, group_id=group, batch_size=3, report=print)
    with pytest.raises(RuntimeError, match="went away"):
        consumer.run(max_idle_s=3.0)
    consumer.close()
    failing.close()
    assert 0 < failing.written < len(windows)
    assert committed(kafka_bootstrap, group, topic, 1) == {0: failing.written}

    store = open_store(f"sqlite:///{tmp_path / 'billing.db'}")
    try:
        resumed = run_consumer(kafka_bootstrap, topic, store, group).summary
        assert resumed.records == len(windows) - failing.written
        assert store.rows() == fold(windows)
        assert store.totals() == totals(fold(windows).values())
    finally:
        store.close()


def test_cli_stops_cleanly_on_sigterm(
    kafka_bootstrap: str, make_topics: MakeTopics, tmp_path: Path
) -> None:
    [topic] = make_topics("billing-cli")
    produce(kafka_bootstrap, topic, keyed(WINDOWS))
    db = tmp_path / "billing.db"
    env = {**os.environ, "WINDOWS_TOPIC": topic, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    command = [sys.executable, "-m", "livewindows.cli", "billing", "--db", f"sqlite:///{db}"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if committed(kafka_bootstrap, "livewindows-billing", topic, 1) == {0: len(WINDOWS)}:
                break
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert f"consuming {topic}" in stderr
    assert "SIGTERM" in stderr
    assert f"stopped: {len(WINDOWS)} records" in stderr
    store = open_store(f"sqlite:///{db}")
    try:
        assert store.rows() == fold(WINDOWS)
    finally:
        store.close()


def _billing_cli(bootstrap: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.run(
        [sys.executable, "-m", "livewindows.cli", "billing", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_without_kafka_says_so_in_one_line(tmp_path: Path) -> None:
    # Nothing listens on port 1: librdkafka alone would retry (and log) forever.
    done = _billing_cli("127.0.0.1:1", "--db", "sqlite:///billing.db", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == "billing: cannot reach Kafka at 127.0.0.1:1 within 5 s\n"


@pytest.mark.parametrize("db", ["sqlite://", "sqlite:////proc/no/such/dir/b.db"])
def test_cli_with_an_unusable_database_says_so_in_one_line(
    kafka_bootstrap: str, tmp_path: Path, db: str
) -> None:
    done = _billing_cli(kafka_bootstrap, "--db", db, cwd=tmp_path)
    assert done.returncode in (1, 2)
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert db in done.stderr


def test_cli_refuses_rollups_of_another_zone_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    store = open_store(url)  # rollups in UTC
    store.apply([closed("e1", 10)], 0)
    store.close()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    command = [sys.executable, "-m", "livewindows.cli", "billing", "--db", url]
    for zone, message in (
        ("Europe/Berlin", "rollups are kept in UTC, not in BILLING_TIMEZONE=Europe/Berlin"),
        ("Europe/Berln", "BILLING_TIMEZONE: Value error, unknown time zone 'Europe/Berln'"),
    ):
        done = subprocess.run(
            command,
            env={**env, "BILLING_TIMEZONE": zone},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert len(done.stderr.splitlines()) == 1 and message in done.stderr
