"""Local clusters for the tests, on free loopback ports chosen by the kernel."""

from __future__ import annotations

from livewindows.kafka.launcher import KafkaCluster, LauncherError, free_ports

_START_ATTEMPTS = 3  # free ports are chosen before Kafka binds them: another process may win


def start_cluster(nodes: int = 1, *, heap_mb: int = 512) -> KafkaCluster:
    """A started cluster of `nodes` nodes; `LauncherError` if three tries fail.

    A try fails for good unless a port was taken meanwhile (the other test
    sessions on this machine pick free ports too).
    """
    error = LauncherError("no attempt")
    for _ in range(_START_ATTEMPTS):
        ports = free_ports(2 * nodes)
        cluster = KafkaCluster(ports[:nodes], controller_ports=ports[nodes:], heap_mb=heap_mb)
        try:
            cluster.start()
        except LauncherError as exc:
            error = exc
            if "in use" not in str(exc) and "exited" not in str(exc):
                break
            continue
        return cluster
    raise error
