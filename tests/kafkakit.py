"""Helpers for integration tests against the real session broker."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from livewindows.kafka.launcher import CONTROLLER_PORT_OFFSET, free_ports, port_free
from plumbing.clients import writer_config
from processor.codec import DecodeError, decode, encode_tick
from processor.windows import Config, PartitionState, WindowRecord, process
from schemas.records import Event
from schemas.timestamps import format_ms


def port_with_controller_port(nodes: int = 1) -> int:
    """A free port P such that the CLI's ports for `nodes` nodes, P ... P + nodes - 1
    and their controllers' P + 100 ..., are free too.

    Below the kernel's ephemeral range when it leaves room: a client that connects
    to a node while it is down may be given the node's own port as its local port
    (a TCP self-connect: an established connection to itself, which librdkafka keeps
    retrying), and the node cannot bind its port again when it is restarted. A test
    that kills and restarts nodes saw it within a minute with ports the kernel chose.
    """
    low, high = _below_ephemeral_range(nodes)
    for attempt in range(200):
        port = random.randrange(low, high) if high > low and attempt < 150 else free_ports(1)[0]
        wanted = [
            p + offset for p in range(port, port + nodes) for offset in (0, CONTROLLER_PORT_OFFSET)
        ]
        if max(wanted) <= 65535 and all(port_free(p) for p in wanted):
            return port
    raise AssertionError("no free ports for the CLI's cluster")


def _below_ephemeral_range(nodes: int) -> tuple[int, int]:
    """[low, high) of the ports P to choose from, below the ephemeral range of Linux."""
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768  # Linux's default
    return 20000, first - CONTROLLER_PORT_OFFSET - nodes


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


def read_all(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[Read]:
    """Every record of `topic` up to its current end, in (partition, offset) order."""
    # read_committed (librdkafka's default), as billing reads: records of aborted
    # transactions are skipped, and a topic written in transactions ends with a
    # commit marker, not a record, hence the end-of-partition events.
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "kafkakit",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        assignment = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, low))
        records: list[Read] = []
        if not assignment:
            return records
        consumer.assign(assignment)
        import time

        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        ends.pop(message.partition() or 0, None)
                    continue
                p, offset = message.partition(), message.offset()
                assert p is not None and offset is not None
                records.append(
                    Read(p, offset, message.key(), message.value(), message.headers() or [])
                )
                if p in ends and offset >= ends[p] - 1:
                    del ends[p]
        assert not ends, f"could not read {topic} to its end: {ends}"
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def core_windows(
    bootstrap: str, events_topic: str, config: Config, below: Mapping[int, int] | None = None
) -> list[dict[str, object]]:
    """What the pure core makes of the events topic as it stands, or of each partition's
    records below the offset `below` gives for it: the reference output."""
    return core_windows_of(read_all(bootstrap, events_topic), config, below)


def core_windows_of(
    records: list[Read], config: Config, below: Mapping[int, int] | None = None
) -> list[dict[str, object]]:
    """`core_windows` of events records already read."""
    states: dict[int, PartitionState] = defaultdict(PartitionState)
    windows: list[dict[str, object]] = []
    for record in records:
        if below is not None and record.offset >= below.get(record.partition, 0):
            continue
        try:
            decoded = decode(record.key, record.value)
        except DecodeError:
            continue
        states[record.partition], outputs = process(states[record.partition], decoded, config)
        windows.extend(o.to_dict() for o in outputs if isinstance(o, WindowRecord))
    return windows


def window_records(bootstrap: str, topic: str) -> list[dict[str, object]]:
    return [orjson.loads(r.value) for r in read_all(bootstrap, topic) if r.value]


def reconnect_window_headers(
    bootstrap: str, topic: str
) -> tuple[dict[str, bytes | None], dict[str, bytes | None]]:
    """The headers of a windows topic that holds one window, opened then closed by a
    reconnect (asserted), as (opened's, closed's)."""
    written = [(orjson.loads(r.value or b""), dict(r.headers)) for r in read_all(bootstrap, topic)]
    assert [(w["type"], w["close_reason"]) for w, _ in written] == [
        ("window.opened", None),
        ("window.closed", "reconnected"),
    ]
    (_, opened), (_, closed) = written
    return opened, closed


def by_identity(windows: list[dict[str, object]]) -> set[tuple[str, str]]:
    """Windows as a set of (window_id + type, content): equal sets mean equal windows."""
    return {
        (f"{w['window_id']}:{w['type']}", orjson.dumps(w, option=orjson.OPT_SORT_KEYS).decode())
        for w in windows
    }


def event_value(
    event_id: str,
    kind: str,
    occurred_ms: int,
    received_ms: int | None = None,
    *,
    input_id: str = "in1",
    provider: str = "cloudflare",
    reconnect_window_s: int | None = None,
) -> tuple[bytes, bytes]:
    """(key, value) of an event record as the producer writes it."""
    event = Event.model_validate(
        {
            "schema": "livewindows/event/v1",
            "event_id": event_id,
            "provider": provider,
            "input_id": input_id,
            "kind": kind,
            "provider_event_type": f"test.{kind}",
            "occurred_at": format_ms(occurred_ms),
            "received_at": format_ms(occurred_ms if received_ms is None else received_ms),
            "reconnect_window_s": reconnect_window_s,
            "payload": {"test": True},
        }
    )
    return event.key.encode(), orjson.dumps(event.model_dump(by_alias=True))


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Write (key, value) records as every livewindows writer does (`writer_config`: a key
    lands where the producer would put it); ticks (key __tick__) go to every partition."""
    producer = Producer(writer_config(bootstrap))
    partitions = None
    for key, value in records:
        if key == b"__tick__":
            if partitions is None:
                partitions = producer.list_topics(topic, timeout=10).topics[topic].partitions
            for p in partitions:
                producer.produce(topic, value=value, key=key, partition=p)
        else:
            producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


def tick_value(received_ms: int) -> tuple[bytes, bytes]:
    return encode_tick(received_ms)
