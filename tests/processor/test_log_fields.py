"""The worker's lines about one record or partition carry it as JSON fields (LOG_FORMAT=json)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from processor.runner import Fetched
from processor.runtime import Runtime
from processor.windows import Config
from tests.kafkakit import event_value
from tests.logkit import json_log
from tests.processor.fakes import FakeKafka

T = 1_790_000_000_000
SECRET = "sk-live-0f9e8d7c6b5a"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """livewindows.worker's lines through the JSON handler `worker` installs."""
    with json_log("livewindows.worker", "worker", logging.INFO) as stream:
        yield stream


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_dead_letter_restore_and_abort_lines_name_partition_and_offset(
    json_lines: io.StringIO,
) -> None:
    kafka = FakeKafka(aborts_to_come=1)
    runtime = Runtime(Config(1000, 5), "events", kafka, kafka, kafka)
    runtime.assign([3])
    key, value = event_value("e1", "connected", T)
    # Not an event: a stream key where an event id belongs (a writer's bug, not the producer's).
    poison = orjson.dumps({"schema": "livewindows/event/v1", "event_id": {"streamKey": SECRET}})
    records = [Fetched(0, key, value, 0), Fetched(1, b"cloudflare:in1", poison, 0)]
    assert runtime.handle({3: records}) is not None  # aborted: rewound
    assert runtime.handle({3: records}) is None
    lines = _lines(json_lines)
    assert SECRET not in json_lines.getvalue()  # the reason names fields, never values

    def only(start: str) -> dict[str, Any]:
        [line] = [line for line in lines if line["message"].startswith(start)]
        return line

    restored = [line for line in lines if "state restored" in line["message"]]
    assert [(line["partition"], line["offset"]) for line in restored] == [(3, 0), (3, 0)]
    aborted = only("transaction aborted")
    assert (aborted["partitions"], aborted["partition"], aborted["offset"]) == ([3], 3, 0)
    dead = only("events[3]@1 is not a valid event")
    assert (dead["level"], dead["partition"], dead["offset"]) == ("WARNING", 3, 1)
    assert dead["service"] == "worker"
