"""`livewindows serve --workers N`: N processes on one port, stopped together."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from livewindows.kafka.launcher import free_ports
from plumbing.settings import Settings
from producer.sample_webhooks import sample_requests
from tests.kafkakit import read_all
from tests.waiting import http_ready, wait_until

pytestmark = pytest.mark.kafka


def test_two_processes_share_the_port_and_stop_together(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]], tmp_path: Path
) -> None:
    (events,) = make_topics("events", partitions=2)
    (port,) = free_ports(1)
    secrets = {
        "VIDEO_EVENTS_TOKEN": "t0ken",
        "FASTPIX_WEBHOOK_SECRET": base64.b64encode(b"key").decode(),
        "GJIRAFA_WEBHOOK_TOKEN": "gj",
    }
    env = {**os.environ, **secrets, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "EVENTS_TOPIC": events}  # fmt: skip
    log_path = tmp_path / "serve.log"
    listening = f"listening on http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "livewindows.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "2"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: server.poll() is None and log_path.read_text().count(listening) == 2,
            60,
            "both producer processes listening",
        )
        assert http_ready(url)
        settings = Settings(**{k.lower(): v for k, v in secrets.items()})  # type: ignore[arg-type]
        requests = [
            r
            for n in range(6)
            for r in sample_requests("gjirafa", f"w{n}", settings, 1_790_000_000_000)
        ]
        statuses = asyncio.run(_post_concurrently(url, requests))
        assert statuses == [202] * len(requests)
        assert len(read_all(kafka_bootstrap, events)) == len(requests)
        server.send_signal(signal.SIGTERM)
        assert server.wait(40) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    output = log_path.read_text()
    assert output.count(listening) == 2, output
    left = subprocess.run(["pgrep", "-f", "--", f"--port {port} --reuse-port"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert left.returncode == 1 and left.stdout == "", "every producer process stopped"


async def _post_concurrently(url: str, requests: list) -> list[int]:  # type: ignore[type-arg]
    connector = aiohttp.TCPConnector(limit=8, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(request) -> int:  # type: ignore[no-untyped-def]
            async with session.post(url + request.path, data=request.body,
                                    headers=request.headers) as answer:  # fmt: skip
                return answer.status

        return list(await asyncio.gather(*(post(r) for r in requests)))
