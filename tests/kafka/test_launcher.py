"""The local Kafka launcher: the session broker, the CLI's lifecycle with 1 and 3 nodes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from livewindows.kafka.launcher import (
    STOP_TIMEOUT_S,
    KafkaCluster,
    free_ports,
    new_cluster_id,
    port_free,
)
from plumbing.topics import ensure_topics
from tests.kafkakit import port_with_controller_port
from tests.waiting import wait_until

CLI = [sys.executable, "-m", "livewindows.cli"]


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> list[KafkaError | None]:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": 30_000,
        }
    )
    errors: list[KafkaError | None] = []
    for value in values:
        producer.produce(topic, value=value, on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(45) == 0
    return errors


@pytest.mark.kafka
def test_round_trip_through_the_session_broker(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    (topic,) = make_topics("roundtrip", partitions=1)
    values = [f"value-{i}".encode() for i in range(10)]
    assert _produce(kafka_bootstrap, topic, values) == [None] * 10

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen: list[bytes | None] = []
    deadline = time.monotonic() + 30
    while len(seen) < len(values) and time.monotonic() < deadline:
        for message in consumer.consume(10, timeout=0.5):
            assert message.error() is None
            seen.append(message.value())
    consumer.close()
    assert seen == values


def test_new_cluster_ids_never_start_with_a_dash() -> None:
    """One random id in 64 would; kafka-storage then reads it as an option."""
    draws = iter([b"\xf8" + bytes(15), bytes(16)])
    assert new_cluster_id(lambda: next(draws)) == "AAAAAAAAAAAAAAAAAAAAAA"
    assert len(new_cluster_id()) == 22


@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_a_kept_data_dir_whose_cluster_id_starts_with_a_dash_is_formatted_and_starts(
    tmp_path: Path,
) -> None:
    (tmp_path / "cluster-id").write_text("-AbcDefGhiJklMnoPqrStu\n")
    ports = free_ports(2)
    with KafkaCluster(ports[:1], controller_ports=ports[1:], data_dir=tmp_path) as cluster:
        topic = f"dash-{uuid.uuid4().hex[:8]}"
        ensure_topics(cluster.bootstrap, [topic], 1, 1)
        assert _produce(cluster.bootstrap, topic, [b"ok"]) == [None]
    meta = (tmp_path / "node-0" / "data" / "meta.properties").read_text()
    assert "cluster.id=-AbcDefGhiJklMnoPqrStu" in meta


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_cli_prints_bootstrap_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = port_with_controller_port()
    data_dir = tmp_path / "kafka"
    process = subprocess.Popen(
        [*CLI, "kafka", "start", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first_line: list[str] = []
    reader = threading.Thread(
        target=lambda: first_line.append(process.stdout.readline()),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    reader.join(120)
    try:
        assert first_line == [f"bootstrap=127.0.0.1:{port}\n"], process.stderr
        assert _processes_mentioning(str(data_dir)), "no Kafka JVM is running"
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert _processes_mentioning(str(data_dir)) == []
    assert (data_dir / "node-0" / "data" / "meta.properties").is_file()  # a given dir is kept


def _consume(bootstrap: str, topic: str, partitions: int, count: int) -> list[bytes | None]:
    """The first `count` values of `topic`, read through leader changes (within 30 s)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    seen: list[bytes | None] = []
    deadline = time.monotonic() + 30
    try:
        while len(seen) < count and time.monotonic() < deadline:
            seen += [m.value() for m in consumer.consume(100, timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    return seen


def _isrs(bootstrap: str, topic: str) -> list[list[int]]:
    """Each partition's in-sync replicas; none while the metadata cannot be read."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        described = admin.list_topics(timeout=5).topics.get(topic)
    except KafkaException:
        return []
    return [p.isrs for p in described.partitions.values()] if described else []


def _isr_everywhere(bootstrap: str, topic: str, node: int) -> bool:
    isrs = _isrs(bootstrap, topic)
    return bool(isrs) and all(node in isr for isr in isrs)


def _isr_nowhere(bootstrap: str, topic: str, node: int) -> bool:
    isrs = _isrs(bootstrap, topic)
    return bool(isrs) and all(node not in isr for isr in isrs)


@pytest.mark.kafka
@pytest.mark.timeout(180)
# Not beside other tests: six nodes at once on two cores (with the session's 3-node
# cluster's), and a node's stop took the 20 s it was allowed then.
@pytest.mark.xdist_group("three_node_cluster")
@pytest.mark.alone
def test_cli_cluster_serves_through_a_killed_node_restarts_it_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port = port_with_controller_port(3)
    data_dir = tmp_path / "kafka"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(
            [*CLI, "kafka", "start", "--brokers", "3", "--port", str(port),
             "--data-dir", str(data_dir)],
            stdout=stdout,
            stderr=stderr,
        )  # fmt: skip
    try:
        wait_until(lambda: "bootstrap=" in out.read_text(), 120, "the bootstrap line")
        bootstrap = out.read_text().strip().removeprefix("bootstrap=")
        assert bootstrap == ",".join(f"127.0.0.1:{port + i}" for i in range(3))
        topic = f"rf3-{uuid.uuid4().hex[:8]}"
        ensure_topics(bootstrap, [topic], 3, 3)  # min.insync.replicas 2
        assert _produce(bootstrap, topic, [b"before"] * 20) == [None] * 20

        # SIGKILL node 1: one line names it, and acks=all writes go on.
        killed = int((data_dir / "node-1" / "kafka.pid").read_text())
        os.kill(killed, signal.SIGKILL)
        wait_until(
            lambda: (
                f"node 1 (127.0.0.1:{port + 1}) exited with code -9 (SIGKILL); the other "
                "nodes keep serving; restarting it in" in err.read_text()
            ),
            10,
            "the line about node 1",
        )
        # Fenced after the session time-out (4 s): out of every partition's ISR.
        wait_until(lambda: _isr_nowhere(bootstrap, topic, 1), 15, "node 1 out of the ISR")
        began = time.monotonic()
        assert _produce(bootstrap, topic, [b"node 1 down"] * 20) == [None] * 20
        assert time.monotonic() - began < 30
        # It comes back, catches up and is in sync again: with node 2 killed now,
        # writes that need two replicas in sync can only go on through node 1.
        wait_until(lambda: "node 1 restarted (pid " in err.read_text(), 30, "node 1's restart")
        assert int((data_dir / "node-1" / "kafka.pid").read_text()) != killed
        wait_until(lambda: _isr_everywhere(bootstrap, topic, 1), 60, "node 1 in sync again")
        os.kill(int((data_dir / "node-2" / "kafka.pid").read_text()), signal.SIGKILL)
        assert _produce(bootstrap, topic, [b"node 2 down"] * 20) == [None] * 20
        assert Counter(_consume(bootstrap, topic, partitions=3, count=60)) == {
            b"before": 20, b"node 1 down": 20, b"node 2 down": 20,
        }  # fmt: skip

        # SIGTERM while node 2 is starting again stops every JVM, promptly.
        wait_until(lambda: "node 2 restarted (pid " in err.read_text(), 30, "node 2's restart")
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        stopped_s = time.monotonic() - began
        assert stopped_s < STOP_TIMEOUT_S, stopped_s  # never the stop time-out's SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert _processes_mentioning(str(data_dir)) == []
    assert not list(data_dir.glob("node-*/kafka.pid"))


def _run_cli_with_path(tmp_path: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = path
    env["LIVEWINDOWS_CACHE_DIR"] = str(tmp_path / "cache")
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_missing_java_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    result = _run_cli_with_path(tmp_path, str(tmp_path), "kafka", "start", "--port", "19")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "java not found" in lines[0], result.stderr


def test_missing_maven_with_an_empty_cache_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on this machine")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(Path(java).resolve())
    result = _run_cli_with_path(tmp_path, str(bin_dir), "kafka", "start", "--port", "19")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "mvn not found" in lines[0], result.stderr


def test_a_port_left_in_time_wait_is_free_and_a_listening_one_is_not() -> None:
    # A server that closed its side of a connection leaves TIME_WAIT behind: a new
    # server can still listen there (SO_REUSEADDR), so `make run` right after a stop
    # must not be refused.
    [port] = free_ports(1)
    server = socket.create_server(("127.0.0.1", port))
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    assert not port_free(port)  # listening
    accepted.close()  # the server's side closes first: TIME_WAIT on `port`
    server.close()
    client.close()
    assert port_free(port)
