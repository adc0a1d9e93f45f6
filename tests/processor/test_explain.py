"""`processor.explain`: one input's timeline, read off the worker's runner, with no Kafka."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.codec import DecodeError, decode
from processor.explain import Explainer, Timeline, parse_key
from processor.explain_format import render_json, render_text
from processor.runner import Fetched
from processor.windows import (
    Config,
    DuplicateEvent,
    Event,
    LateEvent,
    PartitionState,
    WindowRecord,
    process,
)
from schemas.timestamps import format_ms
from tests.kafkakit import event_value, tick_value

T0 = 1_790_000_000_000
CONFIG = Config(grace_ms=500, reconnect_window_s=2)
KEY = "cloudflare:in1"
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fetched(records: list[tuple[bytes | None, bytes]], first_offset: int = 0) -> list[Fetched]:
    return [Fetched(first_offset + i, k, v, 0) for i, (k, v) in enumerate(records)]


def explain(records: list[Fetched], key: str = KEY, **kwargs: object) -> Timeline:
    explainer = Explainer(key, 0, "events", CONFIG, records[0].offset if records else 0, **kwargs)  # type: ignore[arg-type]
    explainer.feed(records)
    return explainer.finish()


def scenario() -> list[tuple[bytes | None, bytes]]:
    """in1: a reconnect, a retried disconnect, a time-out and a late event; in2, ticks between."""
    return [
        event_value("a", "connected", T0),
        event_value("o1", "connected", T0 + 10, input_id="in2"),
        event_value("b", "disconnected", T0 + 1000),
        event_value("b", "disconnected", T0 + 1000, T0 + 1100),  # the provider's retry
        event_value("c", "connected", T0 + 1500, T0 + 1400),  # out of order, within the grace
        event_value("o2", "disconnected", T0 + 2000, input_id="in2"),
        event_value("d", "errored", T0 + 3000),
        tick_value(T0 + 3600),
        event_value("x", "other", T0 + 100, T0 + 3700),  # older than what was applied
        tick_value(T0 + 10_000),
    ]


def test_each_event_gets_its_outcome_and_each_window_its_rule() -> None:
    timeline = explain(fetched(scenario()))

    assert [(e.offset, e.event_id, e.outcome) for e in timeline.events] == [
        (0, "a", "applied"),
        (2, "b", "applied"),
        (3, "b", "duplicate"),
        (4, "c", "applied"),
        (6, "d", "applied"),
        (8, "x", "late"),
    ]
    a, b, dup, c, d, late = timeline.events
    assert (a.released_offset, b.released_offset, c.released_offset) == (2, 5, 5)
    assert b.released_watermark_ms == T0 + 2000  # o2 moved the watermark past b's and c's grace
    assert dup.duplicate_of == 2
    assert d.received_ms == T0 + 3000 and d.provider_event_type == "test.errored"
    assert (late.late_reason, late.released_offset) == ("older_than_applied", 9)
    assert [(w.offset, w.record["type"], w.rule) for w in timeline.windows] == [
        (5, "window.opened", "opened by disconnected event b"),
        (5, "window.closed", f"reconnected by event c at {_at(1500)}"),
        (7, "window.opened", "opened by errored event d"),
        (
            9,
            "window.closed",
            f"timed out at opened_at + reconnect window 2 s = {_at(5000)}, once the watermark "
            f"({_at(10_000)}) reached the opening event's received_at + reconnect window + grace "
            f"({_at(5500)})",
        ),
    ]
    assert (timeline.records, timeline.other_records, timeline.end_offset) == (10, 4, 10)
    assert timeline.state_unknown is None


def test_a_time_out_that_an_event_after_it_forces_names_that_event() -> None:
    records = fetched(
        [
            event_value("b", "disconnected", T0),
            event_value("e", "connected", T0 + 2500, T0 + 600),  # after opened_at + 2 s
            tick_value(T0 + 1200),
        ]
    )
    windows = explain(records).windows
    assert windows[-1].rule == (
        f"timed out at opened_at + reconnect window 2 s = {_at(2000)}, "
        "before event e, which occurred at or after that, was applied"
    )


def test_events_still_in_the_buffer_are_buffered() -> None:
    timeline = explain(fetched([event_value("a", "connected", T0), event_value("b", "ended", T0)]))
    assert [e.outcome for e in timeline.events] == ["buffered", "buffered"]
    assert timeline.windows == []


def test_an_undecodable_record_of_the_input_is_listed_with_the_reason() -> None:
    key, value = event_value("a", "connected", T0)
    bad = value.replace(b'"connected"', b'"exploded"')
    timeline = explain(fetched([(key, bad), (key, b"not json"), tick_value(T0 + 1000)]))
    first, second = timeline.events
    assert (first.outcome, first.event_id, first.provider_event_type) == (
        "undecodable",
        "a",
        "test.connected",
    )
    assert first.error is not None and "kind" in first.error
    assert second.outcome == "undecodable" and second.event_id is None


def test_a_record_with_no_key_counts_by_its_provider_and_input() -> None:
    _, mine = event_value("a", "disconnected", T0)
    _, other = event_value("o", "disconnected", T0, input_id="in2")
    timeline = explain(fetched([(None, mine), (None, other), tick_value(T0 + 1000)]))
    assert [(e.event_id, e.outcome) for e in timeline.events] == [("a", "applied")]
    assert [w.record["opening_event_id"] for w in timeline.windows] == ["a"]


def test_records_below_the_start_offset_are_skipped_and_unknown_state_is_said() -> None:
    records = fetched(scenario(), first_offset=100)
    explainer = Explainer(KEY, 0, "events", CONFIG, 107, state_unknown="read from T")
    explainer.feed(records)
    timeline = explainer.finish()
    # Without the events before it, "x" is no longer late: annotations differ, as said.
    assert [(e.event_id, e.outcome) for e in timeline.events] == [("x", "applied")]
    assert (timeline.records, timeline.start_offset, timeline.end_offset) == (3, 107, 110)
    text = render_text(timeline, "events")
    assert "NOTE: read from T: state before offset 107 is not known" in text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("cloudflare", "'cloudflare' is not <provider>:<input_id>, e.g. cloudflare:abc123"),
        ("cloudflare:", "'cloudflare:' is not <provider>:<input_id>, e.g. cloudflare:abc123"),
        ("mux:abc", "unknown provider 'mux' (one of cloudflare, fastpix, gjirafa)"),
    ],
)
def test_a_bad_key_is_refused_in_one_line(text: str, error: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_key(text)
    assert str(raised.value) == error


def test_an_input_id_may_hold_colons() -> None:
    assert parse_key("gjirafa:a:b") == ("gjirafa", "a:b")


def test_the_text_lists_events_and_windows_and_the_json_keeps_its_shape() -> None:
    timeline = explain(fetched(scenario()))
    text = render_text(timeline, "video.live-input-events")
    lines = text.splitlines()
    assert lines[0] == f"{KEY}: partition 0 of video.live-input-events, offsets 0-9"
    assert any(line.endswith("duplicate of offset 2 (dropped)") for line in lines)
    assert any(line.endswith("late (older_than_applied) at offset 9") for line in lines)
    assert sum("window." in line for line in lines) == 4

    shape = orjson.loads(render_json(timeline))
    assert list(shape) == [
        "schema",
        "input",
        "provider",
        "input_id",
        "partition",
        "start_offset",
        "end_offset",
        "grace_ms",
        "reconnect_window_s",
        "state_before_start_known",
        "state_unknown_reason",
        "records",
        "other_records",
        "events",
        "windows",
    ]
    assert shape["schema"] == "livewindows/explain/v1" and shape["input"] == KEY
    assert list(shape["events"][0]) == [
        "offset",
        "event_id",
        "kind",
        "provider_event_type",
        "occurred_at",
        "received_at",
        "reconnect_window_s",
        "outcome",
        "late_reason",
        "released_offset",
        "released_watermark",
        "duplicate_of",
        "error",
    ]
    assert list(shape["windows"][0]) == ["record", "offset", "watermark", "rule", "event_id"]
    assert shape["windows"][0]["record"]["schema"] == "livewindows/window/v1"


# A partition's history: events of three inputs with few ids (so some repeat), times
# that go back and forth (so some are late), ticks, and an undecodable record.
@st.composite
def partitions(draw: st.DrawFn) -> list[tuple[bytes | None, bytes]]:
    records: list[tuple[bytes | None, bytes]] = []
    for _ in range(draw(st.integers(1, 40))):
        choice = draw(st.integers(0, 9))
        received = T0 + draw(st.integers(0, 6000))
        if choice == 0:
            records.append(tick_value(received))
        elif choice == 1:
            records.append((KEY.encode(), b'{"schema": "livewindows/event/v1"}'))
        else:
            input_id = draw(st.sampled_from(("in1", "in1", "in2", "in3")))
            records.append(
                event_value(
                    draw(st.sampled_from(("e1", "e2", "e3", "e4", "e5", "e6"))),
                    draw(
                        st.sampled_from(("connected", "disconnected", "errored", "ended", "other"))
                    ),
                    received - draw(st.integers(0, 3000)),
                    received,
                    input_id=input_id,
                    reconnect_window_s=draw(st.one_of(st.none(), st.integers(0, 3))),
                )
            )
    if draw(st.booleans()):
        records.append(tick_value(T0 + 20_000))
    return records


@PROPERTY
@given(partitions(), st.integers(1, 7))
def test_the_timeline_is_what_the_core_computes_for_the_input(
    records: list[tuple[bytes | None, bytes]], batch: int
) -> None:
    state, windows, late, duplicates, undecodable = PartitionState(), [], [], 0, 0
    for key, value in records:
        try:
            record = decode(key, value)
        except DecodeError:
            undecodable += key == KEY.encode()
            continue
        state, outputs = process(state, record, CONFIG)
        for out in outputs:
            if isinstance(out, WindowRecord) and out.key == KEY:
                windows.append(out.to_dict())
            elif isinstance(out, LateEvent) and out.event.key == KEY:
                late.append(out.event.event_id)
            elif isinstance(out, DuplicateEvent) and out.event.key == KEY:
                duplicates += 1
    buffered = [e.event_id for e in state.inputs[KEY].buffer] if KEY in state.inputs else []

    # Fed in arbitrary slices, as the consumer hands them over.
    explainer = Explainer(KEY, 0, "events", CONFIG, 0)
    all_fetched = fetched(records)
    for start in range(0, len(all_fetched), batch):
        explainer.feed(all_fetched[start : start + batch])
    timeline = explainer.finish()

    assert [w.record for w in timeline.windows] == windows
    outcomes = Counter(e.outcome for e in timeline.events)
    assert sorted(e.event_id or "" for e in timeline.events if e.outcome == "late") == sorted(late)
    assert outcomes["duplicate"] == duplicates and outcomes["undecodable"] == undecodable
    assert sorted(e.event_id or "" for e in timeline.events if e.outcome == "buffered") == sorted(
        buffered
    )
    mine = sum(1 for key, value in records if key == KEY.encode())
    assert len(timeline.events) == mine
    assert timeline.records == len(records)
    # A window record names the event whose application wrote it (its opening or
    # closing event; a time-out's forcing event, or none: the watermark), released
    # by the record the window is tied to.
    for window in timeline.windows:
        record = window.record
        named = record[
            "opening_event_id" if record["type"] == "window.opened" else "closing_event_id"
        ]
        assert window.event_id == named or record["close_reason"] == "timed_out"
        if record["close_reason"] == "timed_out":
            opening = next(e for e in timeline.events if e.event_id == record["opening_event_id"])
            assert opening.occurred_ms is not None and opening.received_ms is not None
            if window.event_id is None:  # the watermark timed it out
                rw_ms = record["duration_ms"]
                due_ms = opening.received_ms + rw_ms + CONFIG.grace_ms
                assert window.watermark_ms is not None and window.watermark_ms >= due_ms
            else:  # an event applied after the opening one, at or after the time-out
                forcing = next(e for e in timeline.events if e.event_id == window.event_id)
                assert forcing.occurred_ms is not None
                assert forcing.occurred_ms >= opening.occurred_ms + record["duration_ms"]
                assert (forcing.occurred_ms, forcing.event_id) > (
                    opening.occurred_ms,
                    opening.event_id,
                )
        if window.event_id is not None:
            assert any(
                e.event_id == window.event_id
                and e.outcome == "applied"
                and e.released_offset == window.offset
                for e in timeline.events
            )


def _at(ms_after_t0: int) -> str:
    return format_ms(T0 + ms_after_t0)


def test_events_are_core_events() -> None:  # the decoder the runner uses, not another
    key, value = event_value("a", "connected", T0)
    assert isinstance(decode(key, value), Event)
