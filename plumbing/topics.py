"""`livewindows topics create`: the four topics of SPEC §4, created idempotently."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from plumbing.clients import admin_config
from plumbing.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

REACH_TIMEOUT_S = 10.0
_POLL_S = 0.1

log = logging.getLogger("livewindows.topics")


class TopicsError(Exception):
    """Topics could not be created: a one-line message for the operator."""


def reach(bootstrap: str, timeout_s: float = REACH_TIMEOUT_S) -> set[str]:
    """The topics of a Kafka that answers within `timeout_s`, else `TopicsError`.

    For commands to check first: their own clients would retry an unreachable
    broker without end, logging every attempt.
    """
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(admin_config(bootstrap))
    return _topic_names(admin, bootstrap, timeout_s)


def _topic_names(admin: AdminClient, bootstrap: str, timeout_s: float) -> set[str]:
    from confluent_kafka import KafkaException

    try:
        return set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException:
        raise TopicsError(f"cannot reach Kafka at {bootstrap} within {timeout_s:.0f} s") from None


MIN_INSYNC = "min.insync.replicas"


def topic_config(replication: int, config: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings a topic with `replication` replicas is created with: `config`, plus
    `min.insync.replicas` by the rule below unless `config` names it.

    Every writer asks for acks=all (the producer's 202, the kafka engine's
    transactions), which waits for the replicas in sync, however few remain; this
    setting is how few may remain before writes are refused.

    - 3 or more replicas: 2. An acknowledged record is on two nodes, and a cluster
      keeps taking writes with one node down.
    - 2 replicas: 1. With 2, either node down would stop every write to the topic,
      which makes two nodes less available than one. With 1, a record is on both
      nodes while both are in sync and on the leader alone only while the other is
      down or behind; as unclean leader election stays off, losing that leader then
      makes the partition unavailable until it returns, it does not lose the record
      (unless its disk is lost). Use three nodes for both availability and a second
      copy of every acknowledged record.
    - 1 replica: nothing is set (1, the broker's default, is the only value that works).
    """
    settings = dict(config or {})
    if replication >= 3:
        settings.setdefault(MIN_INSYNC, "2")
    elif replication == 2:
        settings.setdefault(MIN_INSYNC, "1")
    return settings


def ensure_topics(
    bootstrap: str,
    names: Sequence[str],
    partitions: int,
    replication: int,
    config: Mapping[str, str] | None = None,
    *,
    timeout_s: float = REACH_TIMEOUT_S,
) -> dict[str, bool]:
    """Create the missing topics of `names` with `topic_config(replication, config)`;
    {name: True if this call created it, False if it existed}.

    Safe to call from several processes at once for the same new topic (workers
    starting together): a topic another caller created first counts as existing.
    Returns only once the metadata shows every topic with all its partitions and a
    leader for each, so a client may produce to them, or count their partitions, at
    once; `TopicsError` if that takes longer than `timeout_s`. A topic that exists
    is left as it is (its settings included).
    """
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(admin_config(bootstrap))
    deadline = time.monotonic() + timeout_s
    existing = _topic_names(admin, bootstrap, timeout_s)
    created = {name: name not in existing for name in names}
    wanted = [name for name, new in created.items() if new]
    if wanted:
        settings = topic_config(replication, config)
        for name in _create(admin, wanted, partitions, replication, settings, deadline):
            created[name] = False  # a concurrent creator won the race
    expected = {name: partitions for name, new in created.items() if new}
    _wait_for_leaders(admin, list(names), expected, timeout_s, deadline)
    return created


def _create(
    admin: AdminClient,
    names: list[str],
    partitions: int,
    replication: int,
    settings: dict[str, str],
    deadline: float,
) -> list[str]:
    """Create `names`; the ones that existed already. A retriable error (no
    controller yet on a fresh cluster, a timeout) is retried until `deadline`."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    existed: list[str] = []
    pending = list(names)
    while pending:
        remaining_s = max(1.0, deadline - time.monotonic())
        topics = [
            NewTopic(
                name, num_partitions=partitions, replication_factor=replication, config=settings
            )
            for name in pending
        ]
        futures = admin.create_topics(topics, request_timeout=remaining_s)
        retry: list[str] = []
        for name, future in futures.items():
            try:
                future.result(timeout=remaining_s * 3)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    existed.append(name)
                elif error.retriable() and time.monotonic() < deadline:
                    retry.append(name)
                else:
                    raise TopicsError(f"cannot create topic {name}: {error.str()}") from None
            except Exception as exc:  # a future that timed out
                raise TopicsError(f"cannot create topic {name}: {exc}") from None
        if retry:
            time.sleep(_POLL_S)
        pending = retry
    return existed


def adopt_topic_config(
    bootstrap: str, topic: str, config: Mapping[str, str], *, timeout_s: float = 30.0
) -> dict[str, str]:
    """Give an existing topic the settings of `config` it only has from the broker's
    defaults; returns what was set.

    For a topic created before `config` was given to `ensure_topics` (a changelog
    with Kafka's 1 GiB segments, which compaction never reaches). A setting made on
    the topic itself is the operator's, and stays. A topic that does not exist yet
    is left to its creator. Failing to read or alter (an ACL, say) is a warning,
    never a reason not to start.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ConfigSource,
        ResourceType,
    )

    admin = AdminClient(admin_config(bootstrap))
    resource = ConfigResource(ResourceType.TOPIC, topic)
    try:
        entries = admin.describe_configs([resource])[resource].result(timeout_s)
        wanted = {
            name: value
            for name, value in config.items()
            if name in entries
            and entries[name].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
            and entries[name].value != value
        }
        if wanted:
            changes = [
                ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
                for name, value in wanted.items()
            ]
            altered = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=changes)
            for future in admin.incremental_alter_configs([altered]).values():
                future.result(timeout_s)
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return {}  # not created yet: whoever creates it gives it `config`
        log.warning("topic %s: could not check or update its settings: %s", topic, exc)
        return {}
    if wanted:
        log.info(
            "topic %s: set %s (it had the broker's defaults)",
            topic,
            ", ".join(f"{name}={value}" for name, value in wanted.items()),
        )
    return wanted


def _wait_for_leaders(
    admin: AdminClient,
    names: list[str],
    expected: Mapping[str, int],
    timeout_s: float,
    deadline: float,
) -> None:
    """Until the metadata shows each of `names` with its partitions (`expected[name]`
    of them where known) and a leader for each; `TopicsError` after `deadline`.

    A broker learns of a new topic from the controller's metadata log, a moment
    after the create is acknowledged: until then it answers with no partitions.
    """
    from confluent_kafka import KafkaException

    while True:
        try:
            topics = admin.list_topics(timeout=max(1.0, deadline - time.monotonic())).topics
        except KafkaException:
            topics = {}
        pending = [
            name
            for name in names
            if name not in topics
            or topics[name].error is not None
            or not topics[name].partitions
            or len(topics[name].partitions) < expected.get(name, 0)
            or any(p.leader < 0 for p in topics[name].partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TopicsError(
                f"topics without a leader for every partition after {timeout_s:.0f} s: {pending}"
            )
        time.sleep(_POLL_S)


def create_command(args: argparse.Namespace, settings: Settings) -> int:
    """Create the events, windows, late and DLQ topics; existing ones are reported."""
    bootstrap = settings.kafka_bootstrap_servers
    try:
        created = ensure_topics(
            bootstrap,
            settings.topics,
            settings.topic_partitions,
            settings.topic_replication,
            timeout_s=REACH_TIMEOUT_S,
        )
    except TopicsError as exc:
        print(f"livewindows: {exc}", file=sys.stderr)
        return 1
    for name, new in created.items():
        if new:
            print(
                f"created {name} ({settings.topic_partitions} partitions, "
                f"replication {settings.topic_replication})"
            )
        else:
            print(f"exists  {name}")
    return 0
