"""Local clusters for the tests, on free loopback ports below the ephemeral range."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from livewindows.kafka.launcher import CONTROLLER_PORT_OFFSET, KafkaCluster, LauncherError
from livewindows.kafka.supervisor import supervise
from tests.kafkakit import port_with_controller_port

_START_ATTEMPTS = 3  # free ports are chosen before Kafka binds them: another process may win


def start_cluster(nodes: int = 1, *, heap_mb: int = 512) -> KafkaCluster:
    """A started cluster of `nodes` nodes; `LauncherError` if three tries fail.

    A try fails for good unless a port was taken meanwhile (the other test
    sessions on this machine pick free ports too). The ports are below the
    kernel's ephemeral range (`port_with_controller_port` says why), so a node
    that is killed can be started again on its port.
    """
    error = LauncherError("no attempt")
    for _ in range(_START_ATTEMPTS):
        port = port_with_controller_port(nodes)
        ports = list(range(port, port + nodes))
        controllers = [p + CONTROLLER_PORT_OFFSET for p in ports]
        cluster = KafkaCluster(ports, controller_ports=controllers, heap_mb=heap_mb)
        try:
            cluster.start()
        except LauncherError as exc:
            error = exc
            if "in use" not in str(exc) and "exited" not in str(exc):
                break
            continue
        return cluster
    raise error


class _Stopped(Exception):
    """Ends the supervisor's loop."""


@dataclass
class Supervised:
    """A started cluster whose nodes are restarted when they die, as `kafka start` does."""

    cluster: KafkaCluster
    reports: list[str] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    @property
    def restarts(self) -> int:
        return sum(" restarted (pid " in line for line in self.reports)


@contextmanager
def supervised_cluster(nodes: int = 3, *, heap_mb: int = 384) -> Iterator[Supervised]:
    """`start_cluster` with the launcher's supervisor loop (`livewindows.kafka.supervisor`)
    in a thread: a node that dies is restarted on its data and ports."""
    cluster = start_cluster(nodes, heap_mb=heap_mb)
    supervised = Supervised(cluster)
    stop = threading.Event()

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise _Stopped

    def loop() -> None:
        with suppress(_Stopped):
            supervise(cluster, report=supervised.reports.append, sleep=sleep)

    thread = threading.Thread(target=loop, name="kafka-supervisor", daemon=True)
    thread.start()
    try:
        yield supervised
    finally:
        stop.set()
        thread.join(30)
        cluster.stop()


# ---- one broker for every pytest-xdist worker of a run ------------------------------


@contextmanager
def _locked(directory: Path) -> Iterator[Path]:
    """The shared broker's state file, with the run's lock held (an flock: released
    if the holder dies)."""
    with (directory / "kafka.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield directory / "kafka.json"
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class SharedBroker:
    """The broker that the xdist workers of one run share, in `directory` (the run's
    base temp dir, common to its workers).

    The first worker to ask starts it (`start`) and owns it (the nodes die with the process
    that started them); each worker counts itself in while it uses it. The owner
    stops it only once the count is back to 0 (`stop_when_unused`, at the end of
    its session, after its last test: outside any test's timeout), so no worker
    loses the broker while it still runs tests; one that asks after that starts
    another.
    """

    def __init__(self, directory: Path, start: Callable[[], KafkaCluster]) -> None:
        self._directory, self._start = directory, start
        self._owned: KafkaCluster | None = None
        self._joined = False

    def join(self) -> str:
        """The bootstrap of the run's broker, started here if none runs; counts us in."""
        with _locked(self._directory) as path:
            state = json.loads(path.read_text()) if path.exists() else None
            if state is None:
                self._owned = self._start()
                state = {"bootstrap": self._owned.bootstrap, "owner": os.getpid(), "users": 0}
            state["users"] += 1
            path.write_text(json.dumps(state))
            self._joined = True
            return str(state["bootstrap"])

    def leave(self) -> None:
        if not self._joined:
            return
        self._joined = False
        with _locked(self._directory) as path:
            state = json.loads(path.read_text())
            state["users"] -= 1
            path.write_text(json.dumps(state))

    def stop_when_unused(self, timeout_s: float = 3600.0) -> None:
        """If this worker started the broker: wait until no worker uses it, then stop it."""
        self.leave()
        if self._owned is None:
            return
        deadline = time.monotonic() + timeout_s
        while True:
            with _locked(self._directory) as path:
                if json.loads(path.read_text())["users"] <= 0 or time.monotonic() > deadline:
                    path.unlink()
                    break
            time.sleep(0.5)
        self._owned.stop()
        self._owned = None
