"""Bytes on the events topic to core records, and core outputs to bytes.

The shell's validation boundary (STYLE rule 5): whatever reaches `process` has
been checked here; whatever cannot be decoded raises `DecodeError` and goes to
the DLQ. Only the fields the window algorithm needs are validated (the payload is
carried opaquely in `Event.value`), which keeps the hot path to one JSON parse.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired, cast

import orjson
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from processor.windows import Event, LateEvent, Output, Record, Tick, WindowRecord
from schemas.records import TICK_KEY, TICK_SCHEMA, Kind, Provider
from schemas.timestamps import InvalidTimestamp, format_ms, parse_ms

__all__ = [
    "DecodeError",
    "dead_letter_headers",
    "decode",
    "encode_late",
    "encode_output",
    "encode_tick",
    "encode_window",
]

_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


class DecodeError(ValueError):
    """A record that is not a valid event or tick of the contract."""


# The fields are validated into plain dicts (TypedDicts): pydantic-core builds a
# dict faster than a model instance, and decode only reads them once.
class _EventFields(TypedDict):
    __pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[misc]

    schema: Literal["livewindows/event/v1"]
    event_id: Annotated[str, Field(min_length=1)]
    provider: Provider
    input_id: Annotated[str, Field(min_length=1)]
    kind: Kind
    occurred_at: Annotated[str, Field(pattern=_TIMESTAMP)]
    received_at: Annotated[str, Field(pattern=_TIMESTAMP)]
    reconnect_window_s: NotRequired[Annotated[int | None, Field(ge=0)]]


class _TickFields(TypedDict):
    __pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[misc]

    schema: Literal["livewindows/tick/v1"]
    received_at: Annotated[str, Field(pattern=_TIMESTAMP)]


_RecordFields = Annotated[_EventFields | _TickFields, Field(discriminator="schema")]
_RECORD: TypeAdapter[_EventFields | _TickFields] = TypeAdapter(_RecordFields)  # type: ignore[arg-type]
# The adapter's core validator, called directly: TypeAdapter.validate_json's own
# Python wrapper costs more than a tenth of a decode on the hot path.
_VALIDATE_JSON = _RECORD.validator.validate_json


def decode(key: bytes | None, value: bytes | None) -> Record:
    """One record of the events topic; raises `DecodeError` naming what is wrong."""
    if not value:
        raise DecodeError("empty record value")
    try:
        fields: _EventFields | _TickFields = _VALIDATE_JSON(value)
    except ValidationError as exc:
        raise DecodeError(_describe(exc)) from None
    try:
        if fields["schema"] == TICK_SCHEMA:
            return Tick(parse_ms(fields["received_at"]))
        fields = cast(_EventFields, fields)  # the discriminator said so
        provider, input_id = fields["provider"], fields["input_id"]
        event_key = f"{provider}:{input_id}"
        if key is not None and key != event_key.encode():
            raise DecodeError(f"record key {key!r} is not {event_key!r}")
        return Event(
            fields["event_id"],
            event_key,
            provider,
            input_id,
            fields["kind"],
            parse_ms(fields["occurred_at"]),
            parse_ms(fields["received_at"]),
            fields.get("reconnect_window_s"),
            value,
        )
    except InvalidTimestamp as exc:
        raise DecodeError(str(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "record"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def encode_window(window: WindowRecord) -> tuple[bytes, bytes]:
    return window.key.encode(), orjson.dumps(window.to_dict())


def encode_output(out: Output) -> tuple[str, bytes, bytes] | None:
    """(destination, key, value) of a core output, the destination `"windows"` or
    `"late"`; None for a duplicate, which is counted, never written."""
    if isinstance(out, WindowRecord):
        return ("windows", *encode_window(out))
    if isinstance(out, LateEvent):
        return ("late", *encode_late(out))
    return None


def encode_late(late: LateEvent) -> tuple[bytes, bytes]:
    record = orjson.loads(late.event.value)
    record["late_reason"] = late.reason
    return late.event.key.encode(), orjson.dumps(record)


def encode_tick(received_ms: int) -> tuple[bytes, bytes]:
    return TICK_KEY.encode(), orjson.dumps(
        {"schema": TICK_SCHEMA, "received_at": format_ms(received_ms)}
    )


_MAX_ERROR_HEADER = 1000


def dead_letter_headers(
    exc: BaseException, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """Headers of a DLQ record: why the record failed and where it came from."""
    error = str(exc) or repr(exc)
    return [
        ("error", error[:_MAX_ERROR_HEADER].encode()),
        ("error_type", type(exc).__name__.encode()),
        ("source_topic", topic.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
    ]
