"""The producer's log lines with `LOG_FORMAT=json`: one object per line, no secret."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from tests.logkit import json_log as json_lines_of
from tests.producer import seeds
from tests.producer.conftest import MakeClient
from tests.producer.fakes import MemoryPublisher
from tests.producer.test_app import FP_PATH, body_of, fp_headers


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The producer's HTTP logger at DEBUG through the JSON handler `serve` installs."""
    with json_lines_of("livewindows.producer.http", "producer", logging.DEBUG) as stream:
        yield stream


async def test_a_fastpix_stream_key_is_redacted_in_the_json_line(
    make_client: MakeClient, json_log: io.StringIO
) -> None:
    client = await make_client(publisher=MemoryPublisher())
    accepted = body_of(seeds.fastpix_stream("video.live_stream.connected"))
    broken = body_of({**seeds.fastpix_stream("video.live_stream.connected"), "created_at": "no"})
    simulcast = body_of(seeds.fastpix_simulcast("video.live_stream.simulcast_target.created"))
    statuses = []
    for body in (accepted, broken, simulcast):
        response = await client.post(FP_PATH, data=body, headers=fp_headers(body))
        statuses.append(response.status)
    assert statuses == [202, 422, 202]
    text = json_log.getvalue()
    for secret in (seeds.FP_STREAM_KEY, seeds.FP_SIMULCAST_KEY, seeds.FP_RTMP_KEY):
        assert secret not in text
    lines = [orjson.loads(line) for line in text.splitlines()]
    assert [(line["level"], line["status"]) for line in lines] == [
        ("DEBUG", 202),
        ("WARNING", 422),
        ("DEBUG", 202),
    ]
    first = lines[0]
    assert (first["service"], first["logger"], first["message"]) == (
        "producer",
        "livewindows.producer.http",
        "request",
    )
    assert first["route"] == FP_PATH and first["provider"] == "fastpix"
    assert first["input_id"] == seeds.FP_STREAM and first["event_id"]
    assert first["payload"]["data"]["streamKey"] == "[redacted]"
    assert lines[1]["payload"]["data"]["streamKey"] == "[redacted]"
    assert lines[2]["payload"]["data"]["streamKey"] == "[redacted]"
