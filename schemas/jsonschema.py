"""JSON Schema files for the Kafka records, generated from the pydantic models.

`python -m schemas.jsonschema` rewrites `schemas/json/`; `--check` fails when a
checked-in file no longer matches its model (the test suite runs the check).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.records import Event, Tick, Window

DIRECTORY = Path(__file__).resolve().parent / "json"
MODELS: dict[str, type[BaseModel]] = {
    "event.schema.json": Event,
    "tick.schema.json": Tick,
    "window.schema.json": Window,
}


def render(model: type[BaseModel]) -> str:
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(by_alias=True, mode="serialization"),
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def stale() -> list[str]:
    """Names of schema files that are missing or differ from their model."""
    return [
        name
        for name, model in MODELS.items()
        if not (DIRECTORY / name).exists() or (DIRECTORY / name).read_text() != render(model)
    ]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        names = stale()
        for name in names:
            print(f"schemas/json/{name} is out of date: run python -m schemas.jsonschema")
        return 1 if names else 0
    DIRECTORY.mkdir(exist_ok=True)
    for name, model in MODELS.items():
        (DIRECTORY / name).write_text(render(model))
        print(f"wrote schemas/json/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
