"""`livewindows worker` against the real broker: its windows are the core's windows.

Each test runs workers as subprocesses (as an operator would), on its own topics
and Faust app id, then stops them and compares the windows topic with the pure
core run over the events topic as it stands, ticks the workers wrote included.
Scenarios end with every window closed and every buffer empty, so ticks written
after a worker's last record cannot add a window the worker did not write.
"""

from __future__ import annotations

import os
import re
import shutil
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
    by_identity,
    core_windows,
    event_value,
    produce,
    read_all,
    window_records,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

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


@pytest.fixture(params=["faust", "kafka"])
def engine(request: pytest.FixtureRequest) -> str:
    """Every worker test runs against both engines: same windows, same crash guarantees."""
    return str(request.param)


@pytest.fixture
def start_worker(
    kafka_bootstrap: str, tmp_path: Path, engine: str
) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(
        topics: Topics, app_id: str, data_dir: Path, extra_env: dict[str, str] | None = None
    ) -> Worker:
        env = {**_worker_env(kafka_bootstrap, topics, app_id, engine), **(extra_env or {})}
        worker = Worker(env, data_dir, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill()
    for worker in started:
        print(f"--- {worker.log_path.name} (exit {worker.proc.returncode})\n{worker.output}")


def _worker_env(bootstrap: str, topics: Topics, app_id: str, engine: str) -> dict[str, str]:
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


def _topics(make_topics: Callable[..., list[str]], partitions: int) -> Topics:
    return Topics(*make_topics("events", "windows", "late", "dlq", partitions=partitions))


def _app_id() -> str:
    return f"test-worker-{uuid.uuid4().hex[:12]}"


# One input's events: (id suffix, kind, occurred, received), in ms after its start.
_STEPS = (
    ("a", "connected", 0, 0),
    ("b", "disconnected", 50, 50),  # opens a window ...
    ("b", "disconnected", 50, 60),  # ... a provider's retry of it: a duplicate
    ("c", "connected", 300, 300),  # ... closed: reconnected
    ("d", "errored", 400, 400),  # opens a window that times out
    ("x", "other", 100, 500),  # older than what was applied when released: late
)


def _scenario(inputs: range, start_ms: int) -> list[tuple[bytes, bytes]]:
    """`_STEPS` for each input; times are wall-clock based, as the worker's ticks are."""
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
            for suffix, kind, occurred, received in _STEPS
        ]
    return records


def _identities(bootstrap: str, topic: str) -> set[str]:
    return {identity for identity, _ in by_identity(window_records(bootstrap, topic))}


def _wait_for_windows(bootstrap: str, topics: Topics, inputs: int, what: str) -> None:
    """Until the windows topic holds every window of `inputs` scenario inputs."""
    expected = RECORDS_PER_INPUT * inputs
    wait_until(lambda: len(_identities(bootstrap, topics.windows)) == expected, 90, what)


@contextmanager
def _killed_on_exit(worker: Worker) -> Iterator[Worker]:
    """A worker started outside the `start_worker` fixture (whose engine is a parameter)."""
    try:
        yield worker
    finally:
        if worker.proc.poll() is None:
            worker.kill()
        print(f"--- {worker.log_path.name} (exit {worker.proc.returncode})\n{worker.output}")


def _assert_same_windows_as_the_core(bootstrap: str, topics: Topics) -> list[dict[str, object]]:
    """Same set of windows as the core; copies of one window byte-identical. Returns the core's."""
    expected = core_windows(bootstrap, topics.events, Config(GRACE_MS, RW_S))
    written = read_all(bootstrap, topics.windows)
    assert by_identity([orjson.loads(r.value or b"") for r in written]) == by_identity(expected)
    copies: dict[tuple[object, object], set[bytes | None]] = defaultdict(set)
    for r in written:
        window = orjson.loads(r.value or b"")
        copies[window["window_id"], window["type"]].add(r.value)
    assert all(len(values) == 1 for values in copies.values())
    return expected


def test_worker_writes_the_windows_the_core_computes(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    start_worker: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    topics = _topics(make_topics, partitions=3)
    inputs = range(12)
    scenario = _scenario(inputs, int(time.time() * 1000))
    produce(kafka_bootstrap, topics.events, scenario)
    (metrics_port,) = free_ports(1)
    worker = start_worker(
        topics, _app_id(), tmp_path / "data", {"PROCESSOR_METRICS_PORT": str(metrics_port)}
    )

    wait_until(
        lambda: (
            len(_identities(kafka_bootstrap, topics.windows)) == RECORDS_PER_INPUT * len(inputs)
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
        lambda: _scrape(metrics_port, expected_metrics) == expected_metrics,
        30,
        "the metrics to count every window",
    )
    assert _scrape(metrics_port, {("livewindows_worker_records_total", ""): 0})[
        ("livewindows_worker_records_total", "")
    ] >= len(scenario)  # and the ticks
    started_stop = time.monotonic()
    assert worker.stop() == 0
    assert time.monotonic() - started_stop < 20  # within its own shutdown deadline

    expected = _assert_same_windows_as_the_core(kafka_bootstrap, topics)
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
    topics = _topics(make_topics, partitions=1)
    now_ms = int(time.time() * 1000)
    poison = [
        (b"cloudflare:in0", b"\x00\xffnot json"),
        (b"cloudflare:in0", b'{"schema": "livewindows/event/v9"}'),
        (b"fastpix:somebody-else", event_value("in0-z", "connected", now_ms, input_id="in0")[1]),
    ]
    good = _scenario(range(2), now_ms)
    produce(kafka_bootstrap, topics.events, good[:3] + poison + good[3:])
    worker = start_worker(topics, _app_id(), tmp_path / "data")

    wait_until(
        lambda: len(_identities(kafka_bootstrap, topics.windows)) == RECORDS_PER_INPUT * 2,
        60,
        "the windows of the records after the poison ones",
    )
    assert worker.stop() == 0

    _assert_same_windows_as_the_core(kafka_bootstrap, topics)
    dead = _dead_letters(kafka_bootstrap, topics.dlq)
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


def test_worker_killed_mid_stream_resumes_from_its_changelog(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    start_worker: Callable[[Topics, str, Path], Worker],
    tmp_path: Path,
    engine: str,
) -> None:
    topics = _topics(make_topics, partitions=3)
    app_id, data_dir = _app_id(), tmp_path / "data"
    batches = [range(n, n + 6) for n in range(0, 42, 6)]
    feeder = _Feeder(kafka_bootstrap, topics.events, batches, pause_s=0.8)

    first = start_worker(topics, app_id, data_dir)
    first.wait_for_log("recovery done")
    feeder.start()
    wait_until(lambda: _identities(kafka_bootstrap, topics.windows), 30, "a first window")
    first.kill()  # SIGKILL with records in flight
    seen = len(_identities(kafka_bootstrap, topics.windows))

    second = start_worker(topics, app_id, data_dir)
    second.wait_for_log("recovery done")  # no engine keeps local state: all from the changelog
    wait_until(
        lambda: len(_identities(kafka_bootstrap, topics.windows)) > seen + 8,
        60,
        "progress after the first restart",
    )
    second.kill()
    shutil.rmtree(data_dir)  # a new machine: nothing local at all

    third = start_worker(topics, app_id, data_dir)
    feeder.join()
    total = RECORDS_PER_INPUT * sum(len(b) for b in batches)
    wait_until(
        lambda: len(_identities(kafka_bootstrap, topics.windows)) == total,
        90,
        "every window after the second restart",
    )
    assert third.stop() == 0

    expected = _assert_same_windows_as_the_core(kafka_bootstrap, topics)
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
    topics = _topics(make_topics, partitions=1)
    app_id, data_dir = _app_id(), tmp_path / "data"
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
    wait_until(lambda: _identities(kafka_bootstrap, topics.windows), 60, "j's window opened")
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
            len(_identities(kafka_bootstrap, topics.windows)) == 2
            and len(read_all(kafka_bootstrap, topics.late)) == 1
        ),
        60,
        "j's window closed and j's late event",
    )
    assert second.stop() == 0

    expected = _assert_same_windows_as_the_core(kafka_bootstrap, topics)
    assert [w["close_reason"] for w in expected] == [None, "reconnected"]
    assert "redid the write-ahead record an earlier version left (3 writes)" in second.output


def test_two_workers_in_one_group_write_what_one_would(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    start_worker: Callable[[Topics, str, Path], Worker],
    tmp_path: Path,
) -> None:
    topics = _topics(make_topics, partitions=4)
    app_id = _app_id()
    first = start_worker(topics, app_id, tmp_path / "one")
    produce(kafka_bootstrap, topics.events, _scenario(range(0, 12), int(time.time() * 1000)))
    wait_until(lambda: _identities(kafka_bootstrap, topics.windows), 60, "a first window")

    second = start_worker(topics, app_id, tmp_path / "two")
    second.wait_for_log("recovery done; processing partitions [")
    produce(kafka_bootstrap, topics.events, _scenario(range(12, 24), int(time.time() * 1000)))
    wait_until(
        lambda: len(_identities(kafka_bootstrap, topics.windows)) == RECORDS_PER_INPUT * 24,
        60,
        "every window of both batches",
    )
    assert second.stop() == 0
    assert first.stop() == 0

    expected = _assert_same_windows_as_the_core(kafka_bootstrap, topics)
    assert len(expected) == RECORDS_PER_INPUT * 24
    assert re.search(r"recovery done; processing partitions \[\d", second.output)
    assert "state restored" in first.output and "state restored" in second.output


@pytest.mark.timeout(240)
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
        produce(bootstrap, topics.events, _scenario(range(3), int(time.time() * 1000)))
        env = _worker_env(bootstrap, topics, _app_id(), engine_)
        worker = Worker(env, tmp_path / "data", tmp_path / "worker.log")
        with _killed_on_exit(worker):
            wait_until(lambda: _identities(bootstrap, topics.windows), 60, "a first window")
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


class _Feeder(threading.Thread):
    """Produces scenario batches over time, as webhooks would arrive."""

    def __init__(self, bootstrap: str, topic: str, batches: list[range], pause_s: float) -> None:
        super().__init__(daemon=True)
        self._args = (bootstrap, topic)
        self._batches, self._pause_s = batches, pause_s

    def run(self) -> None:
        for batch in self._batches:
            produce(*self._args, _scenario(batch, int(time.time() * 1000)))
            time.sleep(self._pause_s)


def _dead_letters(
    bootstrap: str, topic: str
) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    """(key, value, headers) of each record of a one-partition topic."""
    return [
        (r.key, r.value, {name: value or b"" for name, value in r.headers})
        for r in read_all(bootstrap, topic)
    ]


def _log_time(line: str) -> float:
    """Epoch seconds of a worker log line ("2026-11-23 19:11:22,478 ..."); 0 if none."""
    found = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", line)
    if found is None:
        return 0.0
    stamp = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S")
    return stamp.timestamp() + int(found.group(2)) / 1000


def _scrape(port: int, wanted: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
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


def _set_topic_config(bootstrap: str, topic: str, name: str, value: str) -> None:
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
    topics = _topics(make_topics, partitions=2)
    _set_topic_config(kafka_bootstrap, topics.windows, "max.message.bytes", "200")
    (metrics_port,) = free_ports(1)
    worker = Worker(
        {
            **_worker_env(kafka_bootstrap, topics, _app_id(), "kafka"),
            "PROCESSOR_METRICS_PORT": str(metrics_port),
        },
        tmp_path / "data",
        tmp_path / "worker.log",
    )
    with _killed_on_exit(worker):
        produce(kafka_bootstrap, topics.events, _scenario(range(6), int(time.time() * 1000)))
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
            scraped.update(_scrape(metrics_port, {aborted: 0, opened: 0}))
            return scraped[aborted] >= 2

        wait_until(two_aborts_counted, 30, "two aborts in the metrics")
        assert scraped[opened] == 0
        pauses = [float(s) for s in re.findall(r"retrying in ([\d.]+) s", worker.output)]
        assert pauses[1] > pauses[0], pauses  # growing: a lasting refusal is not hammered

        _set_topic_config(kafka_bootstrap, topics.windows, "max.message.bytes", "1048588")
        _wait_for_windows(kafka_bootstrap, topics, 6, "every window once Kafka takes them")
        assert worker.stop() == 0
    expected = _assert_same_windows_as_the_core(kafka_bootstrap, topics)
    assert len(read_all(kafka_bootstrap, topics.windows)) == len(expected)  # no copies
    # Each abort follows librdkafka's report of the failed transaction within
    # seconds (the two are logged from different threads, in either order), where a
    # commit waiting out its whole timeout took 30 s to notice one. The bound leaves
    # room for a report held back as a repeat (plumbing/logs.py, 10 s).
    lines = worker.output.splitlines()
    failed = [_log_time(line) for line in lines if "TXNERR" in line]
    for line in lines:
        if "transaction aborted" in line:
            aborted = _log_time(line)
            reported = [at for at in failed if at <= aborted + 1]
            assert reported and aborted - max(reported) < 15, line


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

    topics = _topics(make_topics, partitions=1)
    app_id = _app_id()
    changelog = changelog_topic(app_id)
    if earlier:
        ensure_topics(kafka_bootstrap, [changelog], 1, 1, {"cleanup.policy": "compact"})
    worker = Worker(
        _worker_env(kafka_bootstrap, topics, app_id, engine_),
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
    topics = _topics(make_topics, partitions=1)
    app_id = _app_id()
    holder = Worker(
        _worker_env(kafka_bootstrap, topics, app_id, first), tmp_path / "a", tmp_path / "a.log"
    )
    with _killed_on_exit(holder):
        holder.wait_for_log("recovery done")
        newcomer = Worker(
            _worker_env(kafka_bootstrap, topics, app_id, second),
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
    until its session times out; the new worker waits for that instead of refusing."""
    topics = _topics(make_topics, partitions=1)
    app_id = _app_id()
    # A session long enough that the successor, however slow its start on a busy
    # host, finds the dead member still in the group (at 6 s it sometimes would not).
    session = {"PROCESSOR_SESSION_TIMEOUT_MS": "20000"}
    crashed = Worker(
        {**_worker_env(kafka_bootstrap, topics, app_id, "faust"), **session},
        tmp_path / "a",
        tmp_path / "a.log",
    )
    crashed.wait_for_log("recovery done")
    crashed.kill()
    successor = Worker(
        {**_worker_env(kafka_bootstrap, topics, app_id, "kafka"), **session},
        tmp_path / "b",
        tmp_path / "b.log",
    )
    with _killed_on_exit(successor):
        successor.wait_for_log("recovery done", 120)
        assert "is held by the other engine" in successor.output
        produce(kafka_bootstrap, topics.events, _scenario(range(2), int(time.time() * 1000)))
        _wait_for_windows(kafka_bootstrap, topics, 2, "the windows, written by the successor")
        assert successor.stop() == 0
    _assert_same_windows_as_the_core(kafka_bootstrap, topics)


def test_a_faust_worker_beaten_to_the_group_by_the_other_engine_stops_in_one_line(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    """The race the check before start cannot see: a member of the kafka engine's kind
    (here a plain consumer, librdkafka's "range" assignor) joins the group after a
    Faust worker's check and before its own join. aiokafka then gives up on the group
    and the worker would wait forever, assigned nothing: it must exit 2 in one line."""
    from confluent_kafka import Consumer

    topics = _topics(make_topics, partitions=1)
    app_id = _app_id()
    worker = Worker(
        _worker_env(kafka_bootstrap, topics, app_id, "faust"), tmp_path / "a", tmp_path / "a.log"
    )
    rival = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": app_id,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "enable.auto.commit": False,
        }
    )
    with _killed_on_exit(worker):
        try:
            worker.wait_for_log("engine faust: joining consumer group")
            rival.subscribe([topics.events])
            deadline = time.monotonic() + 2 * SESSION_TIMEOUT_MS / 1000 + 5 + 45
            held = False
            while worker.proc.poll() is None and time.monotonic() < deadline:
                rival.poll(0.2)  # stays in the group
                held = held or bool(rival.assignment())
        finally:
            rival.close()
        assert held, "the rival never got the group: the race went the other way"
        assert worker.proc.wait(5) == 2, worker.output
    assert "is held by workers of the kafka engine" in worker.output
    assert "waiting up to" not in worker.output  # not the check before start
    assert "Traceback" not in worker.output


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

    topics = _topics(make_topics, partitions=1)
    app_id = _app_id()
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
            _worker_env(kafka_bootstrap, topics, app_id, "kafka"),
            tmp_path / "a",
            tmp_path / "a.log",
        )
        with _killed_on_exit(worker):
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
