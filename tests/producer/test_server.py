"""`livewindows serve` refuses to start open or without Kafka (SPEC §2, §6)."""

from __future__ import annotations

import time

import pytest

from livewindows import cli
from livewindows.settings import ConfigError
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
