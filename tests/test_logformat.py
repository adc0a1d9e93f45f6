"""`LOG_FORMAT`: one setup for every command, text by default, JSON lines on request."""

from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from livewindows import cli
from plumbing.logs import LOG_FORMAT_ENV, Fields, log_handler, record_fields
from plumbing.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own, not propagating to pytest's handlers."""
    logger = logging.getLogger("livewindows.test_logformat")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.handlers.clear()
    logger.propagate = True


def _lines(logger: logging.Logger, log_format: Any, service: str = "worker") -> io.StringIO:
    stream = io.StringIO()
    logger.addHandler(log_handler(log_format, service=service, stream=stream))
    return stream


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_the_documented_keys_and_the_record_fields(
    logger: logging.Logger,
) -> None:
    stream = _lines(logger, "json")
    where = record_fields(event_id="e1", input_id="in1", partition=3, offset=1234)
    logger.warning("sent %s to the DLQ", "e1", extra=where)
    (line,) = _json_lines(stream)
    assert line["time"].endswith("+00:00") and line["time"][10] == "T"
    assert {k: v for k, v in line.items() if k != "time"} == {
        "level": "WARNING",
        "logger": "livewindows.test_logformat",
        "service": "worker",
        "message": "sent e1 to the DLQ",
        "event_id": "e1",
        "input_id": "in1",
        "partition": 3,
        "offset": 1234,
    }


def test_record_fields_leave_out_what_is_not_known() -> None:
    assert record_fields(partition=0, offset=0) == {"partition": 0, "offset": 0}
    assert record_fields() == {}


def test_a_traceback_stays_inside_its_one_json_line(logger: logging.Logger) -> None:
    stream = _lines(logger, "json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("unexpected error")
    (line,) = _json_lines(stream)  # the traceback's newlines are escaped
    assert line["message"] == "unexpected error"
    assert "RuntimeError: boom" in line["exc_info"]


def test_fields_read_as_a_json_object_in_text_and_as_top_level_keys_in_json(
    logger: logging.Logger,
) -> None:
    text, json = _lines(logger, "text"), _lines(logger, "json", service="producer")
    logger.warning(Fields("request", {"status": 401, "event_id": None, "route": "/x/{token}"}))
    expected = '{"status":401,"event_id":null,"route":"/x/{token}"}'
    assert text.getvalue().endswith(f" WARNING livewindows.test_logformat: {expected}\n")
    (line,) = _json_lines(json)
    assert line["message"] == "request" and line["service"] == "producer"
    assert (line["status"], line["event_id"], line["route"]) == (401, None, "/x/{token}")


def test_repeated_library_lines_are_held_back_in_json_too() -> None:
    library = logging.getLogger("some.library.test_logformat")
    library.propagate = False
    stream = io.StringIO()
    library.addHandler(log_handler("json", service="billing", stream=stream))
    try:
        for _ in range(100):
            library.error("Unable to connect to node 0")
    finally:
        library.handlers.clear()
        library.propagate = True
    assert len(_json_lines(stream)) == 1


@pytest.mark.parametrize("value", ["json", "JSON", " json"])
def test_log_format_json_is_accepted_in_any_case(value: str) -> None:
    assert Settings(log_format=value).log_format == "json"  # type: ignore[arg-type]


def test_log_format_defaults_to_text_and_refuses_other_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    assert load_settings().log_format == "text"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_settings()


def _configured_process(env_format: str | None, *, setup: str) -> list[str]:
    """stderr lines of a process that runs `setup` and logs one line with record fields."""
    code = (
        "import logging\n"
        "from plumbing.logs import configure_logging, record_fields\n"
        f"{setup}\n"
        "logging.getLogger('livewindows.worker').info("
        "'joined', extra=record_fields(partition=1, offset=7))\n"
        "logging.getLogger('some.library').info('not shown: below WARNING')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != LOG_FORMAT_ENV}
    if env_format is not None:
        env[LOG_FORMAT_ENV] = env_format
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stderr.splitlines()


def test_the_worker_setup_takes_the_format_from_the_environment() -> None:
    setup = "configure_logging(service='worker', level=logging.WARNING, own_level=logging.INFO)"
    (line,) = _configured_process("json", setup=setup)
    fields = orjson.loads(line)
    assert (fields["service"], fields["message"], fields["partition"]) == ("worker", "joined", 1)
    (text,) = _configured_process(None, setup=setup)
    assert text.endswith(" INFO livewindows.worker: joined")


def test_given_settings_win_over_the_environment() -> None:
    setup = (
        "from plumbing.settings import Settings\n"
        "configure_logging(Settings(log_format='json'), service='billing', "
        "own_level=logging.INFO)"
    )
    (line,) = _configured_process("text", setup=setup)
    assert orjson.loads(line)["service"] == "billing"


def test_the_command_line_hands_an_env_files_format_to_the_commands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The worker's and replay's setups (and replay's jobs) only see the environment."""
    monkeypatch.delenv(LOG_FORMAT_ENV, raising=False)
    seen: list[str | None] = []

    def billing_command(_args: argparse.Namespace, _settings: Settings) -> int:
        seen.append(os.environ.get(LOG_FORMAT_ENV))
        return 0

    monkeypatch.setattr("livewindows.billing.consumer.billing_command", billing_command)
    env_file = tmp_path / "dev.env"
    env_file.write_text("LOG_FORMAT=json\n")
    assert cli.main(["--env-file", str(env_file), "billing"]) == 0
    assert seen == ["json"]
