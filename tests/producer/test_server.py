"""`livewindows serve` refuses to start open or without Kafka (SPEC §2, §6)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from livewindows import cli
from plumbing.settings import ConfigError
from producer import server
from tests.producer import seeds


def _args() -> object:
    return cli.build_parser().parse_args(["serve", "--port", "1"])


@pytest.mark.parametrize(
    ("missing", "name"),
    [
        ({"video_events_token": None}, "VIDEO_EVENTS_TOKEN"),
        ({"fastpix_webhook_secret": None}, "FASTPIX_WEBHOOK_SECRET"),
        ({"gjirafa_webhook_token": ""}, "GJIRAFA_WEBHOOK_TOKEN"),
    ],
)
def test_a_missing_secret_stops_the_start(missing: dict[str, object], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        server.serve_command(_args(), seeds.settings(**missing))  # type: ignore[arg-type]


def test_cf_webhook_secret_may_be_left_to_its_default() -> None:
    server.check_config(seeds.settings(cf_webhook_secret=None))


def test_the_cli_exits_2_with_one_line_and_never_listens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "VIDEO_EVENTS_TOKEN",
        "CF_WEBHOOK_SECRET",
        "FASTPIX_WEBHOOK_SECRET",
        "GJIRAFA_WEBHOOK_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(server.web, "run_app", lambda *a, **k: pytest.fail("served"))
    assert cli.main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "VIDEO_EVENTS_TOKEN" in err and "GJIRAFA_WEBHOOK_TOKEN" in err


def test_an_unreachable_kafka_exits_1_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(server, "STARTUP_PROBE_S", 1.0)
    monkeypatch.setattr(server.web, "run_app", lambda *a, **k: pytest.fail("served"))
    started = time.monotonic()
    settings = seeds.settings(kafka_bootstrap_servers="127.0.0.1:1")
    assert server.serve_command(_args(), settings) == 1  # type: ignore[arg-type]
    assert time.monotonic() - started < 10
    assert "Kafka at 127.0.0.1:1" in capsys.readouterr().err


def _supervise_children_running(monkeypatch: pytest.MonkeyPatch, code: str, *, stop: bool) -> int:
    """`_supervise` over 2 stand-in children running `code`; SIGTERM to it if `stop`."""
    real_popen = subprocess.Popen
    monkeypatch.setattr(
        server.subprocess, "Popen", lambda _argv: real_popen([sys.executable, "-c", code])
    )
    before = signal.getsignal(signal.SIGTERM)

    def stop_once_supervising() -> None:
        deadline = time.monotonic() + 30
        while signal.getsignal(signal.SIGTERM) is before and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    if stop:
        threading.Thread(target=stop_once_supervising, daemon=True).start()
    args = cli.build_parser().parse_args(["serve", "--port", "1", "--workers", "2"])
    return server._supervise(args, seeds.settings())


def test_a_stop_that_reaches_children_still_starting_is_clean(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A child SIGTERM finds before it has its handlers (so before it listens) dies of it."""
    assert _supervise_children_running(monkeypatch, "import time; time.sleep(60)", stop=True) == 0
    assert capsys.readouterr().err == ""


def test_a_child_that_exits_on_its_own_fails_the_supervisor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _supervise_children_running(monkeypatch, "raise SystemExit(3)", stop=False) == 1
    assert "producer processes exited (3" in capsys.readouterr().err  # the other: 3 or stopped


def test_zero_workers_is_refused_before_kafka_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "probe", lambda *a: pytest.fail("asked Kafka"))
    args = cli.build_parser().parse_args(["serve", "--port", "1", "--workers", "0"])
    with pytest.raises(ConfigError, match="--workers"):
        server.serve_command(args, seeds.settings())


@pytest.mark.parametrize("value", ["0", "2147483648", "3000000000"])
def test_a_publish_timeout_librdkafka_cannot_take_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv("PUBLISH_TIMEOUT_MS", value)
    assert cli.main(["serve", "--port", "1"]) == 2
    assert "PUBLISH_TIMEOUT_MS" in capsys.readouterr().err.upper()
