"""The checked-in JSON Schema files are what the pydantic models generate."""

from __future__ import annotations

import orjson

from processor.windows import WindowRecord
from schemas import jsonschema
from schemas.records import Window


def test_checked_in_schemas_match_the_models() -> None:
    assert jsonschema.stale() == [], "run: python -m schemas.jsonschema"


def test_every_field_of_a_window_record_is_required() -> None:
    schema = orjson.loads((jsonschema.DIRECTORY / "window.schema.json").read_bytes())
    assert set(schema["required"]) == set(Window.model_fields) - {"schema_"} | {"schema"}


def test_the_core_writes_windows_that_the_window_model_accepts() -> None:
    closed = WindowRecord(
        type="window.closed",
        window_id="b7b9bb69780b5168768034850000a5d8",
        provider="cloudflare",
        input_id="in1",
        opened_ms=1_790_000_001_000,
        closed_ms=1_790_000_001_500,
        open_reason="disconnected",
        close_reason="reconnected",
        opening_event_id="b",
        closing_event_id="c",
    )
    parsed = Window.model_validate_json(orjson.dumps(closed.to_dict()))
    assert parsed.model_dump(by_alias=True) == closed.to_dict()
