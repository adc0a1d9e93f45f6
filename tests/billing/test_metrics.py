"""`livewindows billing`'s metrics and JSON lines: is it behind, when did it last bill?"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from livewindows.billing.consumer import BillingConsumer
from livewindows.billing.metrics import serve_metrics
from livewindows.billing.store import Applied, SQLiteStore
from livewindows.kafka.launcher import free_ports
from plumbing.settings import Settings
from schemas.records import Window
from tests.billing.test_consumer import keyed, produce
from tests.billing.windowkit import closed, opened
from tests.waiting import wait_until

MakeTopics = Callable[..., list[str]]
LAG = "livewindows_billing_consumer_lag_records"
LAST = "livewindows_billing_last_window_timestamp_seconds"


def scrape(port: int) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        text = page.read().decode()
    return {
        (sample.name, sample.labels.get("partition", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in (LAG, LAST)
    }


class _HeldStore(SQLiteStore):
    """A store whose first write waits until the test lets it go (a slow database)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.writing = threading.Event()
        self.go_on = threading.Event()

    def apply(self, windows: Sequence[Window], now_ms: int) -> Applied:
        self.writing.set()
        assert self.go_on.wait(60)
        return super().apply(windows, now_ms)


@pytest.mark.kafka
def test_billing_lag_counts_what_is_not_in_the_database_yet(
    kafka_bootstrap: str, make_topics: MakeTopics, tmp_path: Path
) -> None:
    [topic] = make_topics("billing-lag")
    windows = [w for n in range(10) for w in (opened(f"e{n}"), closed(f"e{n}", n))]
    produce(kafka_bootstrap, topic, keyed(windows))
    store = _HeldStore(str(tmp_path / "billing.db"))
    store.create_schema()
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, windows_topic=topic)
    consumer = BillingConsumer(
        settings, store, group_id=f"billing-{uuid.uuid4().hex}", batch_size=5, report=print
    )
    (port,) = free_ports(1)
    serve_metrics("127.0.0.1", port, consumer)
    assert scrape(port) == {}  # no partition yet, no window committed yet
    seen: list[dict[tuple[str, str], float]] = []

    def watch() -> None:
        """Scrapes while the first batch is in hand, then once billing caught up."""
        try:
            assert store.writing.wait(60)
            seen.append(scrape(port))
        finally:
            store.go_on.set()
        wait_until(lambda: scrape(port).get((LAG, "0")) == 0, 60, "billing to catch up")
        seen.append(scrape(port))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started_s = time.time()
    try:
        consumer.run(max_idle_s=3.0)  # here: SQLite stays in the thread that opened it
        watcher.join(60)
    finally:
        store.go_on.set()
        consumer.close()
        store.close()
    assert consumer.summary.records == len(windows)
    in_hand, caught_up = seen
    # The first batch was in hand, not in the database: all 20 records were behind.
    assert in_hand == {(LAG, "0"): len(windows)}
    assert caught_up[(LAG, "0")] == 0
    assert started_s <= caught_up[(LAST, "")] <= time.time()


def _billing(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livewindows.cli", "billing", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_billing_lines_are_json_with_log_format_json_and_hide_the_password(
    tmp_path: Path,
) -> None:
    url = "postgresql://billing:s3cret-pw@127.0.0.1:1/billing"
    env = {"LOG_FORMAT": "json", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    done = _billing(env, "--db", url, cwd=tmp_path)
    assert done.returncode == 1
    assert "s3cret-pw" not in done.stderr
    (line,) = [orjson.loads(text) for text in done.stderr.splitlines()]
    assert (line["service"], line["level"], line["logger"]) == (
        "billing",
        "ERROR",
        "livewindows.billing",
    )
    assert line["message"].startswith(
        "billing: cannot open postgresql://billing:***@127.0.0.1:1/billing: "
    )
    # Text stays the default, worded as before.
    done = _billing({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "--db", url, cwd=tmp_path)
    assert done.stderr.startswith("billing: cannot open postgresql://billing:***@127.0.0.1:1/")
    assert "s3cret-pw" not in done.stderr


@pytest.mark.kafka
def test_billing_serves_its_metrics_on_billing_metrics_port(
    kafka_bootstrap: str, make_topics: MakeTopics, tmp_path: Path
) -> None:
    [topic] = make_topics("billing-metrics")
    produce(kafka_bootstrap, topic, keyed([opened("e1"), closed("e1", 5)]))
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "WINDOWS_TOPIC": topic,
        "BILLING_METRICS_PORT": str(port),
        "LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "livewindows.cli", "billing", "--group", uuid.uuid4().hex]
    process = subprocess.Popen(
        [*command, "--db", f"sqlite:///{tmp_path / 'b.db'}"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def billed() -> bool:
            try:
                found = scrape(port)
            except OSError:
                return False
            return found.get((LAG, "0")) == 0 and (LAST, "") in found

        wait_until(billed, 60, "billing's metrics to show the windows committed")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    lines = [orjson.loads(text) for text in stderr.splitlines()]
    messages = [line["message"] for line in lines if line["logger"] == "livewindows.billing"]
    assert f"billing: metrics at http://0.0.0.0:{port}/metrics" in messages
    assert any(m.startswith(f"billing: consuming {topic}") for m in messages)
    assert any(m.startswith("billing: stopped: 2 records") for m in messages)
