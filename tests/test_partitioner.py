"""`plumbing.partitioner`: the partition every livewindows writer puts a key on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from confluent_kafka import Message, Producer
from hypothesis import given
from hypothesis import strategies as st

from plumbing.partitioner import key_partition, murmur2
from producer.publisher import producer_config


@pytest.mark.parametrize(
    ("data", "java"),
    [  # Kafka's own vectors (UtilsTest.testMurmur2), as Java's signed ints
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_is_kafkas(data: bytes, java: int) -> None:
    assert murmur2(data) == java & 0xFFFFFFFF


@given(st.binary(max_size=64))
def test_murmur2_agrees_with_aiokafka_the_faust_engines_client(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data) & 0xFFFFFFFF


def test_a_partition_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        key_partition(b"k", 0)


def test_the_producer_puts_each_key_on_its_key_partition(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    [topic] = make_topics("partitioner", partitions=7)
    landed: dict[bytes, int] = {}

    def delivered(error: object, message: Message) -> None:
        assert error is None
        landed[message.key()] = message.partition()

    producer = Producer(producer_config(kafka_bootstrap, 10_000))
    keys = [f"gjirafa:input-{i}".encode() for i in range(200)]
    for key in keys:
        producer.produce(topic, b"{}", key, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert landed == {key: key_partition(key, 7) for key in keys}
