"""`processor.codec.decode`: the events topic's validation boundary.

Whatever `decode` returns is fit for the core; whatever it refuses raises
`DecodeError` with a message that names the field, which the worker puts on the
dead-letter record.
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.codec import (
    DecodeError,
    decode,
    decode_checked,
    decode_fast,
    encode_late,
    encode_tick,
    encode_window,
)
from processor.windows import (
    Config,
    Event,
    LateEvent,
    PartitionState,
    Tick,
    WindowRecord,
    process,
    seen_digest,
)
from schemas.records import LATEST_OCCURRED_MS, MAX_RECONNECT_WINDOW_S
from schemas.timestamps import format_ms, parse_ms

AT = "2026-01-01T00:00:01.250Z"
LATER = "2026-01-01T00:00:01.400Z"


def _event(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "schema": "livewindows/event/v1",
        "event_id": "e-1",
        "provider": "fastpix",
        "input_id": "in-1",
        "kind": "disconnected",
        "provider_event_type": "video.live_stream.disconnected",
        "occurred_at": AT,
        "received_at": LATER,
        "reconnect_window_s": 60,
        "payload": {"type": "video.live_stream.disconnected", "nested": [1, {"a": None}]},
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not _ABSENT}


_ABSENT = object()


def test_an_event_decodes_to_the_fields_the_core_needs_and_keeps_its_bytes() -> None:
    value = orjson.dumps(_event())
    event = decode(b"fastpix:in-1", value)
    assert event == Event(
        "e-1", "fastpix:in-1", "fastpix", "in-1", "disconnected",
        parse_ms(AT), parse_ms(LATER), 60, value, digest=seen_digest("e-1"),
    )  # fmt: skip


def test_a_missing_or_null_reconnect_window_is_none() -> None:
    for value in (_event(reconnect_window_s=_ABSENT), _event(reconnect_window_s=None)):
        event = decode(None, orjson.dumps(value))
        assert isinstance(event, Event) and event.reconnect_window_s is None


def test_a_tick_decodes_to_its_time() -> None:
    key, value = encode_tick(parse_ms(LATER))
    assert decode(key, value) == Tick(parse_ms(LATER))


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (b"", "empty record value"),
        (b"not json", "invalid json"),
        (b"[1, 2]", "record"),
        (orjson.dumps(_event(schema="livewindows/event/v9")), "schema"),
        (orjson.dumps(_event(event_id="")), "event_id"),
        (orjson.dumps(_event(event_id=_ABSENT)), "event_id"),
        (orjson.dumps(_event(provider="youtube")), "provider"),
        (orjson.dumps(_event(input_id=7)), "input_id"),
        (orjson.dumps(_event(kind="paused")), "kind"),
        (orjson.dumps(_event(occurred_at="2026-01-01T00:00:01Z")), "occurred_at"),
        (orjson.dumps(_event(received_at="2026-01-01 00:00:01.400Z")), "received_at"),
        (orjson.dumps(_event(received_at="2026-01-01T24:00:01.400Z")), "2026-01-01T24:00:01.400Z"),
        (orjson.dumps(_event(occurred_at="2026-02-30T00:00:01.400Z")), "2026-02-30"),
        (orjson.dumps(_event(reconnect_window_s=-1)), "reconnect_window_s"),
        (orjson.dumps(_event(reconnect_window_s="60s")), "reconnect_window_s"),
        # Past these bounds a window of the event could not be written: poison.
        (orjson.dumps(_event(reconnect_window_s=MAX_RECONNECT_WINDOW_S + 1)), "reconnect_window_s"),
        (orjson.dumps(_event(reconnect_window_s=10**17)), "reconnect_window_s"),
        (orjson.dumps(_event(occurred_at=format_ms(LATEST_OCCURRED_MS + 1))), "occurred_at"),
        (orjson.dumps(_event(occurred_at="9999-12-31T23:59:30.000Z")), "occurred_at"),
        (b'{"schema": "livewindows/tick/v1"}', "received_at"),
    ],
)
def test_a_record_that_is_not_an_event_or_tick_is_refused_by_name(value: bytes, named: str) -> None:
    with pytest.raises(DecodeError) as refused:
        decode(None, value)
    assert named.lower() in str(refused.value).lower()


def test_the_latest_event_time_and_longest_window_accepted_still_give_writable_windows() -> None:
    last = format_ms(LATEST_OCCURRED_MS)
    value = orjson.dumps(
        _event(occurred_at=last, received_at=last, reconnect_window_s=MAX_RECONNECT_WINDOW_S)
    )
    state, outputs = process(PartitionState(), decode(None, value), Config(5000, 60))
    timed_out = Tick(LATEST_OCCURRED_MS + MAX_RECONNECT_WINDOW_S * 1000 + 5000)
    for record in (Tick(LATEST_OCCURRED_MS + 5000), timed_out):
        state, more = process(state, record, Config(5000, 60))
        outputs += more
    windows = [out for out in outputs if isinstance(out, WindowRecord)]
    assert [w.type for w in windows] == ["window.opened", "window.closed"]
    closed = orjson.loads(encode_window(windows[1])[1])
    assert closed["closed_at"] == "9999-12-31T23:59:59.999Z"


def test_a_key_that_is_not_the_events_input_is_refused() -> None:
    with pytest.raises(DecodeError, match="is not 'fastpix:in-1'"):
        decode(b"fastpix:in-2", orjson.dumps(_event()))


_MS = st.integers(min_value=0, max_value=4_102_444_800_000)  # 1970 .. 2100


@given(occurred=_MS, received=_MS, window=st.none() | st.integers(0, 86_400))
def test_decode_reads_back_what_the_contract_writes(
    occurred: int, received: int, window: int | None
) -> None:
    value = orjson.dumps(
        _event(
            occurred_at=format_ms(occurred),
            received_at=format_ms(received),
            reconnect_window_s=window,
        )
    )
    event = decode(None, value)
    assert isinstance(event, Event)
    assert (event.occurred_ms, event.received_ms, event.reconnect_window_s) == (
        occurred,
        received,
        window,
    )


# --- the fast path: a strict subset of the contract's validator ------------------
#
# `decode` tries `decode_fast` (msgspec) first and falls back to `decode_checked`
# (pydantic). The fallback makes every refusal pydantic's; what must hold is that
# the fast path never accepts anything pydantic would refuse, or decodes it to
# anything else, and that it does take the records the pipeline really writes
# (else it is dead weight on the hot path).


def _agrees(key: bytes | None, value: bytes) -> bool:
    """Whether the fast path answered (it must then be the checked answer)."""
    fast = decode_fast(key, value)
    if fast is None:
        return False
    assert fast == decode_checked(key, value)
    assert type(fast.received_ms) is int
    return True


def test_the_fast_path_takes_every_record_the_producer_and_the_worker_write() -> None:
    from producer.normalize import parse_json, to_event
    from producer.publisher import encode
    from producer.sample_webhooks import sample_requests
    from tests.producer import seeds

    settings = seeds.settings()
    taken = 0
    for provider in ("cloudflare", "fastpix", "gjirafa"):
        for request in sample_requests(provider, "in-1", settings, parse_ms(AT)):
            event = to_event(provider, parse_json(request.body), parse_ms(LATER))
            key, value = encode(event)
            taken += _agrees(key, value)
    key, value = encode_tick(parse_ms(LATER))
    taken += _agrees(key, value)
    assert taken == 5 + 7 + 6 + 1


@pytest.mark.parametrize(
    "value",
    [
        # lax values pydantic accepts and msgspec's strict types do not
        orjson.dumps(_event(reconnect_window_s=60.0)),
        orjson.dumps(_event(reconnect_window_s="60")),
        orjson.dumps(_event(reconnect_window_s=True)),
        orjson.dumps(_event(payload=float("nan"))).replace(b"null", b"NaN"),
        # the tag twice: pydantic reads the last, msgspec refuses
        orjson.dumps(_event()).replace(b"{", b'{"schema":"livewindows/tick/v1",', 1),
        # a field the contract does not name (pydantic ignores it), deep or not
        orjson.dumps({**_event(), "note": "x"}),
        orjson.dumps({**_event(), "note": "x"})[:-1] + b',"deep":' + b"[" * 250 + b"]" * 250 + b"}",
        # a payload deeper than pydantic's recursion limit: refused
        orjson.dumps(_event(payload=_ABSENT))[:-1]
        + b',"payload":'
        + b"[" * 250
        + b"]" * 250
        + b"}",
        # timestamps the contract's pattern refuses or parse_ms must judge
        orjson.dumps(_event(occurred_at=AT + "\n")),
        orjson.dumps(_event(occurred_at="2026-02-30T00:00:01.400Z")),
        orjson.dumps(_event(received_at="2026-01-01T00:00:01.4000")),
        orjson.dumps(_event(received_at="٢٠٢٦-01-01T00:00:01.400Z")),
        orjson.dumps({"schema": "livewindows/tick/v1", "received_at": "2026-01-01T23:59:60.000Z"}),
    ],
)
def test_what_the_fast_path_cannot_vouch_for_is_left_to_the_full_check(value: bytes) -> None:
    assert decode_fast(None, value) is None
    try:
        expected: object = decode_checked(None, value)
    except DecodeError as exc:
        expected = str(exc)
    try:
        got: object = decode(None, value)
    except DecodeError as exc:
        got = str(exc)
    assert got == expected


@pytest.mark.parametrize("first", ["", "e-0"])
def test_a_field_given_twice_is_read_as_the_contracts_validator_reads_it(first: str) -> None:
    twice = f'"event_id":"{first}","event_id":"e-1"'.encode()
    value = orjson.dumps(_event()).replace(b'"event_id":"e-1"', twice)
    _agrees(None, value)  # if the fast path answers, it is the checked answer
    event = decode(None, value)
    assert isinstance(event, Event) and event.event_id == "e-1"


def test_a_key_that_is_not_the_events_input_is_left_to_the_full_check() -> None:
    assert decode_fast(b"fastpix:in-2", orjson.dumps(_event())) is None


_TIMESTAMPS = st.one_of(
    _MS.map(format_ms),
    st.text(alphabet="0123456789-:.TZz+ ٢\n", min_size=18, max_size=26),
    st.sampled_from([AT, LATER, AT.lower(), AT.replace("Z", "+00:00"), AT[:-5] + "Z"]),
    st.sampled_from([format_ms(LATEST_OCCURRED_MS + d) for d in (-1, 0, 1)]),
)
_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_FIELD_VALUES = {
    "schema": st.sampled_from(["livewindows/event/v1", "livewindows/tick/v1", "x", ""]),
    "event_id": st.one_of(st.text(max_size=4), _JSON_SCALARS),
    "provider": st.one_of(st.sampled_from(["fastpix", "gjirafa", "Fastpix"]), _JSON_SCALARS),
    "input_id": st.one_of(st.text(max_size=4), _JSON_SCALARS),
    "kind": st.one_of(st.sampled_from(["connected", "ended", "paused"]), _JSON_SCALARS),
    "occurred_at": st.one_of(_TIMESTAMPS, _JSON_SCALARS),
    "received_at": st.one_of(_TIMESTAMPS, _JSON_SCALARS),
    "reconnect_window_s": st.one_of(st.integers(-5, 2**66), _JSON_SCALARS),
    "payload": st.recursive(
        _JSON_SCALARS,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=8,
    ),
}


@given(
    changes=st.dictionaries(
        st.sampled_from(sorted(_FIELD_VALUES)),
        st.just(None),
        max_size=4,
    ).flatmap(
        lambda chosen: st.fixed_dictionaries(
            {name: st.one_of(st.just(_ABSENT), _FIELD_VALUES[name]) for name in chosen}
        )
    ),
    with_key=st.booleans(),
    ascii_only=st.booleans(),
)
def test_the_fast_path_never_disagrees_with_the_contracts_validator(
    changes: dict[str, object], with_key: bool, ascii_only: bool
) -> None:
    # The standard library's encoder, for integers past 64 bits and escaped text.
    value = json.dumps(_event(**changes), ensure_ascii=ascii_only).encode()
    _agrees(b"fastpix:in-1" if with_key else None, value)


_VALID = orjson.dumps(_event())


@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 2), st.binary(max_size=3)),
        min_size=1,
        max_size=3,
    )
)
def test_the_fast_path_never_disagrees_on_damaged_bytes(
    edits: list[tuple[int, int, bytes]],
) -> None:
    value = _VALID
    for at, removed, inserted in edits:
        value = value[:at] + inserted + value[at + removed :]
    try:
        decode_checked(None, value)
    except DecodeError:
        assert decode_fast(None, value) is None
    else:
        _agrees(None, value)


def test_a_late_record_is_written_even_for_json_orjson_will_not_read_back() -> None:
    # Both validators take 1e999 (an infinite float); orjson refuses to read it.
    # Encoding its late record must not raise: that would stop the worker on it.
    value = orjson.dumps(_event()).replace(b'"a":null', b'"a":1e999') + b"\n"
    event = decode(None, value)
    assert isinstance(event, Event)
    key, late = encode_late(LateEvent(event, "older_than_applied"))
    assert key == b"fastpix:in-1"
    record = json.loads(late)  # the standard library reads it (as inf)
    assert record["late_reason"] == "older_than_applied"
    assert record["payload"]["nested"][1]["a"] == float("inf")
    normal = orjson.loads(encode_late(LateEvent(decode(None, _VALID), "older_than_applied"))[1])
    assert normal == {**orjson.loads(_VALID), "late_reason": "older_than_applied"}
