"""The stored state, format v2: upgrading from v1, buffered events without their
record, and trace context carried through the runner (broker-free, as
test_runtime.py; both engines restore through the same `Runtime`)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.changelog import (
    Position,
    UnknownFormat,
    decode_input,
    encode_input,
    fold,
    input_key,
    position_key,
)
from processor.codec import decode
from processor.runner import Fetched, PartitionRunner, Written
from processor.windows import Event, InputState, OpenWindow, seen_digest, window_id
from tests.kafkakit import event_value, tick_value
from tests.processor.changelog_v1_frozen import encode_input_v1, encode_position_v1
from tests.processor.fakes import FakeKafka
from tests.processor.test_runtime import CONFIG, EVENTS, T, run_all, runtime

TP = {name: f"00-{n:032x}-{n:016x}-01".encode() for n, name in enumerate("abcdefgh", 1)}


def records() -> list[Fetched]:
    """Two inputs: windows reconnected, ended and timed out, a late event that is
    still buffered for a while, a duplicate; trace context on some events only."""
    plan: list[tuple[tuple[bytes, bytes], bytes | None]] = [
        (event_value("a", "connected", T, input_id="in0"), TP["a"]),
        (event_value("b", "disconnected", T + 100, input_id="in0"), TP["b"]),
        (event_value("p", "disconnected", T + 150, input_id="in1"), None),
        (tick_value(T + 1500), None),
        (event_value("c", "connected", T + 2000, input_id="in0"), TP["c"]),
        (event_value("d", "errored", T + 2500, input_id="in0"), TP["d"]),
        (tick_value(T + 3600), None),
        # occurred before c was applied, received after: late once released
        (event_value("x", "disconnected", T + 1800, T + 3700, input_id="in0"), TP["e"]),
        (event_value("a", "connected", T, T + 3800, input_id="in0"), TP["a"]),  # duplicate
        (tick_value(T + 4000), None),
        (event_value("q", "ended", T + 4200, input_id="in1"), None),
        (tick_value(T + 5000), None),
        (event_value("y", "connected", T + 5100, input_id="in0"), None),
        (tick_value(T + 30_000), None),  # d's window had timed out at 7,500
    ]
    out = []
    for offset, ((key, value), traceparent) in enumerate(plan):
        headers = None if traceparent is None else [("traceparent", traceparent)]
        out.append(Fetched(offset, key, value, 1_000_000 + offset, headers))
    return out


def uninterrupted() -> list[Written]:
    batch = PartitionRunner.fresh(0, EVENTS, CONFIG, 0).run(records())
    assert batch is not None
    return batch.outputs


def all_ids() -> dict[bytes, str]:
    ids = {}
    for record in records():
        event = decode(record.key, record.value)
        if isinstance(event, Event):
            ids[seen_digest(event.event_id)] = event.event_id
    return ids


@given(stop=st.integers(1, len(records()) - 1), batch_size=st.integers(1, 5))
def test_a_v1_changelog_is_restored_and_continued_in_v2_with_the_same_windows(
    stop: int, batch_size: int
) -> None:
    """A deployment upgraded in place: what the earlier version stored (its v1
    encoder, frozen) is restored by this one, which goes on exactly where it stood."""
    fetched = records()
    before = PartitionRunner.fresh(0, EVENTS, CONFIG, 0)
    first = before.run(fetched[:stop])
    assert first is not None
    kafka = FakeKafka(events={0: fetched})
    ids = all_ids()
    for key, state in before.state.inputs.items():
        v1 = encode_input_v1(state, stop - 1, ids)
        assert v1.startswith(b'{"offset":')
        kafka.changelog[0].append((input_key(0, key), v1))
    v1_position = encode_position_v1(stop, before.state.watermark_ms)
    kafka.changelog[0].append((position_key(0), v1_position))

    restored = fold(0, kafka.changelog[0])
    for key, state in before.state.inputs.items():
        # v1 stored no trace context; everything else of an open window is restored
        expected = None if state.window is None else state.window._replace(opening_traceparent=None)
        assert restored.inputs[key].window == expected
    rt = runtime(kafka)
    assert rt.assign([0]) == {0: stop}
    run_all(rt, fetched, batch_size)

    def windows(outputs: list[Written]) -> list[tuple[bytes | None, bytes]]:
        return [(w.key, w.value) for w in outputs if w.destination == "windows"]

    assert windows([*first.outputs, *kafka.outputs]) == windows(uninterrupted())
    written = kafka.changelog[0][len(before.state.inputs) + 1 :]
    assert written and all(value is not None and value[:1] == b"\x02" for _, value in written)
    assert fold(0, kafka.changelog[0]).position == Position(
        len(fetched), rt.parts[0].state.watermark_ms
    )


LATE_AT = 7  # offset of x, late once released


def restarted_after(stop: int, kafka: FakeKafka) -> list[Written]:
    fetched = records()
    rt = runtime(kafka)
    rt.assign([0])
    rt.handle({0: fetched[:stop]})
    rt = runtime(kafka)  # a new owner, from the changelog alone
    rt.assign([0])
    run_all(rt, fetched, 3)
    return kafka.outputs


def test_a_restored_buffered_event_that_turns_out_late_is_written_from_its_record() -> None:
    fetched = records()
    kafka = FakeKafka(events={0: fetched})
    outputs = restarted_after(LATE_AT + 1, kafka)
    stored = fold(0, kafka.changelog[0][:3])  # the first batch's writes
    (buffered,) = [e for s in stored.inputs.values() for e in s.buffer if e.event_id == "x"]
    assert buffered.value == b"" and buffered.offset == LATE_AT  # not stored, but where it is
    assert outputs == uninterrupted()
    (late,) = [w for w in outputs if w.destination == "late"]
    original = orjson.loads(fetched[LATE_AT].value or b"")
    assert orjson.loads(late.value) == {**original, "late_reason": "older_than_applied"}


def test_a_late_event_whose_record_kafka_no_longer_has_is_written_from_what_was_stored() -> None:
    outputs = restarted_after(LATE_AT + 1, FakeKafka())  # value_at finds nothing
    (late,) = [w for w in outputs if w.destination == "late"]
    record = orjson.loads(late.value)
    assert "payload" not in record
    assert record["event_id"] == "x" and record["late_reason"] == "older_than_applied"
    assert record["occurred_at"] == "2026-09-21T14:13:21.800Z"
    assert [w for w in outputs if w.destination != "late"] == [
        w for w in uninterrupted() if w.destination != "late"
    ]


Traced = tuple[str, str | None, list[tuple[str, bytes]] | None]


def headers_of(outputs: list[Written]) -> list[Traced]:
    found: list[Traced] = []
    for w in outputs:
        if w.destination == "windows":
            value = orjson.loads(w.value)
            found.append((value["type"], value["close_reason"], w.headers))
        elif w.destination == "late":
            found.append(("late", orjson.loads(w.value)["event_id"], w.headers))
    return found


OPENING = "livewindows-opening-traceparent"
TRACED = [
    ("window.opened", None, [("traceparent", TP["b"])]),
    ("window.opened", None, None),  # p had no traceparent: no header, nothing stored
    ("window.closed", "reconnected", [("traceparent", TP["c"]), (OPENING, TP["b"])]),
    ("window.opened", None, [("traceparent", TP["d"])]),
    ("late", "x", [("traceparent", TP["e"])]),
    ("window.closed", "ended", None),
    ("window.closed", "reconnected", [(OPENING, TP["d"])]),  # y had none
]


def test_window_and_late_records_carry_the_trace_context_of_the_events_that_caused_them() -> None:
    assert headers_of(uninterrupted()) == TRACED


@given(stop=st.integers(1, len(records()) - 1))
def test_the_trace_context_survives_a_restore(stop: int) -> None:
    assert headers_of(restarted_after(stop, FakeKafka(events={0: records()}))) == TRACED


def test_a_window_that_times_out_names_its_opening_event_twice() -> None:
    fetched = [*records()[:6], Fetched(6, *tick_value(T + 30_000), 1_000_006)]
    batch = PartitionRunner.fresh(0, EVENTS, CONFIG, 0).run(fetched)
    assert batch is not None
    timed_out = [h for h in headers_of(batch.outputs) if h[1] == "timed_out"]
    assert timed_out == [
        ("window.closed", "timed_out", [("traceparent", TP["d"]), (OPENING, TP["d"])]),
        ("window.closed", "timed_out", None),  # p's: no trace context
    ]


def test_an_event_without_trace_context_costs_no_stored_byte() -> None:
    (key, value) = event_value("b", "disconnected", T)
    plain = decode(key, value, None, 5)
    traced = decode(key, value, [("traceparent", TP["a"])], 5)
    assert isinstance(plain, Event) and isinstance(traced, Event)
    assert plain.traceparent is None and traced.traceparent == TP["a"]
    size = {
        name: len(encode_input(InputState(buffer=[event]), 5))
        for name, event in (("plain", plain), ("traced", traced))
    }
    assert size["traced"] - size["plain"] == len(TP["a"]) + 3  # nil value, bin8 header
    restored, _ = decode_input("cloudflare:in1", encode_input(InputState(buffer=[traced]), 5))
    assert restored.buffer == [traced._replace(value=b"")]


def test_a_value_of_a_format_this_version_does_not_know_is_named() -> None:
    with pytest.raises(UnknownFormat, match=r"format version b'\\x03'"):
        fold(0, [(input_key(0, "cloudflare:in1"), b"\x03\x90")])
    with pytest.raises(UnknownFormat):
        Position.decode(b"\x07")


_MS = st.integers(0, 2**53)
KINDS = ("connected", "disconnected", "errored", "ended", "other")
_ID = st.text(min_size=1, max_size=40)


@st.composite
def input_states(draw: st.DrawFn) -> InputState:
    """Any state the core can hold, in the fields the format stores."""
    name = "fastpix:in-1"

    def event(event_id: str) -> Event:
        offset = draw(st.integers(-1, 2**40))
        return Event(
            event_id, name, "fastpix", "in-1", draw(st.sampled_from(KINDS)), draw(_MS),
            draw(_MS), draw(st.none() | st.integers(0, 31_536_000)),
            draw(st.binary(min_size=1)) if offset < 0 else b"", offset,
            draw(st.none() | st.binary(min_size=1, max_size=60)), seen_digest(event_id),
        )  # fmt: skip

    window = None
    if draw(st.booleans()):
        opening = draw(_ID)
        window = OpenWindow(
            window_id("fastpix", "in-1", opening), "fastpix", "in-1", draw(_MS), draw(_MS),
            draw(_MS), opening, draw(st.sampled_from(("disconnected", "errored"))),
            draw(st.none() | st.binary(min_size=1, max_size=60)),
        )  # fmt: skip
    released = draw(st.lists(st.tuples(_ID, _MS), max_size=20, unique_by=lambda t: t[0]))
    return InputState(
        status=draw(st.sampled_from(("unknown", "live", "disconnected", "ended"))),
        window=window,
        buffer=[event(i) for i in draw(st.lists(_ID, max_size=4, unique=True))],
        last_applied_ms=draw(st.none() | _MS),
        seen={seen_digest(i): ms for i, ms in released},
        seen_at_last=[seen_digest(i) for i in draw(st.lists(_ID, max_size=3))],
        reconnect_window_ms=draw(st.none() | st.integers(0, 31_536_000_000)),
    )


@given(input_states(), st.integers(0, 2**62))
def test_format_v2_round_trips_every_state(state: InputState, offset: int) -> None:
    assert decode_input("fastpix:in-1", encode_input(state, offset)) == (state, offset)
