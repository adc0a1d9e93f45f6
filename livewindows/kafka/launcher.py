"""A real Apache Kafka (KRaft) on loopback from Maven Central jars, no Docker (SPEC §6).

Every node is both broker and controller (a static quorum of all nodes); the
jars and Java come from `livewindows.kafka.runtime`.

Invariants: every JVM this module starts dies with the process that started it
(`PR_SET_PDEATHSIG`, even on SIGKILL), and `KafkaCluster.stop` leaves no JVM
behind (SIGTERM, then SIGKILL after `stop_timeout_s`). While a node runs, its
JVM's pid is in `<node dir>/kafka.pid` (for other processes: tests, an operator
who wants to kill one node).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType

from livewindows.kafka.runtime import (
    KAFKA_VERSION,
    LauncherError,
    ensure_jars,
    java_command,
    java_executable,
    log_options,
    progress,
)
from livewindows.kafka.supervisor import last_line, supervise
from plumbing.clients import admin_config
from plumbing.processes import die_with_parent
from plumbing.settings import Settings

__all__ = [
    "CONTROLLER_PORT_OFFSET",
    "KAFKA_VERSION",
    "STOP_TIMEOUT_S",
    "KafkaCluster",
    "LauncherError",
    "ensure_jars",
    "free_ports",
    "java_command",
    "port_free",
    "start_command",
]

CONTROLLER_PORT_OFFSET = 100  # CLI: controller of node i listens on P + 100 + i
# SIGTERM, then SIGKILL after this long. A KRaft node's orderly stop took ~20 s
# on 2 busy cores while its peers stopped too (the CLI cluster test under `make
# test`'s two workers); this leaves room for that, not for a hung JVM.
STOP_TIMEOUT_S = 30.0


def port_free(port: int) -> bool:
    """Whether a server could listen on `port` now (a connection just closed in
    TIME_WAIT does not stop it, as servers set SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that are free now (chosen by the kernel)."""
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(probe)
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


class KafkaCluster:
    """N KRaft nodes (broker + controller each) on loopback.

    `ports[i]` is node i's client port, `controller_ports[i]` its controller port
    (default: port + 100). Without `data_dir` the data lives in a temp dir removed
    by `stop`; a given `data_dir` keeps its data across runs. The thread that calls
    `start` must outlive the cluster (the nodes die with it).
    """

    def __init__(
        self,
        ports: Sequence[int],
        *,
        controller_ports: Sequence[int] | None = None,
        data_dir: str | Path | None = None,
        heap_mb: int = 512,
        config: Mapping[str, str] | None = None,
        ready_timeout_s: float = 120.0,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        if not ports:
            raise LauncherError("a cluster needs at least one node")
        self.ports = list(ports)
        self.controller_ports = list(
            controller_ports or [p + CONTROLLER_PORT_OFFSET for p in self.ports]
        )
        if len(self.controller_ports) != len(self.ports):
            raise LauncherError("need one controller port per node")
        self.heap_mb = heap_mb
        self.config = dict(config or {})
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._keep_data = data_dir is not None
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * len(self.ports)
        self._java = ""
        self._lib = Path()

    @property
    def brokers(self) -> int:
        return len(self.ports)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise LauncherError("the cluster has not been started")
        return self._data_dir

    def node_dir(self, node: int) -> Path:
        return self.data_dir / f"node-{node}"

    def log_path(self, node: int) -> Path:
        return self.node_dir(node) / "kafka.log"

    def pid_path(self, node: int) -> Path:
        return self.node_dir(node) / "kafka.pid"

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> str:
        """Start every node, wait until all brokers answer; returns the bootstrap string."""
        self._java = java_executable()
        self._lib = ensure_jars()
        busy = [p for p in [*self.ports, *self.controller_ports] if not port_free(p)]
        if busy:
            raise LauncherError(f"port(s) already in use on 127.0.0.1: {busy}")
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="livewindows-kafka-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        try:
            cluster_id = self._cluster_id()
            for node in range(self.brokers):
                self._write_properties(node)
                self._format(node, cluster_id)
            for node in range(self.brokers):
                self.start_node(node, wait=False)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def start_node(self, node: int, *, wait: bool = True) -> None:
        """(Re)start one node; with `wait`, until the cluster answers with all brokers."""
        running = self._processes[node]
        if running is not None and running.poll() is None:
            return
        command = [
            self._java, f"-Xmx{self.heap_mb}m", "-Xms128m", "-XX:+UseG1GC",
            *log_options(), f"-Dkafka.logs.dir={self.node_dir(node)}",
            "-cp", f"{self._lib}/*", "kafka.Kafka", str(self.node_dir(node) / "server.properties"),
        ]  # fmt: skip
        with open(self.log_path(node), "ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.node_dir(node),
                start_new_session=True,  # our signals, not the terminal's, stop the nodes
                preexec_fn=die_with_parent,
            )
        self._processes[node] = process
        self.pid_path(node).write_text(f"{process.pid}\n")
        if wait:
            self.wait_ready()

    def stop_node(self, node: int) -> None:
        """Stop one node (SIGTERM, then SIGKILL after `stop_timeout_s`)."""
        process = self._processes[node]
        if process is not None:
            _terminate([process], self.stop_timeout_s)

    def stop(self) -> None:
        """Stop every node; remove the data unless a data dir was given. Idempotent."""
        _terminate([p for p in self._processes if p is not None], self.stop_timeout_s)
        if self._data_dir is not None:
            for node in range(self.brokers):
                self.pid_path(node).unlink(missing_ok=True)
        if not self._keep_data and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p is not None and p.poll() is None]

    def pid(self, node: int) -> int | None:
        """The pid of node `node`'s JVM while it runs, else None."""
        process = self._processes[node]
        return process.pid if process is not None and process.poll() is None else None

    def exited(self) -> list[tuple[int, int]]:
        """(node, exit code) of every node that was started and has exited."""
        return [
            (node, code)
            for node, process in enumerate(self._processes)
            if process is not None and (code := process.poll()) is not None
        ]

    def wait_ready(self) -> None:
        """Block until a client sees every running node as a broker."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        running = len(self.pids())
        admin = AdminClient(admin_config(self.bootstrap))
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            for node, code in self.exited():
                raise LauncherError(
                    f"Kafka node {node} exited with code {code} while starting; "
                    f"last log line: {last_line(self.log_path(node))}"
                )
            with contextlib.suppress(KafkaException):
                if len(admin.list_topics(timeout=1).brokers) >= running:
                    return
            if time.monotonic() > deadline:
                raise LauncherError(
                    f"Kafka did not answer within {self.ready_timeout_s:.0f} s; "
                    f"last log line of node 0: {last_line(self.log_path(0))}"
                )
            time.sleep(0.2)

    def _cluster_id(self) -> str:
        path = self.data_dir / "cluster-id"
        if path.is_file():
            return path.read_text().strip()
        cluster_id = new_cluster_id()
        path.write_text(cluster_id + "\n")
        return cluster_id

    def _write_properties(self, node: int) -> None:
        n = self.brokers
        voters = ",".join(f"{i}@127.0.0.1:{port}" for i, port in enumerate(self.controller_ports))
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(node),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.ports[node]},"
            f"CONTROLLER://127.0.0.1:{self.controller_ports[node]}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.ports[node]}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.node_dir(node) / "data"),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": str(min(n, 3)),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(min(n, 3)),
            "transaction.state.log.min.isr": str(min(n, 2)),
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": str(min(n, 3)),
            "share.coordinator.state.topic.min.isr": str(min(n, 2)),
            "group.initial.rebalance.delay.ms": "0",
            # A node that died is fenced, and its partitions get new leaders, after
            # this long without a heartbeat (Kafka's 9 s default is made for
            # networks; loopback answers at once): writes resume within ~5 s.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "1000",
            "auto.create.topics.enable": "true",
            **self.config,
        }
        self.node_dir(node).mkdir(parents=True, exist_ok=True)
        text = "".join(f"{key}={value}\n" for key, value in properties.items())
        (self.node_dir(node) / "server.properties").write_text(text)

    def _format(self, node: int, cluster_id: str) -> None:
        if (self.node_dir(node) / "data" / "meta.properties").is_file():
            return  # a kept data dir: already formatted
        result = subprocess.run(
            [
                self._java,
                "-Xmx256m",
                *log_options(),
                "-cp",
                f"{self._lib}/*",
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "--config",
                str(self.node_dir(node) / "server.properties"),
                # One argument with "=": an id that starts with "-" (from a kept
                # data dir) would otherwise be read as an option.
                f"--cluster-id={cluster_id}",
            ],
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=die_with_parent,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
            raise LauncherError(f"formatting Kafka storage of node {node} failed: {tail[0]}")


def new_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """16 random bytes in URL-safe base64 without padding, as Kafka's own ids.

    Like Kafka's ``Uuid.randomUuid`` it never starts with "-" (1 draw in 64
    would), which command-line parsers take for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _terminate(processes: Sequence[subprocess.Popen[bytes]], timeout_s: float) -> None:
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()


class _Stop(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT to leave the foreground loop."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def start_command(args: argparse.Namespace, settings: Settings) -> int:
    """`livewindows kafka start`: run Kafka in the foreground until SIGTERM/SIGINT."""
    brokers: int = args.brokers
    port: int = args.port
    if brokers < 1:
        print("livewindows: --brokers must be at least 1", file=sys.stderr)
        return 2
    if not 1 <= port <= 65535 - CONTROLLER_PORT_OFFSET - brokers:
        print(f"livewindows: --port {port} is out of range", file=sys.stderr)
        return 2
    cluster = KafkaCluster([port + i for i in range(brokers)], data_dir=args.data_dir or None)
    try:
        with _stop_on_signals():
            try:
                started = time.monotonic()
                bootstrap = cluster.start()
                print(f"bootstrap={bootstrap}", flush=True)
                pids = ", ".join(str(cluster.pid(node)) for node in range(brokers))
                progress(
                    f"{brokers} node(s) ready in {time.monotonic() - started:.1f} s "
                    f"(pids {pids}), logs in {cluster.data_dir}; Ctrl-C or SIGTERM stops"
                )
                return supervise(cluster, report=progress)
            except _Stop:
                return 0
            finally:
                # No second signal may interrupt the shutdown half-way.
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                cluster.stop()
    except LauncherError as exc:
        print(f"livewindows: {exc}", file=sys.stderr)
        return 2
