"""`livewindows topics create` and `ensure_topics`."""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

from livewindows.kafka.launcher import free_ports
from plumbing import topics
from plumbing.clients import KEY_PARTITIONER
from plumbing.settings import Settings
from plumbing.topics import MIN_INSYNC, TopicsError, ensure_topics, topic_config
from tests.localkafka import Supervised
from tests.waiting import wait_until


def _settings(bootstrap: str, suffix: str, partitions: int = 3) -> Settings:
    return Settings.model_validate(
        {
            "kafka_bootstrap_servers": bootstrap,
            "events_topic": f"events-{suffix}",
            "windows_topic": f"windows-{suffix}",
            "late_topic": f"late-{suffix}",
            "dlq_topic": f"dlq-{suffix}",
            "topic_partitions": partitions,
        }
    )


def test_create_makes_the_four_topics_once(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(kafka_bootstrap, uuid.uuid4().hex[:8])
    assert topics.create_command(argparse.Namespace(), settings) == 0
    assert capsys.readouterr().out.count("created ") == 4

    assert topics.create_command(argparse.Namespace(), settings) == 0
    assert capsys.readouterr().out.count("exists ") == 4

    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    for name in settings.topics:
        assert len(metadata.topics[name].partitions) == 3


def test_ensure_topics_reports_what_it_created(kafka_bootstrap: str) -> None:
    old, new = f"old-{uuid.uuid4().hex[:8]}", f"new-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(kafka_bootstrap, [old], 1, 1) == {old: True}
    assert ensure_topics(kafka_bootstrap, [old, new], 2, 1, {"retention.ms": "60000"}) == {
        old: False,
        new: True,
    }


def test_impossible_replication_is_one_clear_error(kafka_bootstrap: str) -> None:
    with pytest.raises(TopicsError, match="cannot create topic"):
        ensure_topics(kafka_bootstrap, [f"rf9-{uuid.uuid4().hex[:8]}"], 1, 9)


def test_unreachable_kafka_is_exit_1_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(topics, "REACH_TIMEOUT_S", 1.0)
    (port,) = free_ports(1)
    settings = _settings(f"127.0.0.1:{port}", "x")
    assert topics.create_command(argparse.Namespace(), settings) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"livewindows: cannot reach Kafka at 127.0.0.1:{port} within 1 s\n"


def test_every_writer_puts_a_key_where_faust_would(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    # aiokafka (under Faust) hashes keys with Java's murmur2; so must the producer,
    # both engines' transactional writers and replay, or one input's records land on
    # several partitions.
    from aiokafka.partitioner import DefaultPartitioner

    from processor import replay, transactions
    from producer import publisher

    assert publisher.producer_config(kafka_bootstrap, 5000)["partitioner"] == KEY_PARTITIONER
    assert replay.producer_config(kafka_bootstrap)["partitioner"] == KEY_PARTITIONER
    assert transactions.producer_config(kafka_bootstrap, "t")["partitioner"] == KEY_PARTITIONER
    [topic] = make_topics("partitioner", partitions=6)
    landed: dict[bytes, int] = {}

    def delivered(error: object, message: Message) -> None:
        assert error is None
        landed[message.key()] = message.partition()

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": KEY_PARTITIONER})
    keys = [f"fastpix:input-{i}".encode() for i in range(200)]
    for key in keys:
        producer.produce(topic, b"{}", key, on_delivery=delivered)
    assert producer.flush(30) == 0
    partitions = list(range(6))
    faust_would = DefaultPartitioner()
    assert landed == {key: faust_would(key, partitions, partitions) for key in keys}


def test_min_insync_replicas_follows_the_replication_factor() -> None:
    assert topic_config(1) == {}
    assert topic_config(2) == {MIN_INSYNC: "1"}
    assert topic_config(3, {"retention.ms": "1000"}) == {"retention.ms": "1000", MIN_INSYNC: "2"}
    assert topic_config(5) == {MIN_INSYNC: "2"}
    assert topic_config(3, {MIN_INSYNC: "3"}) == {MIN_INSYNC: "3"}  # the caller's wins


@pytest.fixture
def three_nodes(three_node_cluster: Supervised) -> str:
    """The session's 3-node cluster (the session broker has one node)."""
    return three_node_cluster.bootstrap


def _topic_settings(bootstrap: str, topic: str) -> dict[str, tuple[str | None, int]]:
    """{name: (value, source)} of a topic's settings, as the broker describes them.

    The request goes to any node, and a node learns of a new topic from the
    controller's metadata log a moment after the one that created it (later still
    after the chaos test restarted it): until then it says the topic is unknown."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    described: list[dict[str, tuple[str | None, int]]] = []

    def known() -> bool:
        try:
            entries = admin.describe_configs([resource])[resource].result(10)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            return False
        described.append({name: (entry.value, entry.source) for name, entry in entries.items()})
        return True

    wait_until(known, 30, f"a node that knows topic {topic}")
    return described[0]


@pytest.mark.kafka
def test_topics_create_sets_min_insync_replicas_by_replication_on_three_nodes(
    three_nodes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(three_nodes, uuid.uuid4().hex[:8]).model_copy(
        update={"topic_replication": 3}
    )
    assert topics.create_command(argparse.Namespace(), settings) == 0
    capsys.readouterr()
    for name in settings.topics:
        assert _topic_settings(three_nodes, name)[MIN_INSYNC] == (
            "2",
            ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
        )
    rf2 = f"rf2-{uuid.uuid4().hex[:8]}"
    ensure_topics(three_nodes, [rf2], 2, 2, {"cleanup.policy": "compact"})
    described = _topic_settings(three_nodes, rf2)
    assert described[MIN_INSYNC][0] == "1"
    assert described["cleanup.policy"][0] == "compact"


@pytest.mark.kafka
def test_an_operators_min_insync_replicas_is_kept(three_nodes: str) -> None:
    topic = f"tuned-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(three_nodes, [topic], 1, 3) == {topic: True}
    admin = AdminClient({"bootstrap.servers": three_nodes})
    change = ConfigEntry(MIN_INSYNC, "3", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[change])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(10)
    assert ensure_topics(three_nodes, [topic], 1, 3) == {topic: False}
    assert _topic_settings(three_nodes, topic)[MIN_INSYNC][0] == "3"


@pytest.mark.kafka
def test_concurrent_creators_of_one_new_topic_all_see_every_partition(three_nodes: str) -> None:
    # Workers starting together on a fresh cluster each ensure the same changelog,
    # then read its partition count with a client of their own. ensure_topics returns
    # once its own client's broker shows every partition; another client may ask a
    # broker that learns of the topic a moment later (no partitions yet), so callers
    # wait while they see none (processor.restore.ensure_changelog does), and must
    # then see all of them, never a part.
    topic = f"together-{uuid.uuid4().hex[:8]}"
    callers = 6
    start = threading.Barrier(callers)
    created: list[bool] = []
    seen: list[int] = []
    failures: list[BaseException] = []

    def caller() -> None:
        try:
            start.wait(10)
            created.append(ensure_topics(three_nodes, [topic], 6, 3)[topic])
            consumer = Consumer({"bootstrap.servers": three_nodes, "group.id": "count"})
            try:
                deadline = time.monotonic() + 10
                count = 0
                while not count and time.monotonic() < deadline:
                    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
                    count = len(metadata.partitions)
                    time.sleep(0 if count else 0.05)
                seen.append(count)
            finally:
                consumer.close()
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert sorted(created) == [False] * (callers - 1) + [True]
    assert seen == [6] * callers
