"""`livewindows kafka start`'s foreground loop: a node that dies is restarted.

With N >= 2 nodes, a node that exits (a crash, SIGKILL, the OOM killer) is
reported in one line and started again on its own data, ports and config, while
the others keep serving: with 3 nodes the quorum and every partition of
replication 3 (min.insync.replicas 2) stay available, and the node catches up
and rejoins the ISR once it is back. A node that keeps dying soon after each
start (a port taken by another process, a broken data dir) is restarted after a
pause that doubles each time, up to `RESTART_MAX_S`, so it never spins; a node
that ran `STABLE_S` before dying starts over at `RESTART_FIRST_S`.

With one node nothing is left serving: the loop returns 1 and the launcher
exits, so whatever started it (`make run`, a script) sees the failure.

Stopping is not this loop's business: SIGTERM/SIGINT raise out of it (see
`launcher.start_command`), and the launcher stops every node it holds, including
one just restarted.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

__all__ = [
    "RESTART_FIRST_S",
    "RESTART_MAX_S",
    "STABLE_S",
    "Backoff",
    "Nodes",
    "describe_exit",
    "last_line",
    "supervise",
]

RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
STABLE_S = 30.0  # a node up this long had started well: its next death is a first one
POLL_S = 0.5


class Nodes(Protocol):
    """What the loop needs of `launcher.KafkaCluster`."""

    ports: list[int]

    @property
    def brokers(self) -> int: ...

    def exited(self) -> list[tuple[int, int]]: ...

    def start_node(self, node: int, *, wait: bool = True) -> None: ...

    def pid(self, node: int) -> int | None: ...

    def log_path(self, node: int) -> Path: ...


class Backoff:
    """The pause before restarting a node: `first_s` after a death that followed
    at least `stable_s` of running, doubled for each death in a row that came
    sooner, at most `max_s`."""

    def __init__(
        self,
        first_s: float = RESTART_FIRST_S,
        max_s: float = RESTART_MAX_S,
        stable_s: float = STABLE_S,
    ) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.stable_s = stable_s
        self._quick_deaths: dict[int, int] = {}

    def delay_s(self, node: int, ran_s: float) -> float:
        quick = self._quick_deaths.get(node, 0) + 1 if ran_s < self.stable_s else 0
        self._quick_deaths[node] = quick
        return min(self.max_s, self.first_s * (1 << min(quick, 30)))


def last_line(path: Path) -> str:
    """The last line of a node's log, for a message about why it stopped."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def describe_exit(code: int) -> str:
    """'1', or '-9 (SIGKILL)' for a process a signal ended."""
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return str(code)


def supervise(
    cluster: Nodes,
    *,
    report: Callable[[str], None],
    backoff: Backoff | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Watch the nodes until interrupted; restart those that exit (N >= 2).

    Returns 1 when the only node of a one-node cluster exits; otherwise runs until
    an exception (the launcher's signal handler) ends it.
    """
    backoff = backoff or Backoff()
    started_at = dict.fromkeys(range(cluster.brokers), clock())
    restart_at: dict[int, float] = {}
    while True:
        now = clock()
        for node, code in cluster.exited():
            if node in restart_at:
                continue
            exited = f"node {node} (127.0.0.1:{cluster.ports[node]}) exited with code "
            exited += describe_exit(code)
            # A signal's victim logged nothing about it; a JVM that gave up did.
            why = f"last log line: {last_line(cluster.log_path(node))}" if code >= 0 else ""
            why = why or f"log {cluster.log_path(node)}"
            if cluster.brokers == 1:
                report(f"{exited}; it was the only node: stopping; {why}")
                return 1
            delay_s = backoff.delay_s(node, now - started_at[node])
            restart_at[node] = now + delay_s
            report(
                f"{exited}; the other nodes keep serving; restarting it in {delay_s:.0f} s; {why}"
            )
        for node, due in sorted(restart_at.items()):
            if now >= due:
                del restart_at[node]
                cluster.start_node(node, wait=False)
                started_at[node] = now
                report(
                    f"node {node} restarted (pid {cluster.pid(node)}); it rejoins once "
                    "its old registration has expired and it has caught up"
                )
        sleep(POLL_S)
