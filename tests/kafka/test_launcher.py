"""The local Kafka launcher: the session broker, a 3-node cluster, the CLI's lifecycle."""

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
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from livewindows.kafka.launcher import KafkaCluster, free_ports, new_cluster_id, port_free
from plumbing.topics import ensure_topics
from tests.kafkakit import port_with_controller_port

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


@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_three_nodes_keep_accepting_acks_all_writes_with_one_node_down() -> None:
    ports = free_ports(6)
    with KafkaCluster(ports[:3], controller_ports=ports[3:]) as cluster:
        assert cluster.bootstrap == ",".join(f"127.0.0.1:{p}" for p in ports[:3])
        topic = f"rf3-{uuid.uuid4().hex[:8]}"
        ensure_topics(cluster.bootstrap, [topic], 3, 3, {"min.insync.replicas": "2"})
        assert _produce(cluster.bootstrap, topic, [b"before"] * 20) == [None] * 20

        cluster.stop_node(2)
        assert cluster.exited() and cluster.exited()[0][0] == 2
        assert _produce(cluster.bootstrap, topic, [b"after"] * 20) == [None] * 20
        pids = cluster.pids()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


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
