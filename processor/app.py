"""The Faust engine: a faust-streaming agent that feeds the runtime.

Faust does what it is good at: the consumer group, fetching, acking and timers.
One agent reads the events topic as raw bytes in batches (`take_events`: up to
`BATCH_RECORDS` records, or what came within `BATCH_WITHIN_S`) and hands each
batch to `processor.runtime.Runtime`, which runs each partition's records
through the core and writes them (outputs, changelog, position) in one Kafka
transaction per partition; a timer writes ticks to the partitions this worker
owns. Restore, batches, transactions and why they are exactly-once are the
runtime's; here the writer is `transactions.PartitionWriter`, whose
`transactional.id` per partition lets a new owner fence a stalled old one. The
runtime lives in a process of its own (`processor.runtime_process`), so that it
and Faust each have a core.

Faust's own offsets are only a hint. The stored position, not Faust's committed
offset, says where a partition resumes: a partition is restored on its first
record after an assignment, records below its position are skipped as done, and
a record past it means Faust skipped some (faust-streaming 0.15.3's fetcher
races its own seek at the end of a recovery, then counts the skipped offsets as
committable; an abort rewinds behind records already fetched): the partition is
sought back to its position. Only records that retention deleted are passed over,
loudly. `take_events` acks a batch's records after the runtime returned, so
Faust's commit never runs ahead of the stored position except after such a skip,
which costs a seek, never a record.

Runtime calls block (a restore reads the changelog; a commit waits for the
broker), so they are made from a thread, one at a time (`_lock`): Faust's
heartbeats and fetches go on meanwhile. An unexpected error, the runtime's
process dying included, ends the process at once (exit 70) rather than let Faust
ack past a batch that was not written.

`processing_guarantee="exactly_once"` is not used: in faust-streaming 0.15.3 it
is known to crash at start-up (faust-streaming/faust#440), to produce duplicates
after a kill (#517) or a rebalance (#323), and to send outside transactions
(#177). State is not in a Faust table either: the runtime keeps it in memory and
restores it from the changelog it writes transactionally, as the kafka engine does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import faust
from confluent_kafka.admin import AdminClient
from faust.types import TP, AppT, EventT, StreamT
from mode.supervisors import CrashingSupervisor

from plumbing.logs import record_fields
from plumbing.processes import FATAL_EXIT_CODE, exit_now
from plumbing.settings import Settings
from processor.counts import LOG_EVERY_S, CountsLog
from processor.datadir import open_data_dir
from processor.gauges import EndOffset
from processor.group import GroupHeldByOtherEngine, held_by, held_by_other_engine
from processor.runner import Fetched
from processor.runtime_process import RuntimeProcess
from processor.ticks import Ticker
from processor.transactions import LIBRARY_LOG, Fenced, report_fenced

__all__ = ["create_app", "highwater", "run_faust"]

log = logging.getLogger("livewindows.worker")

# A batch ends at this many records or when no record came for this long; then it
# is written (one transaction commit per partition), so these bound the commit
# latency and the work an abort repeats.
BATCH_RECORDS = 20_000
BATCH_WITHIN_S = 0.05
# Records Faust may fetch ahead of the agent (its default: 4,096). While a batch is
# run and written the agent takes none, so Faust's fetching must not stop at less
# than a batch: at 4,096 the worker stood idle for 40% of a backlog's drain.
STREAM_BUFFER = 65_536
_SEEK_BACK_EVERY_S = 1.0
# How long the Faust engine may take to stop after SIGTERM (Kubernetes' default
# grace period is 30 s, after which it kills).
SHUTDOWN_DEADLINE_S = 20.0
# Seconds between looks at the group while a Faust worker waits for its first assignment.
_JOIN_RECHECK_S = 5.0


def create_app(
    settings: Settings,
    data_dir: Path,
    *,
    partitions: int,
) -> tuple[faust.App, RuntimeProcess]:
    """The worker's Faust app, and the runtime it feeds (for the metrics);
    `partitions` is the events topic's real partition count."""
    session_timeout_s = settings.processor_session_timeout_ms / 1000
    open_data_dir(data_dir)
    app = faust.App(
        settings.processor_app_id,
        # Configuration comes from Settings alone: Faust would otherwise let
        # variables such as TOPIC_PARTITIONS silently override these arguments.
        env={},
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        datadir=str(data_dir),
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=partitions,
        topic_replication_factor=settings.topic_replication,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=max(0.1, session_timeout_s / 5),
        broker_commit_interval=1.0,
        stream_buffer_maxsize=STREAM_BUFFER,
        agent_supervisor=CrashingSupervisor,
        web_enabled=False,
        autodiscover=False,
    )
    events = app.topic(settings.events_topic, key_serializer="raw", value_serializer="raw")
    engine = _FaustEngine(app, settings)

    async def windows(stream: StreamT[bytes]) -> None:
        # noack() is not on StreamT, take_events() is not on what noack() returns
        records = cast(faust.Stream[bytes], cast(faust.Stream[bytes], stream).noack())
        # take_events acks a batch's records when asked for the next batch, i.e.
        # after the runtime wrote it.
        async for batch in records.take_events(BATCH_RECORDS, BATCH_WITHIN_S):
            try:
                await engine.handle(batch)
            except asyncio.CancelledError:
                raise
            except Fenced as exc:
                exit_now(report_fenced(exc))
            except BaseException as exc:
                _die(exc)

    app.agent(events, name="windows")(windows)

    async def send_ticks() -> None:
        engine.ticker.tick(
            sorted(
                tp.partition
                for tp in app.assignor.assigned_actives()
                if tp.topic == settings.events_topic
            )
        )

    app.timer(settings.tick_interval_ms / 1000, name="ticks")(send_ticks)
    counts_log = CountsLog()

    async def log_counts() -> None:
        counts_log.now(engine.runtime.counts)

    app.timer(LOG_EVERY_S, name="counts")(log_counts)

    # Signal receivers: (sender, *args, signal=..., **kwargs).
    async def on_assigned(sender: AppT, *args: Any, **_: Any) -> None:
        assigned: set[TP] = args[0]
        engine.assigned(tp.partition for tp in assigned if tp.topic == settings.events_topic)

    async def on_revoked(sender: AppT, *args: Any, **_: Any) -> None:
        revoked: set[TP] = args[0]
        await engine.revoke(tp.partition for tp in revoked if tp.topic == settings.events_topic)

    async def on_shutdown(sender: AppT, *args: Any, **_: Any) -> None:
        await log_counts()
        engine.ticker.close()
        await engine.close()

    app.on_partitions_assigned.connect(_receiver(on_assigned))
    app.on_partitions_revoked.connect(_receiver(on_revoked))
    app.on_before_shutdown.connect(_receiver(on_shutdown))
    return app, engine.runtime


def highwater(app: faust.App, topic: str) -> EndOffset:
    """The events partitions' end offsets as aiokafka last heard them (fetch responses):
    a local read, for the metrics thread."""

    def end_offset(partition: int) -> int | None:
        try:
            # aiokafka asserts the partition is assigned; a revocation may just have come
            end = app.consumer.highwater(TP(topic, partition))
        except Exception:
            return None
        return end if isinstance(end, int) and end >= 0 else None

    return end_offset


def run_faust(app: faust.App, admin: AdminClient, group_id: str, patience: float) -> int:
    """Run the Faust worker until it stops; its exit code."""
    _guard_join(app, admin, group_id, patience)
    worker = _FaustWorker(app, quiet=True, override_logging=False, redirect_stdouts=False)
    worker.spinner = None  # a terminal progress spinner: noise in a service's output
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


class _FaustWorker(faust.Worker):
    """Faust's worker, with a deadline on stopping.

    On SIGTERM Faust commits and flushes before it exits, and waits for Kafka to
    answer however long an outage lasts: the process would only end with SIGKILL.
    Past the deadline it exits as after a crash, which the Faust engine is built
    for: the batch in progress was not written, and runs again on restart (its
    records again, byte-identical). While stopping during an outage, aiokafka's
    consumer thread can end on the CancelledError of its own fetch back-off, which
    Python would print as a traceback: that is one warning line instead.
    """

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:
            timer = threading.Timer(SHUTDOWN_DEADLINE_S, _give_up_stopping)
            timer.daemon = True
            timer.start()
            threading.excepthook = _cancelled_threads_quiet
        super()._schedule_shutdown(signal)


def _give_up_stopping() -> None:
    log.warning(
        "not stopped within %.0f s (is Kafka down?): exiting now; the batch in progress "
        "was not stored and runs again on restart",
        SHUTDOWN_DEADLINE_S,
    )
    exit_now(0)


def _cancelled_threads_quiet(args: threading.ExceptHookArgs) -> None:
    if isinstance(args.exc_value, asyncio.CancelledError):
        name = args.thread.name if args.thread is not None else "a thread"
        log.warning("%s was cancelled while stopping", name)
        return
    threading.__excepthook__(args)


def _guard_join(app: faust.App, admin: AdminClient, group_id: str, patience: float) -> None:
    """Stop a Faust worker that the other engine beat to the group.

    The check before start cannot see a kafka-engine worker that starts in the same
    second; if that one joins first, aiokafka logs a fatal
    InconsistentGroupProtocolError and the Faust worker then waits forever,
    assigned nothing. So until its first assignment a thread looks at the group
    after `patience` and every few seconds after that, and exits 2 with the line
    of the check before start once the group is held by the kafka engine. A slow
    first join (Kafka busy, a large group) is no reason to stop.
    """
    assigned = threading.Event()

    async def on_assigned(_sender: Any, *_args: Any, **_kwargs: Any) -> None:
        assigned.set()

    # mode types receivers with NamedArg, which no function definition satisfies.
    app.on_partitions_assigned.connect(cast(Any, on_assigned))

    def watch() -> None:
        wait_s = patience
        while not assigned.wait(wait_s):
            held = held_by(admin, group_id)
            if not assigned.is_set() and held_by_other_engine("faust", held):
                problem = GroupHeldByOtherEngine(group_id, "faust", held)
                print(f"livewindows: not assigned any partition: {problem}", file=sys.stderr)
                exit_now(2)
            wait_s = _JOIN_RECHECK_S

    threading.Thread(target=watch, name="livewindows-join-guard", daemon=True).start()


class _FaustEngine:
    """Faust's events, grouped by partition, into the runtime; seeks where it says."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self._app = app
        self._events = settings.events_topic
        self.runtime = RuntimeProcess(settings)
        self.ticker = Ticker(settings.kafka_bootstrap_servers, self._events, LIBRARY_LOG)
        self._lock = asyncio.Lock()
        self._sought_at: dict[int, float] = {}
        self._closed = False
        # What the group last assigned this worker, less what it revoked since.
        self._assignable: set[int] = set()

    async def handle(self, batch: Sequence[EventT[bytes]]) -> None:
        fetched: defaultdict[int, list[Fetched]] = defaultdict(list)
        for event in batch:
            message = event.message
            fetched[message.partition].append(
                Fetched(
                    message.offset,
                    message.key,
                    message.value,
                    max(0, int(message.timestamp * 1000)),
                    _headers(message.headers),
                )
            )
        async with self._lock:
            if self._closed:
                return
            runtime = self.runtime
            # A partition is restored on its first record, and restoring it fences
            # whoever writes it now. Records Faust fetched before a revocation can
            # still come after it: such a partition is someone else's by then.
            for partition in [p for p in fetched if p not in self._assignable]:
                del fetched[partition]
            new = [p for p in fetched if p not in runtime.next_offsets]
            if new:
                await asyncio.to_thread(runtime.assign, new)
            runnable: dict[int, list[Fetched]] = {}
            gaps: dict[int, int] = {}
            for partition, records in fetched.items():
                taken, gap = _contiguous(records, runtime.next_offsets[partition])
                if (
                    not taken
                    and gap is not None
                    and await asyncio.to_thread(runtime.skip_deleted, partition, gap)
                ):
                    taken, gap = _contiguous(records, runtime.next_offsets[partition])
                runnable[partition] = taken
                if gap is not None:
                    gaps[partition] = gap
            rewind = await asyncio.to_thread(runtime.handle, runnable)
            if rewind is not None:
                await self._app.consumer.seek_wait(
                    {TP(self._events, p): offset for p, offset in rewind.offsets.items()}
                )
                await asyncio.sleep(rewind.pause_s)
                return
            for partition, offset in gaps.items():
                await self._seek_back(partition, offset)

    def assigned(self, partitions: Iterable[int]) -> None:
        self._assignable = set(partitions)

    async def close(self) -> None:
        """Stop the runtime's process once the batch in progress is written (Faust
        has stopped fetching by now). A batch still handed over is not run; Faust
        acks it, so on restart it comes after a seek back to the stored position."""
        async with self._lock:
            self._closed = True
            await asyncio.to_thread(self.runtime.close)

    async def revoke(self, partitions: Iterable[int]) -> None:
        """Drop the partitions' state. After `close` there is none to drop: Faust
        revokes partitions when it leaves the group, after `on_before_shutdown`
        when a rebalance was under way as the worker was told to stop."""
        revoked = list(partitions)
        self._assignable.difference_update(revoked)
        async with self._lock:
            if not self._closed:
                await asyncio.to_thread(self.runtime.revoke, revoked)

    async def _seek_back(self, partition: int, offset: int) -> None:
        """Faust delivered `offset` past the position: fetch the partition from its position."""
        position = self.runtime.next_offsets.get(partition)
        now = time.monotonic()
        if position is None or now - self._sought_at.get(partition, -math.inf) < _SEEK_BACK_EVERY_S:
            return  # sought back just now: records fetched before the seek still drain
        self._sought_at[partition] = now
        log.info(
            "partition %d: Faust skipped to offset %d; seeking back to %d",
            partition,
            offset,
            position,
            extra=record_fields(partition=partition, offset=position),
        )
        await asyncio.to_thread(self.runtime.count_rewind)
        await self._app.consumer.seek_wait({TP(self._events, partition): position})


def _contiguous(records: list[Fetched], next_offset: int) -> tuple[list[Fetched], int | None]:
    """The records that continue from `next_offset` without a gap (older ones are done),
    and the offset of the first record past a gap, if there is one."""
    taken: list[Fetched] = []
    expected = next_offset
    for record in records:
        if record.offset < expected:
            continue
        if record.offset > expected:
            return taken, record.offset
        taken.append(record)
        expected += 1
    return taken, None


def _headers(headers: Any) -> list[tuple[str, bytes]] | None:
    """A record's headers (aiokafka's (name, value) pairs; Faust allows a mapping too),
    as the runner takes them."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(name, value) for name, value in pairs]


def _receiver(fun: Callable[..., Awaitable[None]]) -> Any:
    """A signal receiver, (sender, *args, signal=..., **kwargs): mode types receivers with
    mypy_extensions.NamedArg, which no function definition satisfies."""
    return fun


def _die(exc: BaseException) -> None:
    """Stop the process now, committing nothing more: the SIGKILL case, on purpose."""
    log.critical("fatal error, stopping at once: %r", exc, exc_info=exc)
    exit_now(FATAL_EXIT_CODE)
