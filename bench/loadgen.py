"""HTTP load generator, run in its own process: `python -m bench.loadgen SPEC.json OUT.json`.

Requests are the signed sample webhooks of all three providers
(`producer.sample_webhooks.sample_requests`), one distinct input per sequence, signed
with the secrets in the environment (the same variables the producer reads).

Two modes:
- `open`: request i is *scheduled* at `t0 + i / rate`, whether or not earlier
  requests have been answered, and its latency runs from that scheduled time. A
  server that stalls therefore shows the stall in every request that should have
  been sent meanwhile (coordinated omission is counted, as wrk2 or HdrHistogram's
  corrected mode would count it). Connections come from a bounded keep-alive pool;
  waiting for one is part of the latency.
- `closed`: `connections` workers send back to back (saturation); latency runs
  from the send. Used when `wrk` is not installed.

Requests scheduled during the warm-up are sent but not counted.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plumbing.settings import Settings

PROVIDERS = ("cloudflare", "fastpix", "gjirafa")


@dataclass(frozen=True)
class LoadSpec:
    base_url: str
    mode: str  # "open" or "closed"
    duration_s: float
    client: str = "raw"  # "raw" (asyncio protocol) or "aiohttp"
    rate: float = 0.0  # open mode: requests per second
    connections: int = 64
    warmup_s: float = 1.0
    input_prefix: str = "bench"
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


def build_requests(
    count: int, input_prefix: str, settings: Settings | None = None
) -> list[Request]:
    """`count` signed webhooks, all three providers in turn, one sequence per input.

    Signed with `settings`' secrets, by default the environment's.
    """
    from plumbing.settings import load_settings
    from producer.sample_webhooks import SPAN_MS, sample_requests

    settings = settings or load_settings()
    start_ms = time.time_ns() // 1_000_000 - max(SPAN_MS.values())
    out: list[Request] = []
    n = 0
    while len(out) < count:
        provider = PROVIDERS[n % len(PROVIDERS)]
        for sample in sample_requests(provider, f"{input_prefix}-{n:07d}", settings, start_ms):
            out.append(Request(sample.path, sample.headers, sample.body))
        n += 1
    return out[:count]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100); nan when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def summarize(
    latencies_s: list[float], statuses: dict[str, int], span_s: float, sent: int
) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in latencies_s)
    accepted = statuses.get("202", 0)
    return {
        "sent": sent,
        "accepted": accepted,
        "statuses": statuses,
        "span_s": round(span_s, 3),
        "accepted_per_s": round(accepted / span_s, 1) if span_s > 0 else 0.0,
        "latency_ms": {
            "p50": round(percentile(ms, 50), 2),
            "p90": round(percentile(ms, 90), 2),
            "p99": round(percentile(ms, 99), 2),
            "p999": round(percentile(ms, 99.9), 2),
            "max": round(ms[-1], 2) if ms else float("nan"),
            "mean": round(sum(ms) / len(ms), 2) if ms else float("nan"),
        },
    }


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, no pipelining."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._started = 0.0
        self._scheduled: float | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def send(self, raw: bytes, scheduled: float | None) -> None:
        assert self._transport is not None
        self._scheduled = scheduled
        self._started = self._pool.loop.time()
        self._transport.write(raw)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(buffer[:head_end]).lower()
        at = head.find(b"\r\ncontent-length:")
        length = 0
        if at >= 0:
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : line_end if line_end >= 0 else None])
        if len(buffer) < head_end + 4 + length:
            return
        status = head[9:12].decode()
        del buffer[: head_end + 4 + length]
        self._pool.completed(self, status, self._started, self._scheduled)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self._pool.lost(self)


class _Pool:
    """A fixed set of keep-alive connections; requests wait in a FIFO for a free one."""

    def __init__(self, host: str, port: int, size: int, on_done: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self._host, self._port, self._size = host, port, size
        self._idle: list[_Connection] = []
        self._backlog: collections.deque[tuple[bytes, float | None]] = collections.deque()
        self._on_done = on_done
        self.errors = 0
        self._all: set[_Connection] = set()

    async def open(self) -> None:
        for _ in range(self._size):
            await self._connect()

    async def _connect(self) -> None:
        _, connection = await self.loop.create_connection(
            lambda: _Connection(self), self._host, self._port
        )
        self._all.add(connection)
        self._release(connection)

    def submit(self, raw: bytes, scheduled: float | None) -> None:
        if self._idle:
            self._idle.pop().send(raw, scheduled)
        else:
            self._backlog.append((raw, scheduled))

    def _release(self, connection: _Connection) -> None:
        if self._backlog:
            raw, scheduled = self._backlog.popleft()
            connection.send(raw, scheduled)
        else:
            self._idle.append(connection)

    def completed(
        self, connection: _Connection, status: str, started: float, scheduled: float | None
    ) -> None:
        self._on_done(status, started, scheduled, self.loop.time())
        self._release(connection)

    def lost(self, connection: _Connection) -> None:
        self._all.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        self.errors += 1
        self.loop.create_task(self._connect())

    @property
    def busy(self) -> int:
        return len(self._all) - len(self._idle) + len(self._backlog)

    def close(self) -> None:
        for connection in list(self._all):
            if connection._transport is not None:
                connection._transport.close()


def _raw_requests(spec: LoadSpec, requests: list[Request]) -> list[bytes]:
    host = spec.base_url.split("//", 1)[1].rstrip("/")
    out = []
    for request in requests:
        headers = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
        out.append(
            f"POST {request.path} HTTP/1.1\r\nHost: {host}\r\n{headers}"
            f"Content-Length: {len(request.body)}\r\n\r\n".encode()
            + request.body
        )
    return out


async def _raw(spec: LoadSpec, requests: list[Request]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    host, _, port = spec.base_url.split("//", 1)[1].rstrip("/").partition(":")
    raws = _raw_requests(spec, requests)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    last_done = 0.0
    outstanding = 0
    t0 = 0.0
    counted_from = 0.0

    def done(status: str, started: float, scheduled: float | None, now: float) -> None:
        nonlocal last_done, outstanding
        outstanding -= 1
        origin = started if scheduled is None else scheduled
        if origin >= counted_from and (scheduled is not None or now <= stop_at):
            statuses[status] = statuses.get(status, 0) + 1
            if status == "202":
                latencies.append(now - origin)
            last_done = max(last_done, now)
        if scheduled is None and now < stop_at:  # closed loop: send the next one at once
            send_next(None)

    pool = _Pool(host, int(port or 80), spec.connections, done)
    await pool.open()
    i = 0

    def send_next(scheduled: float | None) -> None:
        nonlocal i, outstanding
        outstanding += 1
        pool.submit(raws[i % len(raws)], scheduled)
        i += 1

    t0 = loop.time() + 0.02
    counted_from = t0 + spec.warmup_s
    stop_at = counted_from + spec.duration_s
    if spec.mode == "open":
        total = int(spec.rate * (spec.duration_s + spec.warmup_s))
        while i < total:
            due = min(total, int((loop.time() - t0) * spec.rate) + 1)
            while i < due:
                send_next(t0 + i / spec.rate)
            await asyncio.sleep(max(0.0, t0 + i / spec.rate - loop.time()))
        sent = total - int(spec.rate * spec.warmup_s)
    else:
        for _ in range(spec.connections):
            send_next(None)
        await asyncio.sleep(max(0.0, stop_at - loop.time()))
        sent = sum(statuses.values())
    deadline = loop.time() + spec.timeout_s
    while outstanding > 0 and loop.time() < deadline:
        await asyncio.sleep(0.01)
    pool.close()
    span = max(last_done, stop_at) - counted_from if spec.mode == "open" else spec.duration_s
    result = summarize(latencies, statuses, span, sent)
    if outstanding > 0:
        result["statuses"]["unanswered"] = outstanding
    result["reconnects"] = pool.errors
    return result


async def _post(session: Any, base_url: str, request: Request) -> str:
    """One request with the aiohttp client: its status, or the name of the error."""
    import aiohttp

    try:
        async with session.post(
            base_url + request.path, data=request.body, headers=request.headers
        ) as response:
            await response.read()
            return str(response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__


async def _open_loop(spec: LoadSpec, requests: list[Request]) -> dict[str, Any]:
    import aiohttp

    loop = asyncio.get_running_loop()
    total = int(spec.rate * (spec.duration_s + spec.warmup_s))
    connector = aiohttp.TCPConnector(limit=spec.connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counted_from = spec.warmup_s
    last_done = 0.0
    pending: set[asyncio.Task[None]] = set()

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(request: Request, scheduled: float) -> None:
            nonlocal last_done
            status = await _post(session, spec.base_url, request)
            done = loop.time()
            if scheduled - t0 >= counted_from:
                statuses[status] = statuses.get(status, 0) + 1
                if status == "202":
                    latencies.append(done - scheduled)
                last_done = max(last_done, done)

        t0 = loop.time() + 0.05
        i = 0
        while i < total:
            due = min(total, int((loop.time() - t0) * spec.rate) + 1)
            while i < due:
                task = asyncio.create_task(one(requests[i % len(requests)], t0 + i / spec.rate))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            next_at = t0 + i / spec.rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        if pending:
            await asyncio.wait(pending, timeout=spec.timeout_s)
    start = t0 + counted_from
    span = max(last_done, t0 + spec.warmup_s + spec.duration_s) - start
    result = summarize(latencies, statuses, span, total - int(spec.rate * spec.warmup_s))
    result["offered_per_s"] = spec.rate
    return result


async def _closed_loop(spec: LoadSpec, requests: list[Request]) -> dict[str, Any]:
    import aiohttp

    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=spec.connections)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    next_request = 0
    t0 = loop.time()
    counted_from = t0 + spec.warmup_s
    stop_at = counted_from + spec.duration_s
    sent = 0

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal next_request, sent
            while loop.time() < stop_at:
                request = requests[next_request % len(requests)]
                next_request += 1
                started = loop.time()
                status = await _post(session, spec.base_url, request)
                done = loop.time()
                if started >= counted_from and done <= stop_at:
                    sent += 1
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == "202":
                        latencies.append(done - started)

        await asyncio.gather(*(worker() for _ in range(spec.connections)))
    return summarize(latencies, statuses, spec.duration_s, sent)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def run(spec: LoadSpec, requests: list[Request]) -> dict[str, Any]:
    cpu_before = _cpu_seconds()
    started = time.monotonic()
    if spec.client == "raw":
        result = asyncio.run(_raw(spec, requests))
    elif spec.mode == "open":
        result = asyncio.run(_open_loop(spec, requests))
    else:
        result = asyncio.run(_closed_loop(spec, requests))
    elapsed = time.monotonic() - started
    result["generator"] = {
        "tool": f"bench.loadgen ({spec.client} client)",
        "mode": spec.mode,
        "connections": spec.connections,
        "cpu_share_of_one_core": round((_cpu_seconds() - cpu_before) / elapsed, 3),
    }
    return result


def main(argv: list[str]) -> int:
    spec = LoadSpec(**json.loads(Path(argv[0]).read_text()))
    needed = int(spec.rate * (spec.duration_s + spec.warmup_s)) if spec.mode == "open" else 0
    # Closed mode cycles through a pool; open mode never re-sends one.
    requests = build_requests(max(needed, 30_000), spec.input_prefix)
    result = run(spec, requests)
    result["spec"] = asdict(spec)
    Path(argv[1]).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
