"""Process helpers shared by the services and the command line."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

__all__ = ["FATAL_EXIT_CODE", "die_with_parent", "exit_now"]

_PR_SET_PDEATHSIG = 1
# An unexpected error: the process stops at once, as after a crash (EX_SOFTWARE).
FATAL_EXIT_CODE = 70


def die_with_parent() -> None:
    """`preexec_fn`: the child gets SIGKILL when the thread that started it dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def exit_now(code: int) -> None:
    """End the process without waiting for the Kafka clients (they may be stuck on an
    unreachable broker), after the log lines so far are out."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)
