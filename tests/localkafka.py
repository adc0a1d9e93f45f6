"""Local clusters for the tests, on free loopback ports below the ephemeral range."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

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
