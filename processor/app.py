"""The Faust app: the events topic through the window core into the windows topic.

One agent reads the events topic as raw bytes in batches (`take_events`: up to
`BATCH_RECORDS` records, or what came within `BATCH_WITHIN_S`) and hands each
batch to `processor.shell.Shell`, which runs each partition's records through
the core in offset order and stores the batch before the next one starts (group
commit). Core state lives in one RocksDB table (`processor.tables`) whose
changelog has the events topic's partition count, and each partition's
`PartitionState` is rebuilt from it (`PartitionState.restore`) on the first
record after an assignment. A timer writes a tick to each events partition this
worker owns, so the group as a whole ticks every partition, each with one clock.

Crash semantics (a SIGKILL anywhere must not lose or change a window)
---------------------------------------------------------------------
The outputs are a pure function of each partition's records, so it suffices
that a restarted (or rebalanced) worker resumes every partition from a state
the uninterrupted run also went through, at the record that run took next.
For each batch the shell does, per partition p with records [a, b) in it:

1. run the core over [a, b) in memory (an undecodable record: DLQ, no state
   change), handing every window / late / DLQ record to the producer at once;
2. await the broker's ack of every one of those records;
3. write p's WAL `<p>/~wal` = {first_offset a, next_offset b, watermark after b-1,
   changes: the stored value of every input [a, b) changed, its last value}
   (split in parts under Kafka's request limit if it is large, each part naming
   (a, b, parts), so only a WAL with every part stored counts), and await the
   changelog's ack (Faust only buffers changelog writes and never reports a
   failed one, so the futures are awaited: `StateTable.confirm`);
4. write the changed inputs to their own keys, then p's position
   `{next_offset: b, watermark}`, and await their acks;
5. ack the batch's records to Faust (`take_events` does, after the shell returned;
   an error never gets there: it ends the process, see below).

Every write of p, WAL included, goes to changelog partition p (the shell makes
one of p's records Faust's current event for them, which is what picks the
partition), and p's changelog partition is one ordered log: aiokafka keeps a
partition's batches in order, retries included, and a batch's writes start only
after the previous batch's were acked. So after a crash p's changelog holds all
writes of the batches before [a, b) and a prefix of [a, b)'s:
- no whole WAL of [a, b): the position is a, the stored inputs are exactly the
  state after a-1 (the keys are written only after the WAL), so [a, b) runs again
  from the same state and re-sends the same records (same key, value and
  timestamp: the source record's): byte-identical duplicates of step 2's;
- the WAL of [a, b), and any prefix of its key writes, but not position b: on its
  first record the shell reads position a < WAL's b and redoes the WAL (writes all
  its changes, then position b) before `PartitionState.restore`. The outputs of
  [a, b) were acked in step 2, before the WAL was written;
- position b: [a, b) is stored completely; the next batch starts at b.
The stored state is thus always exactly at a batch boundary, and the position
says which. Step 2 before 3 is what makes the redo safe (a WAL never stands for
outputs that were not sent); step 3 before 5 is what lets Faust's commit never
run ahead of what is stored. Even that is only an optimization: the position,
not Faust's committed offset, says where p resumes. Records below `next_offset`
are skipped as done; a record above it means Faust skipped some, which
faust-streaming 0.15.3 does (its fetcher races its own seek at the end of a
recovery, then counts the skipped offsets as committable): the shell seeks the
partition back to `next_offset` and skips the record and those after it that
were fetched before the seek. Such skipped records are acked too: a commit past
unprocessed records costs a seek after the next restart, never a record.

The local RocksDB can be ahead of the changelog after a crash (a key written
locally whose changelog record never got out), and Faust's recovery can replay
older values over it; so local tables are trusted only after a clean stop
(`processor.datadir`: the shell must not be between a batch's first write and
the ack of its last), otherwise rebuilt from the changelog.
An unexpected error ends the process at once (exit 70) rather than let Faust
carry on (or ack, as `take_events` would in its cleanup) past a half-stored
batch: fail-stop turns every error into the SIGKILL case above. Outside the
argument: a changelog write the broker rejects for good after it accepted later
ones (the worker dies, the changelog has a gap); an input whose own stored
value exceeds the producer's request limit (1 MB), which the per-record design
could not store either; and a worker that the group has already given up on
(stalled past its session and poll timeouts) but that still stores a batch:
nothing fences its changelog writes from the new owner's, as the kafka engine's
transactions do, so the two may interleave (a restore then refuses the gap, or
the state mixes). Run the kafka engine where stalls that long are expected.

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
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import faust
from faust.types import TP, AppT, RecordMetadata, StreamT
from mode.supervisors import CrashingSupervisor

from plumbing.processes import exit_now
from plumbing.settings import Settings
from processor.codec import encode_tick
from processor.counts import Counts
from processor.datadir import mark_clean, open_data_dir, tables_dir
from processor.shell import Shell
from processor.tables import StateTable
from processor.windows import Config

__all__ = ["FATAL_EXIT_CODE", "create_app"]

log = logging.getLogger("livewindows.worker")

FATAL_EXIT_CODE = 70  # EX_SOFTWARE
# A batch ends at this many records or when no record came for this long; then it
# is stored (three round trips to the broker), so these bound both the commit
# latency and the number of duplicates a crash can cause.
BATCH_RECORDS = 2000
BATCH_WITHIN_S = 0.05
_STATS_INTERVAL_S = 30.0


def create_app(
    settings: Settings,
    data_dir: Path,
    *,
    partitions: int | None = None,
    counts: Counts | None = None,
) -> faust.App:
    """The worker's Faust app; `partitions` is the events topic's real partition count,
    `counts` where it counts what it does (for the log line and the metrics)."""
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
        # Outputs and changelog writes are awaited per batch, not per record, so
        # a few ms of linger costs little latency and saves most produce requests.
        producer_linger=0.005,
        producer_max_batch_size=262_144,
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
        counts=counts,
    )

    async def windows(stream: StreamT[bytes]) -> None:
        # noack() is not on StreamT, take_events() is not on what noack() returns
        records = cast(faust.Stream[bytes], cast(faust.Stream[bytes], stream).noack())
        # take_events acks a batch's records when asked for the next batch, i.e.
        # after `handle` stored it (and also in its cleanup on a cancellation,
        # which only ever costs a seek: see above).
        async for events in records.take_events(BATCH_RECORDS, BATCH_WITHIN_S):
            try:
                await shell.handle(events)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                _die(exc)

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
    exit_now(FATAL_EXIT_CODE)
