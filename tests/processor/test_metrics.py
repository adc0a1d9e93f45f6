"""A worker's Prometheus metrics: its `Counts` as counters, read at each scrape."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from livewindows import cli
from livewindows.kafka.launcher import free_ports
from plumbing.settings import ConfigError
from processor.counts import Counts
from processor.metrics import WorkerMetrics, serve_metrics


def _samples(text: str) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("type", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _exposition(counts: Counts) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(WorkerMetrics(lambda: counts))
    return _samples(generate_latest(registry).decode())


def test_every_count_is_a_counter() -> None:
    counts = Counts(
        records=100, opened=7, closed=5, late=2, duplicates=3, dead_letters=1,
        batches=4, redone=1, rewinds=2, aborts=6,
    )  # fmt: skip
    assert _exposition(counts) == {
        ("livewindows_worker_records_total", ""): 100,
        ("livewindows_worker_windows_total", "window.opened"): 7,
        ("livewindows_worker_windows_total", "window.closed"): 5,
        ("livewindows_worker_late_events_total", ""): 2,
        ("livewindows_worker_duplicate_events_total", ""): 3,
        ("livewindows_worker_dead_letters_total", ""): 1,
        ("livewindows_worker_batches_total", ""): 4,
        ("livewindows_worker_batches_redone_total", ""): 1,
        ("livewindows_worker_rewinds_total", ""): 2,
        ("livewindows_worker_transactions_aborted_total", ""): 6,
    }


def test_each_scrape_reads_the_counts_the_worker_has_now() -> None:
    """The kafka engine replaces its Counts after each stored batch."""
    current = [Counts(records=1)]
    registry = CollectorRegistry()
    registry.register(WorkerMetrics(lambda: current[0]))
    assert (
        _samples(generate_latest(registry).decode())[("livewindows_worker_records_total", "")] == 1
    )
    current[0] = Counts(records=50)
    assert (
        _samples(generate_latest(registry).decode())[("livewindows_worker_records_total", "")] == 50
    )


def test_served_over_http_and_a_busy_port_is_a_config_error() -> None:
    (port,) = free_ports(1)
    serve_metrics("127.0.0.1", port, lambda: Counts(records=9))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        assert _samples(page.read().decode())[("livewindows_worker_records_total", "")] == 9
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve worker metrics on 127.0.0.1:{busy}"):
            serve_metrics("127.0.0.1", busy, Counts)


@pytest.mark.parametrize(
    ("argv", "env", "problem"),
    [
        (["--metrics-port", "70000"], {}, "--metrics-port must be 1-65535, not 70000"),
        ([], {"PROCESSOR_METRICS_PORT": "0"}, "PROCESSOR_METRICS_PORT"),
    ],
)
def test_a_bad_metrics_port_stops_the_worker_before_it_starts(
    argv: list[str],
    env: dict[str, str],
    problem: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached
    assert cli.main(["worker", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and problem in err
