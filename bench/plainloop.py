"""The Python ceiling of the processor: a plain confluent-kafka loop around the same core.

`python -m bench.plainloop SPEC.json OUT.json` reads every partition of the events
topic from the beginning up to the end offsets it sees at start, decodes each
record (`processor.codec`), runs `processor.windows.process` and produces the
window records (acks=all, idempotent), with no state store and no commits: what
any worker must at least do per record.

With `"decode_only": true` it stops after decoding, and with `"consume_only": true`
after fetching, which splits the cost between Kafka, decoding and the core.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition


def consumer_config(bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-plainloop-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 52_428_800,
        "queued.max.messages.kbytes": 262_144,
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from processor.codec import DecodeError, decode, encode_window
    from processor.windows import Config, PartitionState, WindowRecord, process

    bootstrap, topic = spec["bootstrap"], spec["topic"]
    config = Config(spec["grace_ms"], spec["reconnect_window_s"])
    consumer = Consumer(consumer_config(bootstrap))
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.size": 1_000_000,
        }
    )
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            failures.append(error)

    out_topic = spec.get("output_topic")
    consume_only = bool(spec.get("consume_only"))
    decode_only = bool(spec.get("decode_only"))
    ends: dict[int, int] = {}
    assignment = []
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = high
            assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING))
    states = {p: PartitionState() for p in ends}
    records = windows = undecodable = 0
    started = time.monotonic()
    consumer.assign(assignment)
    cpu_before = os.times()
    while ends:
        for message in consumer.consume(num_messages=2000, timeout=0.5):
            if message.error() is not None:
                continue
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None
            end = ends.get(partition)
            if end is None or offset >= end:
                continue
            records += 1
            if not consume_only:
                try:
                    record = decode(message.key(), message.value())
                except DecodeError:
                    undecodable += 1
                else:
                    if not decode_only:
                        states[partition], outputs = process(states[partition], record, config)
                        for out in outputs:
                            if isinstance(out, WindowRecord):
                                windows += 1
                                if out_topic:
                                    key, value = encode_window(out)
                                    _produce(producer, out_topic, key, value, delivered)
            if offset >= end - 1:
                del ends[partition]
        producer.poll(0)
    left = producer.flush(60)
    seconds = time.monotonic() - started
    cpu_after = os.times()
    consumer.close()
    if left or failures:
        raise RuntimeError(f"{left} window records not delivered; errors {failures[:3]}")
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return {
        "records": records,
        "windows": windows,
        "undecodable": undecodable,
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds, 1) if seconds > 0 else 0.0,
        "cpu_share_of_one_core": round(cpu / seconds, 3) if seconds > 0 else 0.0,
    }


def _produce(producer: Producer, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.05)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(json.dumps(run(spec), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
