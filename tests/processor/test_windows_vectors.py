"""The hand-checked cases of ../shared/vectors: every one, exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.codec import decode
from processor.windows import Config, LateEvent, PartitionState, WindowRecord, process

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "windows.jsonl"


def _cases() -> list[dict[str, Any]]:
    if not VECTORS.exists():
        pytest.fail(f"test vectors not found at {VECTORS} (../shared must sit beside the repo)")
    return [json.loads(line) for line in VECTORS.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("case", _cases(), ids=lambda case: case["name"])
def test_vector(case: dict[str, Any]) -> None:
    config = Config(grace_ms=case["grace_ms"], reconnect_window_s=case["reconnect_window_s"])
    state = PartitionState()
    closed: list[dict[str, Any]] = []
    late: list[str] = []
    opened: set[str] = set()
    for record in case["records"]:
        state, outputs = process(state, decode(None, orjson.dumps(record)), config)
        for out in outputs:
            if isinstance(out, WindowRecord) and out.type == "window.opened":
                opened.add(out.window_id)
            elif isinstance(out, WindowRecord):
                row = out.to_dict()
                del row["schema"]
                closed.append(row)
            elif isinstance(out, LateEvent):
                late.append(out.event.event_id)
    assert closed == case["windows_closed"]
    assert late == case["late_event_ids"]
    assert {row["window_id"] for row in closed} <= opened


def test_there_are_vectors() -> None:
    assert len(_cases()) >= 11
