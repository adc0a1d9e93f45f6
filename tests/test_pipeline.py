"""The whole pipeline: provider webhooks over real HTTP → producer → real Kafka →
worker → windows topic, which must equal the pure core run over the events topic."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from livewindows.kafka.launcher import free_ports
from plumbing.settings import Settings
from processor.windows import Config
from producer.sample_webhooks import SPAN_MS, sample_requests
from tests.kafkakit import by_identity, core_windows, window_records
from tests.waiting import http_ready, wait_until

pytestmark = pytest.mark.kafka

GRACE_MS = 300
RW_S = 2
INPUTS = 3


@pytest.fixture
def pipeline_env(kafka_bootstrap: str, make_topics: Callable[..., list[str]]) -> dict[str, str]:
    events, windows, late, dlq = make_topics("events", "windows", "late", "dlq", partitions=3)
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "EVENTS_TOPIC": events,
        "WINDOWS_TOPIC": windows,
        "LATE_TOPIC": late,
        "DLQ_TOPIC": dlq,
        "WINDOW_GRACE_MS": str(GRACE_MS),
        "RECONNECT_WINDOW_S": str(RW_S),
        "TICK_INTERVAL_MS": "200",
        "PROCESSOR_APP_ID": f"pipeline-{uuid.uuid4().hex[:8]}",
        "VIDEO_EVENTS_TOKEN": "cf-token",
        "CF_WEBHOOK_SECRET": "cf-secret",
        "FASTPIX_WEBHOOK_SECRET": base64.b64encode(b"fastpix signing key").decode(),
        "GJIRAFA_WEBHOOK_TOKEN": "gj-token",
    }


@pytest.fixture
def services(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`livewindows serve` and `livewindows worker` as an operator runs them; yields the URL."""
    (port,) = free_ports(1)
    logs = []
    processes = []
    for name, argv in (
        ("producer", ["serve", "--host", "127.0.0.1", "--port", str(port)]),
        ("worker", ["worker", "--data-dir", str(tmp_path / "worker")]),
    ):
        log = (tmp_path / f"{name}.log").open("wb")
        logs.append(log)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "livewindows.cli", *argv],
                env=pipeline_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ready(url), 60, "the producer to be ready")
        yield url
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                assert process.wait(30) == 0, "services stop cleanly on SIGTERM"
            finally:
                if process.poll() is None:
                    process.kill()
        for log in logs:
            log.close()
        for name in ("producer", "worker"):
            print(f"--- {name}.log\n" + (tmp_path / f"{name}.log").read_text(errors="replace"))


def test_webhooks_of_every_provider_become_the_cores_windows(
    pipeline_env: dict[str, str], services: str
) -> None:
    settings = Settings(
        **{k.lower(): v for k, v in pipeline_env.items() if k.lower() in Settings.model_fields}
    )
    now_ms = time.time_ns() // 1_000_000
    requests = [
        request
        for provider in ("cloudflare", "fastpix", "gjirafa")
        for n in range(INPUTS)
        for request in sample_requests(
            provider, f"e2e-{provider}-{n}", settings, now_ms - SPAN_MS[provider]
        )
    ]
    statuses = asyncio.run(_post_all(services, requests))
    assert statuses == [202] * len(requests)

    bootstrap = settings.kafka_bootstrap_servers
    config = Config(GRACE_MS, RW_S)
    expected: list[dict[str, object]] = []

    def every_window_closed() -> bool:
        """Two windows per input and provider in these samples, all closed. Before the
        worker's ticks release the last events, the core sees only some windows."""
        nonlocal expected
        expected = core_windows(bootstrap, settings.events_topic, config)
        opened = {w["window_id"] for w in expected if w["type"] == "window.opened"}
        closed = {w["window_id"] for w in expected if w["type"] == "window.closed"}
        return len(opened) == 2 * 3 * INPUTS and opened == closed

    wait_until(every_window_closed, 60, "the worker's ticks to close all 18 windows")
    wait_until(
        lambda: (
            by_identity(window_records(bootstrap, settings.windows_topic)) >= by_identity(expected)
        ),
        60,
        "the worker to write the core's windows",
    )
    assert by_identity(window_records(bootstrap, settings.windows_topic)) == by_identity(expected)


async def _post_all(url: str, requests: list) -> list[int]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as session:
        statuses = []
        for request in requests:
            async with session.post(
                url + request.path, data=request.body, headers=request.headers
            ) as answer:
                statuses.append(answer.status)
        return statuses
