"""Local clusters for the tests, on free loopback ports below the ephemeral range."""

from __future__ import annotations

from livewindows.kafka.launcher import CONTROLLER_PORT_OFFSET, KafkaCluster, LauncherError
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
