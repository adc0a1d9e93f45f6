"""Bytes on the events topic to core records, and core outputs to bytes.

The shell's validation boundary (STYLE rule 5): whatever reaches `process` has
been checked here; whatever cannot be decoded raises `DecodeError` and goes to
the DLQ. Only the fields the window algorithm needs are validated (the payload is
carried opaquely in `Event.value`), which keeps the hot path to one JSON parse.

Two validators, one contract. The pydantic one below is the definition: its
acceptance and its error messages are the contract's. In front of it runs a
strict msgspec decoder (about three times faster here) that accepts a subset of
what pydantic accepts, the form the producer writes; anything else it is unsure
of (a lax integer, a duplicated tag, an odd timestamp, a deep payload, a field it
does not name) goes to pydantic, so what is decoded, and every refusal, is pydantic's.
`tests/processor/test_codec.py` checks the subset property by fuzzing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated, Literal, NotRequired, cast

import msgspec
import orjson
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from processor.windows import (
    Event,
    LateEvent,
    Output,
    Record,
    Tick,
    WindowRecord,
    seen_digest,
)
from schemas.records import (
    EVENT_SCHEMA,
    LATEST_OCCURRED_MS,
    MAX_RECONNECT_WINDOW_S,
    TICK_KEY,
    TICK_SCHEMA,
    Kind,
    Provider,
    check_occurred_ms,
)
from schemas.timestamps import InvalidTimestamp, canonical_ms, format_ms, parse_ms

__all__ = [
    "DecodeError",
    "dead_letter_headers",
    "decode",
    "decode_checked",
    "decode_fast",
    "encode_late",
    "encode_output",
    "encode_tick",
    "encode_window",
    "output_headers",
    "traceparent_of",
]

Headers = list[tuple[str, bytes]]
# W3C trace context (https://www.w3.org/TR/trace-context/) on event, window and late
# records; the second names the opening event's context on a window.closed record.
TRACEPARENT = "traceparent"
OPENING_TRACEPARENT = "livewindows-opening-traceparent"

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
    reconnect_window_s: NotRequired[Annotated[int | None, Field(ge=0, le=MAX_RECONNECT_WINDOW_S)]]


class _TickFields(TypedDict):
    __pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[misc]

    schema: Literal["livewindows/tick/v1"]
    received_at: Annotated[str, Field(pattern=_TIMESTAMP)]


_RecordFields = Annotated[_EventFields | _TickFields, Field(discriminator="schema")]
_RECORD: TypeAdapter[_EventFields | _TickFields] = TypeAdapter(_RecordFields)  # type: ignore[arg-type, unused-ignore]
# The adapter's core validator, called directly: TypeAdapter.validate_json's own
# Python wrapper costs more than a tenth of a decode on the hot path.
_VALIDATE_JSON = _RECORD.validator.validate_json


# The strict fast path: the fields the producer and the worker write and no others,
# strict types (no "60" or 60.0 for an int), the schema as a tagged union. Its
# result is used only when every check below passes; otherwise the record is
# decoded by pydantic as if it were not here.
_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class _FastEvent(msgspec.Struct, tag_field="schema", tag=EVENT_SCHEMA, forbid_unknown_fields=True):
    event_id: _NonEmpty
    provider: Provider
    input_id: _NonEmpty
    kind: Kind
    occurred_at: str
    received_at: str
    reconnect_window_s: Annotated[int, msgspec.Meta(ge=0, le=MAX_RECONNECT_WINDOW_S)] | None = None
    provider_event_type: str = ""
    payload: msgspec.Raw = msgspec.Raw(b"")  # left as bytes: only its depth matters


class _FastTick(msgspec.Struct, tag_field="schema", tag=TICK_SCHEMA, forbid_unknown_fields=True):
    received_at: str


_FAST_DECODE = msgspec.json.Decoder(_FastEvent | _FastTick).decode
# pydantic refuses JSON nested deeper than its recursion limit (201 levels), msgspec
# does not. Every other field is a scalar, so the record nests one level deeper
# than its payload, and each level opens a bracket: a payload with no more
# brackets than this is never too deep (the producer's own limit is 64).
_FAST_MAX_BRACKETS = 64
_new_event = tuple.__new__  # a NamedTuple's own __new__ is a Python function: skipped
_blake2b = hashlib.blake2b  # seen_digest, inlined


def traceparent_of(headers: Sequence[tuple[str, bytes | None]] | None) -> bytes | None:
    """The record's `traceparent` header value, if it has one (the last, if several)."""
    traceparent = None
    if headers:
        for name, value in headers:
            if name == TRACEPARENT and value:
                traceparent = bytes(value)
    return traceparent


def decode_fast(
    key: bytes | None,
    value: bytes,
    headers: Sequence[tuple[str, bytes | None]] | None = None,
    offset: int = -1,
) -> Record | None:
    """`decode(key, value, headers, offset)` for a record in the form the producer and
    worker write, or None where only the full check can tell (never a different answer)."""
    if not value.isascii():  # msgspec does not check the UTF-8 of what it skips
        try:
            value.decode()
        except UnicodeDecodeError:
            return None
    try:
        fields = _FAST_DECODE(value)
        if type(fields) is _FastTick:
            received_ms = canonical_ms(fields.received_at)
            return None if received_ms is None else Tick(received_ms)
        assert isinstance(fields, _FastEvent)
        payload = bytes(fields.payload)
        if payload.count(b"{") + payload.count(b"[") > _FAST_MAX_BRACKETS:
            return None
        occurred_ms = canonical_ms(fields.occurred_at)
        received_ms = canonical_ms(fields.received_at)
    except (msgspec.MsgspecError, InvalidTimestamp):
        return None
    provider, input_id, event_id = fields.provider, fields.input_id, fields.event_id
    event_key = f"{provider}:{input_id}"
    if (
        occurred_ms is None
        or received_ms is None
        or occurred_ms > LATEST_OCCURRED_MS
        or (key is not None and key != event_key.encode())
    ):
        return None
    return _new_event(  # the field order of Event
        Event,
        (
            event_id,
            event_key,
            provider,
            input_id,
            fields.kind,
            occurred_ms,
            received_ms,
            fields.reconnect_window_s,
            value,
            offset,
            traceparent_of(headers) if headers else None,
            # once here, not twice in the core (a duplicate check, then its release)
            _blake2b(event_id.encode(), digest_size=8).digest(),
        ),
    )


def decode(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None = None,
    offset: int = -1,
) -> Record:
    """One record of the events topic (its headers and its offset in its partition, where
    known); raises `DecodeError` naming what is wrong."""
    if not value:
        raise DecodeError("empty record value")
    record = decode_fast(key, value, headers, offset)
    if record is not None:
        return record
    return decode_checked(key, value, headers, offset)


def decode_checked(
    key: bytes | None,
    value: bytes,
    headers: Sequence[tuple[str, bytes | None]] | None = None,
    offset: int = -1,
) -> Record:
    """`decode` by the contract's own validator alone (what `decode_fast` must agree with)."""
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
        occurred_ms = parse_ms(fields["occurred_at"])
        try:
            check_occurred_ms(occurred_ms)
        except ValueError as exc:
            raise DecodeError(f"occurred_at: {exc}") from None
        return Event(
            fields["event_id"],
            event_key,
            provider,
            input_id,
            fields["kind"],
            occurred_ms,
            parse_ms(fields["received_at"]),
            fields.get("reconnect_window_s"),
            value,
            offset,
            traceparent_of(headers),
            seen_digest(fields["event_id"]),
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


def encode_output(out: Output) -> tuple[Literal["windows", "late"], bytes, bytes] | None:
    """(destination, key, value) of a core output, the destination `"windows"` or
    `"late"`; None for a duplicate, which is counted, never written."""
    if isinstance(out, WindowRecord):
        return ("windows", *encode_window(out))
    if isinstance(out, LateEvent):
        return ("late", *encode_late(out))
    return None


def output_headers(out: Output) -> Headers | None:
    """The trace context headers of a window or late record; None where there is none.

    A window record's `traceparent` is the event that caused it (the opening event
    for `window.opened` and a time-out, else the closing event); a `window.closed`
    also names the opening event's (`livewindows-opening-traceparent`). A late record
    keeps its event's.
    """
    if isinstance(out, WindowRecord):
        headers: Headers = []
        if out.traceparent is not None:
            headers.append((TRACEPARENT, out.traceparent))
        if out.type == "window.closed" and out.opening_traceparent is not None:
            headers.append((OPENING_TRACEPARENT, out.opening_traceparent))
        return headers or None
    if isinstance(out, LateEvent) and out.event.traceparent is not None:
        return [(TRACEPARENT, out.event.traceparent)]
    return None


def encode_late(late: LateEvent) -> tuple[bytes, bytes]:
    """The event's record plus `late_reason`; never raises for a record `decode` took.

    An event without its value (restored from the changelog, and its record no longer
    in the events topic) is written from the fields the core kept, without
    `provider_event_type` and `payload`.
    """
    event = late.event
    if not event.value:
        return event.key.encode(), orjson.dumps(
            {
                "schema": EVENT_SCHEMA,
                "event_id": event.event_id,
                "provider": event.provider,
                "input_id": event.input_id,
                "kind": event.kind,
                "occurred_at": format_ms(event.occurred_ms),
                "received_at": format_ms(event.received_ms),
                "reconnect_window_s": event.reconnect_window_s,
                "late_reason": late.reason,
            }
        )
    try:
        record = orjson.loads(late.event.value)
    except orjson.JSONDecodeError:
        # JSON orjson will not read back though the validators took it (a number
        # such as 1e999): the reason goes after the object's last member instead,
        # so a poison record still never stops the worker.
        head = late.event.value.rstrip()
        return late.event.key.encode(), head[:-1] + b',"late_reason":' + orjson.dumps(
            late.reason
        ) + b"}"
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
