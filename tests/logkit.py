"""A logger's lines as a service's JSON handler writes them, for tests of LOG_FORMAT=json."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from plumbing.logs import log_handler


@contextmanager
def json_log(name: str, service: str, level: int) -> Iterator[io.StringIO]:
    """Logger `name` at `level`, through the JSON handler `service` installs, into a buffer."""
    logger = logging.getLogger(name)
    stream = io.StringIO()
    handler = log_handler("json", service=service, stream=stream)
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
