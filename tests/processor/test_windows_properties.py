"""Hypothesis properties of the window core (SPEC §5), with no Kafka."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.changelog import decode_input, encode_input
from processor.windows import (
    Config,
    DuplicateEvent,
    Event,
    LateEvent,
    Output,
    PartitionState,
    Record,
    Tick,
    WindowRecord,
    _release,  # the full scan the index replaces
    process,
    seen_digest,
)
from tests.processor.corekit import T0, ev, run

GRACE_MS = 500
CONFIG = Config(grace_ms=GRACE_MS, reconnect_window_s=2)
KINDS = ("connected", "disconnected", "errored", "ended", "other")
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def histories(draw: st.DrawFn, max_delay_ms: int = 0) -> list[Event]:
    """Events of a few inputs with distinct occurred times and delivery delays < max_delay_ms."""
    count = draw(st.integers(1, 30))
    occurred = draw(st.lists(st.integers(0, 8000), min_size=count, max_size=count, unique=True))
    events = []
    for n, occurred_ms in enumerate(sorted(occurred)):
        delay = draw(st.integers(0, max_delay_ms)) if max_delay_ms else 0
        events.append(
            ev(
                f"e{n:03d}",
                draw(st.sampled_from(KINDS)),
                occurred_ms,
                occurred_ms + delay,
                input_id=draw(st.sampled_from(("in1", "in2", "in3"))),
                reconnect_window_s=draw(st.one_of(st.none(), st.integers(0, 4))),
            )
        )
    return events


def with_ticks(events: Sequence[Event], every_ms: int = 700) -> list[Record]:
    """Events and periodic ticks in received order, then one tick that lets everything close."""
    end_ms = max(e.received_ms for e in events) - T0 + 4000 + GRACE_MS + 1
    ticks: list[Record] = [Tick(T0 + t) for t in range(0, end_ms, every_ms)]
    records: list[Record] = sorted([*events, *ticks], key=lambda r: r.received_ms)
    return [*records, Tick(T0 + end_ms)]


def per_input(outputs: Sequence[Output]) -> dict[str, list[WindowRecord]]:
    grouped: dict[str, list[WindowRecord]] = defaultdict(list)
    for out in outputs:
        if isinstance(out, WindowRecord):
            grouped[out.key].append(out)
    return dict(grouped)


@PROPERTY
@given(histories(), st.data())
def test_reordering_within_the_grace_leaves_the_windows_unchanged(
    events: list[Event], data: st.DataObject
) -> None:
    """Records whose offsets are swapped, each still arriving before the watermark
    passes its `received_at + grace`, give the same windows and no late events."""
    in_order = with_ticks(events)
    jitter = data.draw(
        st.lists(st.integers(0, GRACE_MS - 1), min_size=len(in_order), max_size=len(in_order))
    )
    shuffled = [r for _, r in sorted(zip(jitter, in_order, strict=True), key=_arrival)]
    assert _each_arrives_within_grace(shuffled)
    expected = run(in_order, CONFIG)
    actual = run(shuffled, CONFIG)
    assert per_input(actual) == per_input(expected)
    assert not any(isinstance(o, LateEvent) for o in actual)


def _arrival(item: tuple[int, Record]) -> int:
    jitter, record = item
    return record.received_ms + jitter


def _each_arrives_within_grace(records: Sequence[Record]) -> bool:
    watermark_ms = -(2**63)
    for record in records:
        if record.received_ms + GRACE_MS <= watermark_ms:
            return False
        watermark_ms = max(watermark_ms, record.received_ms)
    return True


@PROPERTY
@given(histories(max_delay_ms=2000), st.data())
def test_duplicates_change_nothing(events: list[Event], data: st.DataObject) -> None:
    records = with_ticks(events)
    copies_after: dict[int, list[Record]] = defaultdict(list)
    for event in data.draw(st.lists(st.sampled_from(events), max_size=10)):
        position = data.draw(st.integers(records.index(event), len(records) - 1))
        copies_after[position].append(
            Event(**{**_fields(event), "received_ms": event.received_ms + 1})
        )
    with_copies = [r for n, record in enumerate(records) for r in (record, *copies_after[n])]
    expected = run(records, CONFIG)
    actual = [o for o in run(with_copies, CONFIG) if not isinstance(o, DuplicateEvent)]
    assert actual == [o for o in expected if not isinstance(o, DuplicateEvent)]


@PROPERTY
@given(histories(max_delay_ms=3000))
def test_every_opened_window_closes_exactly_once_and_never_backwards(events: list[Event]) -> None:
    outputs = run(with_ticks(events), CONFIG)
    opened: dict[str, WindowRecord] = {}
    closed: dict[str, WindowRecord] = {}
    for out in outputs:
        if not isinstance(out, WindowRecord):
            continue
        if out.type == "window.opened":
            assert out.window_id not in opened
            opened[out.window_id] = out
        else:
            assert out.window_id in opened and out.window_id not in closed
            closed[out.window_id] = out
            assert out.closed_ms is not None and out.duration_ms is not None
            assert out.duration_ms == out.closed_ms - out.opened_ms >= 0
    assert opened.keys() == closed.keys()
    for key, windows in per_input(outputs).items():
        open_now = 0
        for window in windows:
            open_now += 1 if window.type == "window.opened" else -1
            assert open_now in (0, 1), f"two windows open at once on {key}"


@PROPERTY
@given(histories(max_delay_ms=3000), st.data())
def test_output_is_a_function_of_the_records_even_across_restarts(
    events: list[Event], data: st.DataObject
) -> None:
    """A worker that stores its state, dies and restores it anywhere gives the same output."""
    records = with_ticks(events)
    expected = run(records, CONFIG)
    restarts = set(data.draw(st.lists(st.integers(0, len(records)), max_size=5)))
    state = PartitionState()
    actual: list[Output] = []
    for position, record in enumerate(records):
        if position in restarts:
            inputs = {}
            for key, input_state in state.inputs.items():
                inputs[key], _ = decode_input(key, encode_input(input_state, position))
                # the record values the runner reads back by offset (test_runtime.py)
                inputs[key].buffer = list(input_state.buffer)
            state = PartitionState.restore(state.watermark_ms, inputs, CONFIG)
        state, out = process(state, record, CONFIG)
        actual.extend(out)
    assert actual == expected
    assert run(records, CONFIG) == expected


@PROPERTY
@given(histories(max_delay_ms=3000))
def test_visiting_only_due_inputs_misses_nothing(events: list[Event]) -> None:
    """The deadline index is an optimisation: a full scan after each record finds nothing."""
    state = PartitionState()
    for record in with_ticks(events):
        state, _ = process(state, record, CONFIG)
        assert state.watermark_ms is not None
        for key, input_state in state.inputs.items():
            copy = replace(
                input_state,
                buffer=list(input_state.buffer),
                seen=dict(input_state.seen),
                seen_at_last=list(input_state.seen_at_last),
            )
            extra: list[Output] = []
            _release(copy, state.watermark_ms, CONFIG, extra)
            assert extra == [] and copy == input_state, f"{key} was due but not visited"


def _fields(event: Event) -> dict[str, object]:
    return {name: getattr(event, name) for name in Event._fields}


HOUR_MS = 3600 * 1000
DAY_MS = 86_400_000  # SPEC §5's day, written out: not the constant under test


@st.composite
def long_histories(draw: st.DrawFn) -> list[Event]:
    """Events of two inputs over three days, often several at the same time (so a
    redelivery at the last applied time is common), delivered up to 2 s late."""
    events = []
    for n in range(draw(st.integers(1, 25))):
        occurred_ms = draw(st.integers(0, 12)) * 6 * HOUR_MS + draw(st.sampled_from((0, 1000)))
        events.append(
            ev(
                f"e{n:03d}",
                draw(st.sampled_from(KINDS)),
                occurred_ms,
                occurred_ms + draw(st.integers(0, 2000)),
                input_id=draw(st.sampled_from(("in1", "in2"))),
            )
        )
    return events


def hourly_ticks(events: Sequence[Event]) -> list[Record]:
    end_ms = max(e.received_ms for e in events) + 10_000
    ticks = [Tick(t) for t in range(T0, end_ms, HOUR_MS)]
    return [*sorted([*events, *ticks], key=lambda r: r.received_ms), Tick(end_ms)]


@PROPERTY
@given(long_histories(), st.data())
def test_a_redelivery_days_later_is_a_duplicate_inside_the_seen_rule_and_harmless_outside(
    events: list[Event], data: st.DataObject
) -> None:
    """SPEC §5's seen-id rule: a redelivery (the same id, received whenever the
    provider retries) is dropped as a duplicate while its id is kept; once forgotten
    it is published late or applied again; either way no window changes."""
    records = hourly_ticks(events)
    copies_after: dict[int, list[Event]] = defaultdict(list)
    for event in data.draw(st.lists(st.sampled_from(events), max_size=6)):
        position = data.draw(st.integers(records.index(event), len(records) - 2))
        copies_after[position].append(event._replace(value=b"redelivered"))
    state = PartitionState()
    outputs: list[Output] = []
    must_be_duplicates = 0
    for n, record in enumerate(records):
        state, out = process(state, record, CONFIG)
        outputs += out
        for copy in copies_after[n]:
            assert state.watermark_ms is not None
            # released at a watermark >= received_at + grace, so less than a day ago,
            # or applied at the input's last applied time (SPEC §5)
            input_state = state.inputs[copy.key]
            inside = (
                state.watermark_ms - (copy.received_ms + GRACE_MS) < DAY_MS
                or copy.occurred_ms == input_state.last_applied_ms
            )
            redelivery = copy._replace(received_ms=state.watermark_ms)  # the clock as now
            state, out = process(state, redelivery, CONFIG)
            outputs += out
            if inside:
                must_be_duplicates += 1
                assert out == [DuplicateEvent(redelivery)], "a kept id was not a duplicate"
    assert per_input(outputs) == per_input(run(records, CONFIG))
    duplicates = [o for o in outputs if isinstance(o, DuplicateEvent)]
    assert len(duplicates) >= must_be_duplicates


@PROPERTY
@given(long_histories())
def test_a_released_input_keeps_the_ids_of_its_last_day_and_those_at_its_last_applied_time(
    events: list[Event],
) -> None:
    """Its state depends on its last day of traffic, not on its age. (An input not
    released again keeps older ids until it is; they no longer count as seen.)"""
    state = PartitionState()
    released_at: dict[str, int] = {}
    for record in hourly_ticks(events):
        before = {k: {e.event_id for e in s.buffer} for k, s in state.inputs.items()}
        state, _ = process(state, record, CONFIG)
        watermark_ms = state.watermark_ms
        assert watermark_ms is not None
        for key, input_state in state.inputs.items():
            released = before.get(key, set()) - {e.event_id for e in input_state.buffer}
            if not released:
                continue
            released_at.update(dict.fromkeys(released, watermark_ms))
            recent = {
                seen_digest(event_id)
                for event_id, ms in released_at.items()
                if ms > watermark_ms - DAY_MS and _key_of(events, event_id) == key
            }
            at_last = {
                seen_digest(e.event_id)
                for e in events
                if e.key == key and e.occurred_ms == input_state.last_applied_ms
            }
            assert set(input_state.seen) <= recent | at_last
            assert set(input_state.seen_at_last) <= at_last


def _key_of(events: Sequence[Event], event_id: str) -> str:
    return next(e.key for e in events if e.event_id == event_id)
