"""The processes a chaos run starts and kills: the cluster, the producer, the workers.

Each is started as an operator starts it (the `livewindows` command line, as a
subprocess, its output appended to a log file across restarts), and killed with
SIGKILL: no shutdown hook runs, as in a crash or an OOM kill.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

from plumbing.processes import die_with_parent
from tests.kafkakit import port_with_controller_port
from tests.localkafka import Supervised
from tests.waiting import http_ready, wait_until

NODES = 3


class Service:
    """One `livewindows` command; restartable, its output kept in one log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exits: list[int] = []  # the exit codes of the processes that ended

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"=== start {self.starts} at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "livewindows.cli", *self.argv],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the run reaches it through `stop`
                preexec_fn=die_with_parent,  # and a run that is killed leaves nothing behind
            )
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout_s: float) -> None:
        wait_until(lambda: text in self.output, timeout_s, f"{text!r} in {self.name}'s log")

    def kill(self) -> None:
        """SIGKILL: nothing is flushed, no group is left, no transaction ended."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.exits.append(self.proc.wait(30))

    def stop(self, timeout_s: float = 40.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        code = self.proc.wait(30)
        self.exits.append(code)
        self.proc = None
        return code


class Worker(Service):
    """`livewindows worker --data-dir D`; restarted with or without its data dir."""

    def __init__(self, name: str, env: dict[str, str], data_dir: Path, log_path: Path) -> None:
        super().__init__(name, ["worker", "--data-dir", str(data_dir)], env, log_path)
        self.data_dir = data_dir

    def restart(self, *, keep_data_dir: bool) -> None:
        if not keep_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.start()


class Producer(Service):
    """`livewindows serve` on a fixed port, so the load generator finds it after a restart."""

    def __init__(self, port: int, env: dict[str, str], log_path: Path) -> None:
        argv = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        super().__init__("producer", argv, env, log_path)
        self.url = f"http://127.0.0.1:{port}"

    def start_ready(self, timeout_s: float = 60.0) -> None:
        self.start()
        wait_until(lambda: http_ready(self.url), timeout_s, "the producer to be ready")


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class Cluster:
    """A 3-node cluster whose nodes are restarted when they die; the kills are ours."""

    def __init__(self, bootstrap: str, data_dir: Path) -> None:
        self.bootstrap = bootstrap
        self.data_dir = data_dir
        self.kills = 0

    def pid(self, node: int) -> int | None:
        try:
            return int((self.data_dir / f"node-{node}" / "kafka.pid").read_text())
        except (OSError, ValueError):
            return None

    def kill_node(self, node: int, timeout_s: float = 180.0) -> None:
        """SIGKILL node `node`'s JVM once every node serves (a node killed before may
        still be starting: two down at once would leave one replica in sync, fewer
        than min.insync.replicas), and wait until it was started again."""
        self.wait_serving(timeout_s)
        old = self.pid(node)
        assert old is not None, f"node {node} has no pid file"
        os.kill(old, signal.SIGKILL)
        self.kills += 1
        wait_until(
            lambda: self.pid(node) not in (None, old), timeout_s, f"node {node} to be restarted"
        )

    def wait_serving(self, timeout_s: float = 180.0) -> None:
        """Until every node listens and is a broker of the cluster."""
        for address in self.bootstrap.split(","):
            host, port = address.rsplit(":", 1)
            wait_until(lambda: _listening(host, int(port)), timeout_s, f"{address} to listen")  # noqa: B023
        wait_until(lambda: self.brokers() == NODES, timeout_s, "every node to be a broker")

    def brokers(self) -> int:
        try:
            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            return len(admin.list_topics(timeout=2).brokers)
        except Exception:
            return 0

    @property
    def restarts(self) -> int:
        """Nodes restarted by the supervisor (its "node N restarted" lines)."""
        raise NotImplementedError

    def stop(self) -> None:
        pass


class LauncherCluster(Cluster):
    """`livewindows kafka start --brokers 3`, as an operator runs it."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        port = port_with_controller_port(NODES)  # below the ephemeral range: see there
        super().__init__(",".join(f"127.0.0.1:{port + i}" for i in range(NODES)), data_dir)
        argv = ["kafka", "start", "--brokers", str(NODES), "--port", str(port)]
        argv += ["--data-dir", str(data_dir)]
        self.launcher = Service("kafka", argv, dict(os.environ), log_path)

    def start(self, timeout_s: float = 180.0) -> None:
        self.launcher.start()
        wait_until(
            lambda: "ready in" in self.launcher.output or not self.launcher.running,
            timeout_s,
            "the 3-node cluster to start",
        )
        if not self.launcher.running:
            raise RuntimeError(f"the cluster did not start:\n{self.launcher.output[-3000:]}")

    @property
    def restarts(self) -> int:
        return self.launcher.output.count(" restarted (pid ")

    def stop(self) -> None:
        self.launcher.stop(60)


class SharedCluster(Cluster):
    """The test session's supervised 3-node cluster (`tests.localkafka.supervised_cluster`)."""

    def __init__(self, supervised: Supervised) -> None:
        super().__init__(supervised.bootstrap, supervised.cluster.data_dir)
        self._supervised = supervised
        self._restarts_before = supervised.restarts

    @property
    def restarts(self) -> int:
        return self._supervised.restarts - self._restarts_before
