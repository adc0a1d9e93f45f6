"""`RepeatedLines`: a library's repeated line once per interval, with what was held back."""

from __future__ import annotations

import logging

import pytest

from plumbing.logs import RepeatedLines


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(
    name: str, message: str, *args: object, level: int = logging.ERROR
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args or None, None)


def test_a_repeated_library_line_passes_once_per_interval_with_the_count_held_back() -> None:
    clock = _Clock()
    lines = RepeatedLines(10.0, clock=clock)
    assert lines.filter(_record("aiokafka", "Unable to connect to node %s", 0))
    held = [lines.filter(_record("aiokafka", "Unable to connect to node %s", 0)) for _ in range(50)]
    assert not any(held)
    clock.now += 10.0
    again = _record("aiokafka", "Unable to connect to node %s", 0)
    assert lines.filter(again)
    assert again.getMessage() == (
        "Unable to connect to node 0 (+50 identical lines held back since it last showed)"
    )
    clock.now += 10.0
    quiet = _record("aiokafka", "Unable to connect to node %s", 0)
    assert lines.filter(quiet) and quiet.getMessage() == "Unable to connect to node 0"


def test_lines_differing_in_text_logger_or_level_are_separate() -> None:
    lines = RepeatedLines(10.0, clock=_Clock())
    assert lines.filter(_record("aiokafka", "node 0 down"))
    assert lines.filter(_record("aiokafka", "node 1 down"))
    assert lines.filter(_record("aiokafka.consumer", "node 0 down"))
    assert lines.filter(_record("aiokafka", "node 0 down", level=logging.WARNING))
    assert not lines.filter(_record("aiokafka", "node 0 down"))


def test_librdkafka_connect_failures_differing_only_in_timing_are_one_line() -> None:
    lines = RepeatedLines(10.0, clock=_Clock())
    fail = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
    assert lines.filter(_record("x.librdkafka", f"{fail} (after 0ms in state CONNECT)"))
    assert not lines.filter(_record("x.librdkafka", f"{fail} (after 3ms in state CONNECT)"))
    suppressed = f"{fail} (after 1ms in state CONNECT, 4 identical error(s) suppressed)"
    assert not lines.filter(_record("x.librdkafka", suppressed))
    other_state = f"{fail} (after 0ms in state APIVERSION_QUERY)"
    assert lines.filter(_record("x.librdkafka", other_state))


@pytest.mark.parametrize("name", ["livewindows", "livewindows.worker", "livewindows.producer.http"])
def test_livewindows_own_lines_always_pass(name: str) -> None:
    lines = RepeatedLines(10.0, clock=_Clock())
    assert all(lines.filter(_record(name, "partition 0: state restored")) for _ in range(5))


def test_librdkafka_lines_under_livewindows_names_are_filtered() -> None:
    lines = RepeatedLines(10.0, clock=_Clock())
    assert lines.filter(_record("livewindows.worker.librdkafka", "FAIL broker down"))
    assert not lines.filter(_record("livewindows.worker.librdkafka", "FAIL broker down"))


def test_memory_is_bounded() -> None:
    lines = RepeatedLines(10.0, clock=_Clock(), max_kept=100)
    for n in range(1000):
        assert lines.filter(_record("aiokafka", f"line {n}"))
    assert len(lines._seen) <= 100
