"""The Faust app: the events topic through the window core into the windows topic.

One agent reads the events topic as raw bytes and hands each record to
`processor.shell.Shell`, one at a time, so each partition is processed strictly
in offset order. Core state lives in one RocksDB table (`processor.tables`)
whose changelog has the events topic's partition count, and each partition's
`PartitionState` is rebuilt from it (`PartitionState.restore`) on the first
record after an assignment. A timer writes a tick to each events partition this
worker owns, so the group as a whole ticks every partition, each with one clock.

Crash semantics (a SIGKILL anywhere must not lose or change a window)
---------------------------------------------------------------------
The outputs are a pure function of each partition's records, so it suffices
that a restarted (or rebalanced) worker resumes every partition from a state
the uninterrupted run also went through, at the record that run took next.
For each record r the shell does, in this order:

1. run the core (or, for an undecodable record, nothing);
2. send every window / late / DLQ record and await the broker's ack of each;
3. write the inputs r changed, each tagged with r's offset, then the partition's
   position `{next_offset: r+1, watermark}`, and await the changelog's ack of
   every write (Faust only buffers changelog writes, and its pre-commit flush
   can return early, so the futures are awaited: `StateTable.confirm`);
4. ack r to Faust (by hand: the agent iterates with acks off, so neither an
   error nor a cancellation can ack a half-done record).

The position makes the stored state say exactly which records it contains, so
Faust's committed offset only decides where fetching resumes. Records below
`next_offset` are skipped as done; a record above it means Faust skipped some,
which faust-streaming 0.15.3 does (its fetcher races its own seek at the end of
a recovery, then counts the skipped offsets as committable): the shell seeks
the partition back to `next_offset` and skips the record. Such a skipped record
is acked too: a commit past unprocessed records costs a seek after the next
restart, never a record.

After a crash the changelog holds every write of the records before r and a
prefix of r's writes (one table, so one changelog partition, in write order;
aiokafka keeps a partition's batches in order, retries included):
- nothing of r: r runs again from the same state and re-sends the same records
  (same key, value and timestamp): duplicates, byte-identical;
- some of r's inputs but not its position: the position still names r, the
  stored inputs are in their state after r (past r's watermark, so no release
  at it is due for them), the others in their state before r. If r's own input
  is among the others, r simply runs again. If it was stored, the core calls r a
  duplicate and stops; the shell sees the input's offset tag equal r's offset
  and finishes r with a tick at r's watermark, which releases exactly the inputs
  r would have released (release depends only on an input's state and the
  watermark, and releasing twice at one watermark changes nothing). The outputs
  of the stored inputs went out in step 2, before the crash.
The local RocksDB can be ahead of the changelog after a crash, and Faust's
recovery can replay older values over it; so local tables are trusted only
after a clean stop (`processor.datadir`), otherwise rebuilt from the changelog.
An unexpected error ends the process at once (exit 70) rather than let Faust
carry on past a half-processed record: fail-stop turns every error into the
SIGKILL case above. Outside the argument: a changelog write the broker rejects
for good after it accepted later ones (the worker dies, the changelog has a gap).

`processing_guarantee="exactly_once"` is not used: in faust-streaming 0.15.3 it
is known to crash at start-up (faust-streaming/faust#440), to produce duplicates
after a kill (#517) or a rebalance (#323), and to send outside transactions
(#177); and its local RocksDB keeps writes of aborted transactions. At-least-once
with the ordering above gives the same windows, with identical duplicates that
consumers drop by `window_id`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import faust
from faust.types import TP, AppT, RecordMetadata, StreamT
from mode.supervisors import CrashingSupervisor

from livewindows.settings import Settings
from processor.codec import encode_tick
from processor.datadir import mark_clean, open_data_dir, tables_dir
from processor.shell import Shell
from processor.tables import StateTable
from processor.windows import Config

__all__ = ["FATAL_EXIT_CODE", "create_app"]

log = logging.getLogger("livewindows.worker")

FATAL_EXIT_CODE = 70  # EX_SOFTWARE
_STATS_INTERVAL_S = 30.0


def create_app(
    settings: Settings,
    data_dir: Path,
    *,
    partitions: int | None = None,
) -> faust.App:
    """The worker's Faust app; `partitions` is the events topic's real partition count."""
    partitions = partitions or settings.topic_partitions
    session_timeout_s = settings.processor_session_timeout_ms / 1000
    if open_data_dir(data_dir):
        log.info(
            "%s: local tables were not closed cleanly; rebuilding them from the changelog", data_dir
        )
    app = faust.App(
        settings.processor_app_id,
        # Configuration comes from Settings alone: Faust would otherwise let
        # variables such as TOPIC_PARTITIONS silently override these arguments.
        env={},
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap_servers.split(",")],
        store="rocksdb://",
        datadir=str(data_dir),
        tabledir=str(tables_dir(data_dir)),
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=partitions,
        topic_replication_factor=settings.topic_replication,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=max(0.1, session_timeout_s / 5),
        broker_commit_interval=1.0,
        agent_supervisor=CrashingSupervisor,
        web_enabled=False,
        autodiscover=False,
    )
    events = app.topic(settings.events_topic, key_serializer="raw", value_serializer="raw")
    table = StateTable(app, partitions)
    app.tables.add(table)
    shell = Shell(
        app,
        Config(settings.window_grace_ms, settings.reconnect_window_s),
        table,
        windows=app.topic(settings.windows_topic, key_serializer="raw", value_serializer="raw"),
        late=app.topic(settings.late_topic, key_serializer="raw", value_serializer="raw"),
        dlq=app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw"),
    )

    async def windows(stream: StreamT[bytes]) -> None:
        records = cast(faust.Stream[bytes], stream).noack()  # noack() is not on StreamT
        async for event in records.events():
            try:
                await shell.handle(event.message)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                _die(exc)
            await records.ack(event)

    app.agent(events, name="windows")(windows)

    async def send_ticks() -> None:
        # Handed to the producer, not awaited: a slow broker must not stretch the
        # interval. A lost tick only delays the windows the next one closes.
        key, value = encode_tick(int(time.time() * 1000))
        for tp in sorted(app.assignor.assigned_actives()):
            if tp.topic == settings.events_topic:
                sent = await events.send(key=key, value=value, partition=tp.partition, force=True)
                cast(asyncio.Future[RecordMetadata], sent).add_done_callback(_warn_if_failed)

    app.timer(settings.tick_interval_ms / 1000, name="ticks")(send_ticks)

    last_summary = ""

    async def log_counts() -> None:
        nonlocal last_summary
        summary = shell.counts.summary()
        if summary != last_summary:
            log.info("%s", summary)
            last_summary = summary

    app.timer(_STATS_INTERVAL_S, name="counts")(log_counts)

    # Signal receivers: (sender, *args, signal=..., **kwargs).
    async def on_assigned(sender: AppT, *args: Any, **_: Any) -> None:
        assigned: set[TP] = args[0]
        shell.forget()
        mine = sorted(tp.partition for tp in assigned if tp.topic == settings.events_topic)
        log.info("assigned partitions %s of %s; recovering state", mine, settings.events_topic)

    async def on_revoked(sender: AppT, *args: Any, **_: Any) -> None:
        shell.forget()

    async def on_recovered(sender: AppT, *args: Any, **_: Any) -> None:
        active = sorted(
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == settings.events_topic
        )
        log.info("recovery done; processing partitions %s", active)

    async def on_shutdown(sender: AppT, *args: Any, **_: Any) -> None:
        # Runs after Faust waited for the record in progress and committed.
        await log_counts()
        if not shell.storing and not app.crashed:
            mark_clean(data_dir)

    app.on_partitions_assigned.connect(_receiver(on_assigned))
    app.on_partitions_revoked.connect(_receiver(on_revoked))
    app.on_rebalance_complete.connect(_receiver(on_recovered))
    app.on_before_shutdown.connect(_receiver(on_shutdown))
    return app


def _warn_if_failed(sent: asyncio.Future[RecordMetadata]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        log.warning("tick not written: %r", sent.exception())


def _receiver(fun: Callable[..., Awaitable[None]]) -> Any:
    """A signal receiver, (sender, *args, signal=..., **kwargs): mode types receivers with
    mypy_extensions.NamedArg, which no function definition satisfies."""
    return fun


def _die(exc: BaseException) -> None:
    """Stop the process now, committing nothing more: the SIGKILL case, on purpose."""
    log.critical("fatal error, stopping at once: %r", exc, exc_info=exc)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(FATAL_EXIT_CODE)
