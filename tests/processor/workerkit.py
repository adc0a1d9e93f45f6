"""What the `livewindows worker` tests share: topics, worker processes, a scenario.

The tests run workers as subprocesses (as an operator would), each on its own
topics and app id, then stop them and compare the windows topic with the pure
core run over the events topic as it stands, ticks the workers wrote included.
Scenarios end with every window closed and every buffer empty, so ticks written
after a worker's last record cannot add a window the worker did not write.

Where each engine's tests are:
- test_worker.py: what both engines must do alike (every test runs on both);
- test_worker_kafka_engine.py, test_worker_faust_engine.py: one engine's own
  mechanisms (transactions and their aborts; Faust's group join);
- test_worker_engine_switch.py: a group moving from one engine to the other.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from processor.changelog import Position, position_key
from processor.codec import DecodeError, decode
from processor.windows import Config, Tick
from tests.kafkakit import (
    Read,
    by_identity,
    core_windows_of,
    event_value,
    produce,
    read_all,
    window_records,
)
from tests.waiting import wait_until

GRACE_MS = 200
RW_S = 1
TICK_MS = 100
SESSION_TIMEOUT_MS = 6000  # the broker's default minimum
RECORDS_PER_INPUT = 4  # each scenario input opens and closes two windows


@dataclass(frozen=True)
class Topics:
    events: str
    windows: str
    late: str
    dlq: str


class Worker:
    """One `livewindows worker` process; its output goes to a file for the failure report."""

    def __init__(self, env: dict[str, str], data_dir: Path, log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "livewindows.cli", "worker", "--data-dir", str(data_dir)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout_s: float = 60.0) -> None:
        wait_until(lambda: text in self.output, timeout_s, f"{text!r} in the worker's log")

    def stop(self, timeout_s: float = 30.0) -> int:  # the worker gives up after 20 s
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def worker_env(bootstrap: str, topics: Topics, app_id: str, engine: str) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "EVENTS_TOPIC": topics.events,
        "WINDOWS_TOPIC": topics.windows,
        "LATE_TOPIC": topics.late,
        "DLQ_TOPIC": topics.dlq,
        "WINDOW_GRACE_MS": str(GRACE_MS),
        "RECONNECT_WINDOW_S": str(RW_S),
        "TICK_INTERVAL_MS": str(TICK_MS),
        "PROCESSOR_APP_ID": app_id,
        "PROCESSOR_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "PROCESSOR_ENGINE": engine,
        # Wrong on purpose: the worker must use the topic's real partition count.
        "TOPIC_PARTITIONS": "7",
    }


def new_topics(make_topics: Callable[..., list[str]], partitions: int) -> Topics:
    return Topics(*make_topics("events", "windows", "late", "dlq", partitions=partitions))


def new_app_id() -> str:
    return f"test-worker-{uuid.uuid4().hex[:12]}"


# One input's events: (id suffix, kind, occurred, received), in ms after its start.
STEPS = (
    ("a", "connected", 0, 0),
    ("b", "disconnected", 50, 50),  # opens a window ...
    ("b", "disconnected", 50, 60),  # ... a provider's retry of it: a duplicate
    ("c", "connected", 300, 300),  # ... closed: reconnected
    ("d", "errored", 400, 400),  # opens a window that times out
    ("x", "other", 100, 500),  # older than what was applied when released: late
)


def scenario_records(inputs: range, start_ms: int) -> list[tuple[bytes, bytes]]:
    """`STEPS` for each input; times are wall-clock based, as the worker's ticks are."""
    providers = ("cloudflare", "fastpix", "gjirafa")
    records: list[tuple[bytes, bytes]] = []
    for n in inputs:
        provider, t = providers[n % 3], start_ms + (n % 10) * 7
        records += [
            event_value(
                f"in{n}-{suffix}",
                kind,
                t + occurred,
                t + received,
                input_id=f"in{n}",
                provider=provider,
                reconnect_window_s=2 if provider == "fastpix" else None,  # FastPix names it
            )
            for suffix, kind, occurred, received in STEPS
        ]
    return records


def identities(bootstrap: str, topic: str) -> set[str]:
    return {identity for identity, _ in by_identity(window_records(bootstrap, topic))}


def wait_for_windows(bootstrap: str, topics: Topics, inputs: int, what: str) -> None:
    """Until the windows topic holds every window of `inputs` scenario inputs."""
    expected = RECORDS_PER_INPUT * inputs
    wait_until(lambda: len(identities(bootstrap, topics.windows)) == expected, 90, what)


@contextmanager
def killed_on_exit(worker: Worker) -> Iterator[Worker]:
    """A worker started outside the `start_worker` fixture (whose engine is a parameter)."""
    try:
        yield worker
    finally:
        if worker.proc.poll() is None:
            worker.kill()
        print(f"--- {worker.log_path.name} (exit {worker.proc.returncode})\n{worker.output}")


def assert_same_windows_as_the_core(
    bootstrap: str, topics: Topics, changelog: str | None = None
) -> list[dict[str, object]]:
    """Same set of windows as the core; copies of one window byte-identical. Returns the core's.

    With `changelog`, the core runs over what the workers ran: each partition's records
    below its last committed position, which must be past every webhook event. For
    workers stopped while ticks still arrive: a tick written after the last one they
    ran may release windows the core would make of the whole topic. A position
    commits in the transaction of its batch's windows, so this is exact."""
    events = read_all(bootstrap, topics.events)
    below = None if changelog is None else positions_past_every_event(bootstrap, events, changelog)
    expected = core_windows_of(events, Config(GRACE_MS, RW_S), below)
    written = read_all(bootstrap, topics.windows)
    assert by_identity([orjson.loads(r.value or b"") for r in written]) == by_identity(expected)
    copies: dict[tuple[object, object], set[bytes | None]] = defaultdict(set)
    for r in written:
        window = orjson.loads(r.value or b"")
        copies[window["window_id"], window["type"]].add(r.value)
    assert all(len(values) == 1 for values in copies.values())
    return expected


def positions_past_every_event(
    bootstrap: str, events: list[Read], changelog: str
) -> dict[int, int]:
    """Each events partition's last committed position in `changelog`, asserted to be
    past all of its webhook `events` (only ticks may be left)."""
    positions = {
        r.partition: Position.decode(r.value).next_offset
        for r in read_all(bootstrap, changelog)
        if r.key == position_key(r.partition) and r.value is not None
    }
    unrun = [
        (r.partition, r.offset)
        for r in events
        if r.offset >= positions.get(r.partition, 0) and not _is_tick(r)
    ]
    assert unrun == [], f"webhook events the workers never ran: {unrun}"
    return positions


def _is_tick(record: Read) -> bool:
    try:
        return isinstance(decode(record.key, record.value), Tick)
    except DecodeError:
        return False  # to be dead-lettered: run like an event


class Feeder(threading.Thread):
    """Produces scenario batches over time, as webhooks would arrive."""

    def __init__(self, bootstrap: str, topic: str, batches: list[range], pause_s: float) -> None:
        super().__init__(daemon=True)
        self._args = (bootstrap, topic)
        self._batches, self._pause_s = batches, pause_s

    def run(self) -> None:
        for batch in self._batches:
            produce(*self._args, scenario_records(batch, int(time.time() * 1000)))
            time.sleep(self._pause_s)


def dead_letters(
    bootstrap: str, topic: str
) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    """(key, value, headers) of each record of a one-partition topic."""
    return [
        (r.key, r.value, {name: value or b"" for name, value in r.headers})
        for r in read_all(bootstrap, topic)
    ]


def log_time(line: str) -> float:
    """Epoch seconds of a worker log line ("2026-11-23 19:11:22,478 ..."); 0 if none."""
    found = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", line)
    if found is None:
        return 0.0
    stamp = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S")
    return stamp.timestamp() + int(found.group(2)) / 1000


def scrape(port: int, wanted: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """The samples (name, `type` label) of `wanted` on a worker's /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        text = page.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, sample.labels.get("type", ""))
            if key in wanted:
                found[key] = int(sample.value)
    return found


def set_topic_config(bootstrap: str, topic: str, name: str, value: str) -> None:
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
