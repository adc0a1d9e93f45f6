"""The librdkafka settings every livewindows client starts from, each choice made once.

Callers add what is theirs (a `transactional.id`, a group's session timeout, a
batch size) to the dict these return; what must be the same everywhere is here:
- every writer maps a key to the partition the others do (`KEY_PARTITIONER`);
- every writer is idempotent and waits for all in-sync replicas;
- every reader of a topic that transactions write reads `read_committed`, never
  commits on its own, and starts a group it has no offsets for at the beginning;
- every client logs through `logging` when given a logger (librdkafka would
  otherwise print each failed connection attempt to stderr), or not at all.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = [
    "FETCH_MAX_BYTES",
    "KEY_PARTITIONER",
    "admin_config",
    "reader_config",
    "writer_config",
]

# How every livewindows writer maps a record's key to a partition: the Java
# clients' murmur2, as aiokafka (under Faust) does too. librdkafka's own default,
# consistent_random, hashes keys differently, so without this the producer, the
# two engines and replay would put one key's records on different partitions.
KEY_PARTITIONER = "murmur2_random"

# Readers that catch up on a backlog (restore, replay, the kafka engine) fetch
# up to this much per request: librdkafka's default of 50 MiB, said explicitly.
FETCH_MAX_BYTES = 52_428_800


def _logging(logger: logging.Logger | None) -> dict[str, Any]:
    return {"log_level": 0} if logger is None else {"logger": logger}


def admin_config(bootstrap: str, logger: logging.Logger | None = None) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, **_logging(logger)}


def writer_config(bootstrap: str, logger: logging.Logger | None = None) -> dict[str, Any]:
    """An idempotent producer, acks from all in-sync replicas, keys placed as all place them."""
    return {
        "bootstrap.servers": bootstrap,
        # No duplicates or reordering from internal retries; implies acks=all.
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": KEY_PARTITIONER,
        **_logging(logger),
    }


def reader_config(
    bootstrap: str, group_id: str, logger: logging.Logger | None = None
) -> dict[str, Any]:
    """A consumer that sees committed transactions only and commits nothing by itself."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **_logging(logger),
    }
