"""Polling helpers for tests that wait on real processes: a deadline, never a fixed sleep."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


def http_ready(base_url: str) -> bool:
    """Whether a producer at `base_url` answers 200 on /readyz."""
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False
