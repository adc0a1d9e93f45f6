"""The webhook load of a chaos run, sent as providers send it: retried until accepted.

A few sender threads each take the next live input, build its signed sample
sequence (`producer.sample_webhooks.sample_requests`, the three providers in turn)
and send it in order. A request that is not answered 202 (the producer is down,
Kafka refused it: 503, a connection reset) is sent again after a pause, as
providers retry, until it is accepted; a 4xx other than 429 is a defect and is
recorded, not retried. Every input's sequence is thus complete at the end, so
every window it opens is closed and the output settles. The event ids of the
202 answers are what the events topic must hold.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

from plumbing.settings import Settings
from producer.sample_webhooks import SPAN_MS, SampleRequest, sample_requests

PROVIDERS = ("cloudflare", "fastpix", "gjirafa")
_RETRY_PAUSE_S = 0.3
_TIMEOUT_S = 15.0


@dataclass
class LoadReport:
    sent: int = 0  # requests, retries included
    statuses: Counter[str] = field(default_factory=Counter)  # "202", "503", "error", ...
    accepted: set[str] = field(default_factory=set)  # event ids answered 202
    answered_202: int = 0
    rejected: list[str] = field(default_factory=list)  # 4xx: a defect
    inputs: int = 0  # whose sequence was sent to the end


class Load:
    """Sender threads over one producer URL, at about `rate` requests per second."""

    def __init__(
        self, url: str, settings: Settings, rate: float, senders: int, prefix: str
    ) -> None:
        self._url = urlsplit(url)
        self._settings = settings
        self._interval_s = senders / rate
        self._prefix = prefix
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._lock = threading.Lock()
        self._next_input = 0
        self.report = LoadReport()
        self._threads = [
            threading.Thread(target=self._send, name=f"load-{n}", daemon=True)
            for n in range(senders)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def finish(self, timeout_s: float = 300.0) -> None:
        """Start no new sequence; wait for those under way to be accepted to the end."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            raise AssertionError(f"load senders {stuck} still retrying after {timeout_s:.0f} s")

    def abandon(self) -> None:
        """Stop at once, sequences under way left unfinished (the round failed)."""
        self._stop.set()
        self._abandon.set()

    def _take_input(self) -> int:
        with self._lock:
            n = self._next_input
            self._next_input += 1
            return n

    def _send(self) -> None:
        connection: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            n = self._take_input()
            provider = PROVIDERS[n % len(PROVIDERS)]
            start_ms = time.time_ns() // 1_000_000 - SPAN_MS[provider]
            input_id = f"{self._prefix}-{n:06d}"
            for request in sample_requests(provider, input_id, self._settings, start_ms):
                if self._abandon.is_set():
                    return
                paced = time.monotonic() + self._interval_s
                connection = self._until_accepted(connection, request)
                time.sleep(max(0.0, paced - time.monotonic()))
            with self._lock:
                self.report.inputs += 1

    def _until_accepted(
        self, connection: http.client.HTTPConnection | None, request: SampleRequest
    ) -> http.client.HTTPConnection | None:
        while True:
            if connection is None:
                connection = http.client.HTTPConnection(
                    self._url.hostname or "127.0.0.1", self._url.port, timeout=_TIMEOUT_S
                )
            try:
                connection.request("POST", request.path, request.body, request.headers)
                answer = connection.getresponse()
                status, body = answer.status, answer.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                connection, status, body = None, 0, b""
            self._record(status, body, request)
            if status == 202 or (400 <= status < 500 and status != 429) or self._abandon.is_set():
                return connection
            time.sleep(_RETRY_PAUSE_S)

    def _record(self, status: int, body: bytes, request: SampleRequest) -> None:
        with self._lock:
            report = self.report
            report.sent += 1
            report.statuses[str(status) if status else "error"] += 1
            if status == 202:
                report.answered_202 += 1
                report.accepted.add(str(orjson.loads(body)["event_id"]))
            elif 400 <= status < 500 and status != 429:
                report.rejected.append(f"{status} {request.event_type}: {body[:200]!r}")
