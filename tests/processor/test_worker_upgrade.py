"""A deployment upgraded in place: each engine restores the changelog an earlier
version wrote (format v1, its encoder frozen in `changelog_v1_frozen`) from a real
broker, and goes on in format v2 with the windows the core computes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from plumbing.topics import ensure_topics
from processor.changelog import CHANGELOG_CONFIG, changelog_topic, input_key, position_key
from processor.codec import decode
from processor.runner import Fetched, PartitionRunner
from processor.windows import Config, Event, seen_digest
from tests.kafkakit import (
    by_identity,
    core_windows,
    event_value,
    produce,
    read_all,
    tick_value,
    window_records,
)
from tests.processor.changelog_v1_frozen import encode_input_v1, encode_position_v1
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

GRACE_MS = 200
RW_S = 1
CONFIG = Config(GRACE_MS, RW_S)


@pytest.mark.parametrize("engine", ["kafka", "faust"])
def test_a_v1_changelog_is_restored_and_the_worker_goes_on_in_v2(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]], tmp_path: Path, engine: str
) -> None:
    events, windows, late, dlq = make_topics("events", "windows", "late", "dlq")
    app_id = f"test-upgrade-{uuid.uuid4().hex[:12]}"
    t = int(time.time() * 1000)  # the worker's ticks are wall-clock: so are these times
    produce(
        kafka_bootstrap,
        events,
        [
            event_value("a", "connected", t),
            event_value("b", "disconnected", t + 50),  # opens a window ...
            tick_value(t + 300),
            event_value("x", "other", t + 20, t + 310),  # ... x, buffered, will be late
        ],
    )
    # What the earlier version stored and wrote for those four records.
    fetched = [Fetched(r.offset, r.key, r.value, 0) for r in read_all(kafka_bootstrap, events)]
    earlier = PartitionRunner.fresh(0, events, CONFIG, 0)
    batch = earlier.run(fetched)
    assert batch is not None and earlier.state.inputs["cloudflare:in1"].window is not None
    ids = {}
    for record in fetched:
        event = decode(record.key, record.value)
        if isinstance(event, Event):
            ids[seen_digest(event.event_id)] = event.event_id
    changelog = changelog_topic(app_id)
    ensure_topics(kafka_bootstrap, [changelog], 1, 1, CHANGELOG_CONFIG)
    produce(
        kafka_bootstrap,
        changelog,
        [
            *(
                (input_key(0, key), encode_input_v1(state, len(fetched) - 1, ids))
                for key, state in earlier.state.inputs.items()
            ),
            (position_key(0), encode_position_v1(len(fetched), earlier.state.watermark_ms)),
        ],
    )
    produce(kafka_bootstrap, windows, [(w.key or b"", w.value) for w in batch.outputs])
    produce(kafka_bootstrap, events, [event_value("c", "connected", t + 400)])  # closes it

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "EVENTS_TOPIC": events,
        "WINDOWS_TOPIC": windows,
        "LATE_TOPIC": late,
        "DLQ_TOPIC": dlq,
        "WINDOW_GRACE_MS": str(GRACE_MS),
        "RECONNECT_WINDOW_S": str(RW_S),
        "TICK_INTERVAL_MS": "100",
        "PROCESSOR_APP_ID": app_id,
        "PROCESSOR_SESSION_TIMEOUT_MS": "6000",
        "PROCESSOR_ENGINE": engine,
    }
    log_path, data_dir = tmp_path / "worker.log", tmp_path / "data"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "livewindows.cli", "worker", "--data-dir", str(data_dir)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: len(by_identity(window_records(kafka_bootstrap, windows))) == 2,
            90,
            "b's window closed by c after the upgrade",
        )
        expected = by_identity(core_windows(kafka_bootstrap, events, CONFIG))
        assert by_identity(window_records(kafka_bootstrap, windows)) == expected
        wait_until(lambda: len(read_all(kafka_bootstrap, late)) == 1, 30, "x, late")
        output = log_path.read_text()
        assert f"state restored (next offset {len(fetched)}," in output
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        print(log_path.read_text(errors="replace"))
    stored = read_all(kafka_bootstrap, changelog)
    written = [r.value for r in stored[len(earlier.state.inputs) + 1 :]]
    assert written and all(value is not None and value[:1] == b"\x02" for value in written)
    (late_record,) = read_all(kafka_bootstrap, late)
    assert late_record.value is not None and b'"event_id":"x"' in late_record.value
    assert b'"payload":{"test":true}' in late_record.value  # v1 stored the value: kept
