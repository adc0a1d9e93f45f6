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


def _start_dev(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    kafka_port = port_with_controller_port()
    (http_port,) = free_ports(1)
    while http_port in (kafka_port, kafka_port + 100):
        (http_port,) = free_ports(1)
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
    return process, http_port


def _dev_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIDEO_EVENTS_TOKEN",)}
    env.update(WINDOW_GRACE_MS="300", TICK_INTERVAL_MS="200", TOPIC_PARTITIONS="2")
    return env


def _leftovers(data_dir: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
    return found.stdout.split()


def test_dev_runs_the_pipeline_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir, env = tmp_path / "dev", _dev_env()
    process, http_port = _start_dev(data_dir, env)
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
    assert _leftovers(data_dir) == [], "every child and JVM stops with dev"
    assert (data_dir / "billing.db").exists()


@pytest.mark.parametrize("stop", [signal.SIGHUP, signal.SIGKILL], ids=["hangup", "kill"])
def test_dev_leaves_nothing_running_when_its_terminal_closes_or_it_is_killed(
    tmp_path: Path, stop: signal.Signals
) -> None:
    data_dir = tmp_path / "dev"
    process, _port = _start_dev(data_dir, _dev_env())
    try:
        _wait_for(process, [], "Ctrl-C stops everything", 180)
        process.send_signal(stop)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 30  # a killed dev's children get SIGKILL from the kernel
    while _leftovers(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _leftovers(data_dir) == [], "every child and JVM stops with dev"
