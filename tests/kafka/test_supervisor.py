"""The launcher's foreground loop against scripted nodes: no JVM, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from livewindows.kafka.supervisor import Backoff, describe_exit, supervise


class _Done(Exception):
    """Ends a `supervise` run once the script has played."""


@dataclass
class _Nodes:
    """N nodes whose deaths happen at scripted times; `start_node` records restarts."""

    log_dir: Path
    ports: list[int]
    deaths: dict[float, tuple[int, int]] = field(default_factory=dict)  # at -> (node, code)
    now: float = 0.0
    dead: dict[int, int] = field(default_factory=dict)
    restarts: list[tuple[float, int]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def brokers(self) -> int:
        return len(self.ports)

    def exited(self) -> list[tuple[int, int]]:
        return sorted(self.dead.items())

    def start_node(self, node: int, *, wait: bool = True) -> None:
        assert not wait, "the loop must never block on a starting node"
        del self.dead[node]
        self.restarts.append((self.now, node))

    def pid(self, node: int) -> int | None:
        return None if node in self.dead else 1000 + node

    def log_path(self, node: int) -> Path:
        return self.log_dir / f"node-{node}.log"

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for at in sorted(self.deaths):
            if at <= self.now:
                node, code = self.deaths.pop(at)
                self.dead[node] = code
        if self.now > 200:
            raise _Done


def _run(nodes: _Nodes) -> int | None:
    try:
        return supervise(nodes, report=nodes.lines.append, clock=nodes.clock, sleep=nodes.sleep)
    except _Done:
        return None


def test_a_dead_node_of_three_is_named_once_and_restarted_without_blocking(
    tmp_path: Path,
) -> None:
    nodes = _Nodes(tmp_path, [9092, 9093, 9094], deaths={40.0: (1, -9)})
    assert _run(nodes) is None  # never returns while other nodes serve
    assert nodes.restarts == [(41.0, 1)]  # a first death after a stable run: 1 s
    assert nodes.lines[0] == (
        "node 1 (127.0.0.1:9093) exited with code -9 (SIGKILL); the other nodes keep "
        f"serving; restarting it in 1 s; log {tmp_path / 'node-1.log'}"
    )
    assert nodes.lines[1].startswith("node 1 restarted (pid 1001)")
    assert len(nodes.lines) == 2


def test_a_node_that_keeps_dying_at_once_is_restarted_ever_more_slowly(tmp_path: Path) -> None:
    (tmp_path / "node-2.log").write_text("starting\nERROR Address already in use\n")
    # Dies 10 s after its start, then 0.5 s after each restart.
    nodes = _Nodes(tmp_path, [9092, 9093, 9094], deaths={10.0: (2, 1)})
    script = nodes.start_node

    def start_and_die(node: int, *, wait: bool = True) -> None:
        script(node, wait=wait)
        nodes.deaths[nodes.now + 0.5] = (node, 1)

    nodes.start_node = start_and_die  # type: ignore[method-assign]
    _run(nodes)
    delays = [line.split("restarting it in ")[1].split(" s;")[0] for line in nodes.lines[::2]]
    assert delays == ["2", "4", "8", "16", "32", "60", "60", "60"]
    assert [at for at, _ in nodes.restarts] == [12, 16.5, 25, 41.5, 74, 134.5, 195]
    assert "last log line: ERROR Address already in use" in nodes.lines[0]


def test_the_only_node_dying_ends_the_launcher_with_1(tmp_path: Path) -> None:
    (tmp_path / "node-0.log").write_text("FATAL out of disk\n")
    nodes = _Nodes(tmp_path, [9092], deaths={5.0: (0, 1)})
    assert _run(nodes) == 1
    assert nodes.restarts == []
    assert nodes.lines == [
        "node 0 (127.0.0.1:9092) exited with code 1; it was the only node: stopping; "
        "last log line: FATAL out of disk"
    ]


@pytest.mark.parametrize(
    ("ran_s", "expected_s"),
    [([100], [1]), ([100, 5, 5], [1, 2, 4]), ([5, 5, 100, 5], [2, 4, 1, 2]), ([1] * 9, None)],
)
def test_backoff_doubles_on_quick_deaths_and_resets_after_a_stable_run(
    ran_s: list[float], expected_s: list[float] | None
) -> None:
    backoff = Backoff(first_s=1, max_s=60, stable_s=30)
    delays = [backoff.delay_s(0, ran) for ran in ran_s]
    assert delays == (expected_s or [2, 4, 8, 16, 32, 60, 60, 60, 60])


def test_exit_codes_name_the_signal() -> None:
    assert describe_exit(-9) == "-9 (SIGKILL)"
    assert describe_exit(-15) == "-15 (SIGTERM)"
    assert describe_exit(1) == "1"
    assert describe_exit(-99) == "-99"
