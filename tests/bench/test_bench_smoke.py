"""`python -m bench --quick` of the cheap benchmarks runs and writes the documented JSON.

Figures are not checked (targets are never asserted in tests): only that each
benchmark ran against the session's broker and wrote its result, the shape the
report and readers rely on, and the report itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHEAP = ("replay", "producer")
ROW_KEYS = {"metric", "value", "unit", "baseline", "baseline_value", "ratio", "target", "passed"}
MACHINE_KEYS = {"cpu", "cores", "python", "java", "kafka", "date"}


@pytest.fixture(scope="module")
def quick_results(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    shown = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--bootstrap", kafka_bootstrap,
         "--out", str(out), *CHEAP],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", CHEAP)
def test_quick_result_has_the_documented_shape(quick_results: Path, name: str) -> None:
    result = json.loads((quick_results / f"{name}.json").read_text())
    assert result["schema"] == "livewindows/bench/v1"
    assert result["name"] == name
    assert result["quick"] is True
    assert result["duration_s"] > 0
    assert set(result["machine"]) >= MACHINE_KEYS
    assert isinstance(result["parameters"], dict) and isinstance(result["metrics"], dict)
    assert isinstance(result["notes"], list)
    rows = result["rows"]
    assert rows, "every benchmark reports at least one row"
    for row in rows:
        assert set(row) == ROW_KEYS
        assert isinstance(row["value"], int | float)
        assert row["passed"] in (True, False, None)
        if row["baseline_value"]:
            assert row["ratio"] == pytest.approx(row["value"] / row["baseline_value"], rel=1e-3)
    targeted = [row for row in rows if row["passed"] is not None]
    assert targeted, "each benchmark checks at least one target"


def test_quick_producer_counts_accepted_webhooks(quick_results: Path) -> None:
    metrics = json.loads((quick_results / "producer.json").read_text())["metrics"]
    for target in ("producer", "bare"):
        for load in metrics[target]["loads"].values():
            assert load["accepted"] > 0 and load["statuses"].get("202") == load["accepted"]
    assert metrics["records_in_events_topic"] >= metrics["accepted_total"] > 0
    assert metrics["broker_ceiling"]["records_per_s"] > 0


def test_quick_replay_matches_its_baseline(quick_results: Path) -> None:
    metrics = json.loads((quick_results / "replay.json").read_text())["metrics"]
    replay, plain = metrics["replay"], metrics["plain_loop"]
    assert replay["records"] == plain["records"] == metrics["consume_only"]["records"]
    assert replay["windows"] == plain["windows"] > 0


def test_quick_report_has_the_summary_table(quick_results: Path) -> None:
    report = (quick_results / "BENCHMARKS.md").read_text()
    assert "| benchmark | figure | value | baseline (same run) |" in report
    assert "## Machine" in report
