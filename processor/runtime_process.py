"""The Faust engine's runtime, in a process of its own.

Why a process: a Faust worker is bound by one interpreter lock. Faust's own work
per event (fetch, deserialize, build the event, stream it, ack it: a bare agent's
~85 µs on the 2-core bench machine) and the runtime's (the core, the encoding,
the produce calls: about as much again) took turns on one core, so the worker ran
at half a bare agent's rate. In a child process the runtime runs a batch on the
other core while Faust takes in the next one.

Why it changes nothing: the child does nothing on its own. It holds the runtime
the engine's thread used to hold and runs the engine's calls one at a time, in
the order made, and the engine waits for each answer before it acks or seeks, as
it waited for the thread. So the runtime sees the same calls, and the crash
argument of `processor.runtime` holds as it is. The two die together: the child
gets SIGKILL when the parent dies (`die_with_parent`), and a transaction it had
open is then ended by the next owner's fence, as after any crash; when the child
dies, the engine's call fails and the engine exits 70, acking nothing more.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import Consumer

from plumbing.clients import reader_config
from plumbing.logs import configure_logging
from plumbing.processes import collect_young_garbage_less_often, die_with_parent, exit_now
from plumbing.settings import Settings
from plumbing.tracing import configure_tracing
from processor.counts import Counts
from processor.gauges import EndOffset, PartitionGauges, partition_gauges
from processor.restore import ChangelogConsumer, EventsWatermarks
from processor.runner import Fetched
from processor.runtime import Rewind, Runtime
from processor.tracing import BatchTracer
from processor.transactions import (
    LIBRARY_LOG,
    PartitionWriter,
    Transactions,
    destinations,
    producer_config,
)
from processor.windows import Config

__all__ = ["RuntimeProcess", "faust_runtime"]

T = TypeVar("T")


def faust_runtime(settings: Settings) -> Runtime:
    """The Faust engine's runtime: a transactional producer per owned partition,
    whose `transactional.id` lets a new owner of the partition fence a stalled one."""
    bootstrap = settings.kafka_bootstrap_servers
    topics = destinations(settings)
    app_id = settings.processor_app_id
    events = settings.events_topic

    def transactions(partition: int) -> Transactions:
        txn_id = f"{app_id}-faust-{partition}"
        return Transactions(producer_config(bootstrap, txn_id), topics, _never)

    offsets = Consumer(reader_config(bootstrap, f"{app_id}-offsets", LIBRARY_LOG))
    tracing = configure_tracing("livewindows-worker")
    return Runtime(
        Config(settings.window_grace_ms, settings.reconnect_window_s),
        events,
        ChangelogConsumer(bootstrap, topics["changelog"], LIBRARY_LOG),
        EventsWatermarks(offsets, events, bootstrap, LIBRARY_LOG),
        PartitionWriter(transactions),
        None if tracing is None else BatchTracer(tracing, events),
    )


class RuntimeProcess:
    """The runtime's calls, made in the child; what the engine reads of it, kept here.

    `next_offsets` (each owned partition's position) and `counts` are as the last
    call left them. Calls block; the engine makes them one at a time.
    """

    def __init__(self, settings: Settings) -> None:
        self._pool = ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(settings, os.getpid()),
        )
        self.next_offsets: dict[int, int] = {}
        self.counts = Counts()
        self._closed = False
        # Started here, by the thread that makes the engine (Faust's main thread),
        # which lives as long as the process: `die_with_parent` watches that thread.
        self._call(_start_now)

    def assign(self, partitions: Sequence[int]) -> dict[int, int]:
        return self._call(_assign, list(partitions))

    def revoke(self, partitions: Iterable[int]) -> None:
        self._call(_revoke, list(partitions))

    def skip_deleted(self, partition: int, offset: int) -> bool:
        return self._call(_skip_deleted, partition, offset)

    def handle(self, fetched: Mapping[int, Sequence[Fetched]]) -> Rewind | None:
        return self._call(_handle, dict(fetched))

    def count_rewind(self) -> None:
        self._call(_count_rewind)

    def gauges(self, end_offset: EndOffset, now_ms: int) -> list[PartitionGauges]:
        """The owned partitions' gauges (`processor.gauges`), for a scrape."""
        if self._closed:
            return []  # stopping: no partition is owned any more
        ends = {partition: end_offset(partition) for partition in list(self.next_offsets)}
        return self._pool.submit(_gauges, ends, now_ms).result()

    def close(self) -> None:
        """Stop the child after the calls made so far (its spans are exported as it exits)."""
        self._closed = True
        self._pool.shutdown(wait=True)

    def _call(self, fun: Callable[..., tuple[T, dict[int, int], Counts]], *args: Any) -> T:
        result, self.next_offsets, self.counts = self._pool.submit(fun, *args).result()
        return result


# --- in the child ---------------------------------------------------------------

_runtime: Runtime | None = None


def _start(settings: Settings, parent: int) -> None:
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the line above
        exit_now(0)
    # The parent stops it (a Ctrl-C reaches the whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(service="worker", level=logging.WARNING, own_level=logging.INFO)
    collect_young_garbage_less_often()
    global _runtime
    _runtime = faust_runtime(settings)


def _the_runtime() -> Runtime:
    assert _runtime is not None, "the runtime process was not started"
    return _runtime


def _answer(result: T) -> tuple[T, dict[int, int], Counts]:
    runtime = _the_runtime()
    positions = {partition: runner.next_offset for partition, runner in runtime.parts.items()}
    return result, positions, runtime.counts


def _start_now() -> tuple[None, dict[int, int], Counts]:
    """A first call: the pool starts its process at its first call."""
    return _answer(None)


def _assign(partitions: list[int]) -> tuple[dict[int, int], dict[int, int], Counts]:
    return _answer(_the_runtime().assign(partitions))


def _revoke(partitions: list[int]) -> tuple[None, dict[int, int], Counts]:
    _the_runtime().revoke(partitions)
    return _answer(None)


def _skip_deleted(partition: int, offset: int) -> tuple[bool, dict[int, int], Counts]:
    return _answer(_the_runtime().skip_deleted(partition, offset))


def _handle(
    fetched: dict[int, list[Fetched]],
) -> tuple[Rewind | None, dict[int, int], Counts]:
    return _answer(_the_runtime().handle(fetched))


def _count_rewind() -> tuple[None, dict[int, int], Counts]:
    _the_runtime().counts.rewinds += 1
    return _answer(None)


def _gauges(ends: dict[int, int | None], now_ms: int) -> list[PartitionGauges]:
    return partition_gauges(_the_runtime().parts, ends.get, now_ms)


def _never() -> bool:
    return False
