"""The consumer group `PROCESSOR_APP_ID` is held by one engine at a time.

Faust's workers join the group with the assignor "faust", the kafka engine's with
librdkafka's ("range"). The broker refuses a member whose protocol the group's
members do not share (INCONSISTENT_GROUP_PROTOCOL), and neither client gives up:
a worker of the other engine would stay up, processing nothing, forever. So a
worker checks the group before it joins. A member of the other engine may be on
its way out (one that crashed stays a member until its session times out), so the
check waits a while before it refuses to start.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from plumbing.settings import ConfigError

__all__ = [
    "FAUST_ASSIGNOR",
    "KAFKA_ENGINE_ASSIGNORS",
    "GroupHeldByOtherEngine",
    "held_by",
    "held_by_other_engine",
    "patience_s",
    "wait_for_group",
]

log = logging.getLogger("livewindows.worker")

FAUST_ASSIGNOR = "faust"
# librdkafka's default partition.assignment.strategy, which the kafka engine keeps.
KAFKA_ENGINE_ASSIGNORS = ("range", "roundrobin")


class GroupHeldByOtherEngine(ConfigError):
    """Members the worker cannot join hold its consumer group: the other engine's
    workers, or (the kafka engine's join refused) consumers that are neither's."""

    def __init__(self, group_id: str, engine: str, assignor: str) -> None:
        other = "faust" if engine == "kafka" else "kafka"
        ours = assignor == FAUST_ASSIGNOR or assignor in KAFKA_ENGINE_ASSIGNORS
        if ours or not assignor:
            holders = f"workers of the {other} engine (assignor {assignor!r})"
            reason = "the two engines cannot share a group"
            remedy = "stop those workers first"
        else:
            holders = f"consumers with assignor {assignor!r}, not livewindows workers"
            reason = f"the {engine} engine cannot join them"
            remedy = "stop those consumers first"
        super().__init__(
            f"consumer group {group_id} (PROCESSOR_APP_ID) is held by {holders}; "
            f"{reason}: {remedy}, or use another PROCESSOR_APP_ID"
        )


def patience_s(session_timeout_ms: int) -> float:
    """How long the other engine may hold the group: a crashed member of it leaves
    when its session times out (the deployment's PROCESSOR_SESSION_TIMEOUT_MS)."""
    return 2 * session_timeout_ms / 1000 + 5


def held_by_other_engine(engine: str, assignor: str) -> bool:
    """Whether a group whose members chose `assignor` is run by the engine other than `engine`."""
    if not assignor:  # no members, or none has chosen yet
        return False
    return (assignor == FAUST_ASSIGNOR) != (engine == "faust")


def wait_for_group(admin: AdminClient, group_id: str, engine: str, patience_s: float) -> None:
    """Return once the group is free of the other engine; raise if it is not within `patience_s`."""
    deadline = time.monotonic() + patience_s
    warned = False
    while True:
        assignor = held_by(admin, group_id)
        if not held_by_other_engine(engine, assignor):
            return
        if time.monotonic() >= deadline:
            raise GroupHeldByOtherEngine(group_id, engine, assignor)
        if not warned:
            log.warning(
                "consumer group %s is held by the other engine (assignor %r); waiting up to "
                "%.0f s for its workers to leave",
                group_id,
                assignor,
                patience_s,
            )
            warned = True
        time.sleep(1.0)


def held_by(admin: AdminClient, group_id: str) -> str:
    """The assignor of the group's members ("" if none, or the group cannot be described)."""
    try:
        described = admin.describe_consumer_groups([group_id])[group_id].result(10)
    except (KafkaException, TimeoutError) as exc:
        # Not knowing is no reason to refuse: the join itself will tell.
        log.warning("could not describe consumer group %s: %s", group_id, exc)
        return ""
    return str(described.partition_assignor or "") if described.members else ""
