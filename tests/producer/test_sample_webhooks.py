"""`send-test-events`: realistic, signed provider sequences that the producer accepts."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys

import orjson
import pytest

from plumbing.settings import ConfigError
from producer.auth import Credentials, fastpix_ok
from producer.normalize import to_event
from producer.sample_webhooks import sample_requests, send_command
from tests.producer import seeds
from tests.producer.conftest import MakeClient
from tests.producer.fakes import MemoryPublisher

START_MS = 1_700_000_000_000
SETTINGS = seeds.settings()

KINDS = {
    "cloudflare": ["connected", "disconnected", "connected", "errored", "connected"],
    "fastpix": [
        "connected",
        "connected",
        "disconnected",
        "connected",
        "connected",
        "disconnected",
        "ended",
    ],
    "gjirafa": ["connected", "connected", "disconnected", "connected", "disconnected", "ended"],
}


@pytest.mark.parametrize("provider", sorted(KINDS))
def test_the_sequence_goes_up_down_up_down_and_ends_in_time_order(provider: str) -> None:
    requests = sample_requests(provider, "in-1", SETTINGS, START_MS)
    events = [to_event(provider, orjson.loads(r.body), 0) for r in requests]  # type: ignore[arg-type]
    assert [e.kind for e in events] == KINDS[provider]
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)
    assert events[0].occurred_at == "2023-11-14T22:13:20.000Z"
    assert {e.input_id for e in events} == {"in-1"}
    assert len({e.event_id for e in events}) == len(events)


def test_cloudflare_samples_carry_nanoseconds_and_both_credentials() -> None:
    for request in sample_requests("cloudflare", "in-1", SETTINGS, START_MS):
        updated_at = orjson.loads(request.body)["data"]["updated_at"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", updated_at)
        assert request.path == "/api/v1/video/events/cf-token-new"
        assert request.headers["cf-webhook-auth"] == "cf-header-new"


def test_gjirafa_samples_carry_seven_fractional_digits() -> None:
    for request in sample_requests("gjirafa", "in-1", SETTINGS, START_MS):
        event_time = orjson.loads(request.body)["eventTime"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", event_time)


def test_fastpix_samples_are_signed_over_their_bytes_with_the_first_secret() -> None:
    only_first = Credentials((), (), (seeds.FASTPIX_KEY_1,), ())
    for request in sample_requests("fastpix", "in-1", SETTINGS, START_MS):
        assert fastpix_ok(request.headers["FastPix-Signature"], request.body, only_first)
        document = orjson.loads(request.body)
        assert document["id"] and document["data"]["reconnectWindow"] == 60


def test_a_missing_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="GJIRAFA_WEBHOOK_TOKEN"):
        sample_requests("gjirafa", "in-1", seeds.settings(gjirafa_webhook_token=None), START_MS)


def test_the_route_to_print_hides_the_token() -> None:
    request = sample_requests("gjirafa", "in-1", SETTINGS, START_MS)[0]
    assert request.route == "/api/v1/video/gjirafa/events/{token}"


@pytest.mark.parametrize("provider", sorted(KINDS))
async def test_send_command_delivers_the_whole_sequence(
    make_client: MakeClient, provider: str, capsys: pytest.CaptureFixture[str]
) -> None:
    publisher = MemoryPublisher()
    client = await make_client(publisher=publisher)
    args = argparse.Namespace(provider=provider, url=str(client.make_url("/")), input="in-9")
    assert await asyncio.to_thread(send_command, args, SETTINGS) == 0
    assert [e.kind for e in publisher.events] == KINDS[provider]
    out = capsys.readouterr().out
    assert out.count(" 202 ") == len(KINDS[provider])
    assert "token-new" not in out


async def test_send_command_fails_when_the_producer_refuses(
    make_client: MakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client = await make_client(publisher=MemoryPublisher())
    args = argparse.Namespace(provider="gjirafa", url=str(client.make_url("/")), input=None)
    wrong = seeds.settings(gjirafa_webhook_token="not-the-server-token")
    assert await asyncio.to_thread(send_command, args, wrong) == 1
    out = capsys.readouterr().out
    assert " 401 " in out and "not-the-server-token" not in out


def test_send_command_reports_an_unreachable_producer(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(provider="gjirafa", url="http://127.0.0.1:1", input="x")
    assert send_command(args, SETTINGS) == 1
    out = capsys.readouterr().out
    assert "cannot reach http://127.0.0.1:1" in out and "gj-token" not in out


def test_output_into_a_pipe_closed_early_ends_quietly() -> None:
    """`livewindows send-test-events ... | head -1`: the reader leaves, the command
    stops with exit 1 and no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # a reader that has already had enough
    try:
        done = subprocess.run(
            [sys.executable, "-m", "livewindows.cli", "send-test-events",
             "--provider", "fastpix", "--url", "http://127.0.0.1:9"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env={**os.environ, "FASTPIX_WEBHOOK_SECRET": "eA=="},
            timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == b""
