"""Ticks: wall-clock time written into the events topic, one clock per partition.

Each worker ticks the events partitions it owns (SPEC §4), so the group as a
whole ticks every partition, each with one clock. Ticks are input, not output:
written outside the batches' transactions, like webhooks. A lost tick only
delays the windows the next one closes, so nothing waits for their acks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, Message, Producer

from plumbing.clients import writer_config
from processor.codec import encode_tick

__all__ = ["Ticker"]

log = logging.getLogger("livewindows.worker")


class Ticker:
    def __init__(self, bootstrap: str, topic: str, logger: logging.Logger) -> None:
        self._topic = topic
        self._producer = Producer(writer_config(bootstrap, logger))

    def tick(self, partitions: Iterable[int]) -> None:
        """A tick of the wall clock to each of `partitions`."""
        key, value = encode_tick(int(time.time() * 1000))
        for partition in partitions:
            try:
                self._producer.produce(
                    self._topic, value=value, key=key, partition=partition, on_delivery=_sent
                )
            except BufferError:
                log.warning("tick not written: the producer's queue is full")
                break
        self._producer.poll(0)

    def close(self) -> None:
        self._producer.flush(5)


def _sent(error: KafkaError | None, _message: Message) -> None:
    if error is not None:
        log.warning("tick not written: %s", error.str())
