"""Fixtures of the worker tests (tests/processor/workerkit.py has the rest)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.processor.workerkit import (
    Topics,
    Worker,
    worker_env,
)


@pytest.fixture(params=["faust", "kafka"])
def engine(request: pytest.FixtureRequest) -> str:
    """Every worker test runs against both engines: same windows, same crash guarantees."""
    return str(request.param)


@pytest.fixture
def start_worker(
    kafka_bootstrap: str, tmp_path: Path, engine: str
) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(
        topics: Topics, app_id: str, data_dir: Path, extra_env: dict[str, str] | None = None
    ) -> Worker:
        env = {**worker_env(kafka_bootstrap, topics, app_id, engine), **(extra_env or {})}
        worker = Worker(env, data_dir, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill()
    for worker in started:
        print(f"--- {worker.log_path.name} (exit {worker.proc.returncode})\n{worker.output}")
