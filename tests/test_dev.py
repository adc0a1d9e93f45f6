"""`livewindows dev` (what `make run` runs): the whole pipeline, first try, and a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livewindows.kafka.launcher import free_ports
from tests.kafkakit import port_with_controller_port

pytestmark = pytest.mark.kafka


def _wait_for(
    process: subprocess.Popen[str], lines: list[str], text: str, timeout_s: float
) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        lines.append(line)
        if text in line:
            return
    pytest.fail(f"{text!r} did not appear; output so far:\n{''.join(lines)}")


def test_dev_runs_the_pipeline_and_stops_cleanly(tmp_path: Path) -> None:
    kafka_port = port_with_controller_port()
    (http_port,) = free_ports(1)
    while http_port in (kafka_port, kafka_port + 100):
        (http_port,) = free_ports(1)
    data_dir = tmp_path / "dev"
    env = {k: v for k, v in os.environ.items() if k not in ("VIDEO_EVENTS_TOKEN",)}
    env.update(WINDOW_GRACE_MS="300", TICK_INTERVAL_MS="200", TOPIC_PARTITIONS="2")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "livewindows.cli",
            "dev",
            "--port",
            str(http_port),
            "--kafka-port",
            str(kafka_port),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        _wait_for(process, lines, "Ctrl-C stops everything", 180)
        banner = "".join(lines)
        assert f"http://127.0.0.1:{http_port}" in banner
        assert "send-test-events" in banner
        env_file = data_dir / "dev.env"
        assert env_file.stat().st_mode & 0o077 == 0, "development secrets are private"

        sent = subprocess.run(
            [
                sys.executable,
                "-m",
                "livewindows.cli",
                "--env-file",
                str(env_file),
                "send-test-events",
                "--provider",
                "cloudflare",
                "--input",
                "dev-probe",
                "--url",
                f"http://127.0.0.1:{http_port}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        _wait_for(process, lines, "window.closed  cloudflare:dev-probe", 60)
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(data_dir)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == [], "every child and JVM stops with dev"
    assert (data_dir / "billing.db").exists()
