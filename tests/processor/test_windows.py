"""SPEC §5 transition by transition, on the pure core: no Kafka, no clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from processor.changelog import decode_input, encode_input
from processor.windows import (
    SEEN_CAP,
    Config,
    DuplicateEvent,
    PartitionState,
    WindowRecord,
    process,
    seen_digest,
    window_id,
)
from tests.processor.corekit import T0, closed, ev, late_ids, run, tick, windows

CONFIG = Config(grace_ms=500, reconnect_window_s=2)
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_window_id_is_sha256_of_input_and_opening_event() -> None:
    assert window_id("cloudflare", "in1", "b") == "b7b9bb69780b5168768034850000a5d8"


def test_config_rejects_a_grace_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="grace_ms"):
        Config(grace_ms=0, reconnect_window_s=60)


def test_nothing_is_released_before_the_grace_has_passed() -> None:
    outputs = run([ev("a", "connected", 0), ev("b", "disconnected", 1000), tick(1499)], CONFIG)
    assert windows(outputs) == []


def test_disconnect_opens_a_window_once_the_grace_has_passed() -> None:
    outputs = run([ev("a", "connected", 0), ev("b", "disconnected", 1000), tick(1500)], CONFIG)
    [opened] = windows(outputs)
    assert opened.type == "window.opened"
    assert opened.opened_ms == T0 + 1000
    assert (opened.closed_ms, opened.close_reason, opened.closing_event_id) == (None, None, None)
    assert opened.open_reason == "disconnected"
    assert opened.to_dict()["duration_ms"] is None


def test_errored_opens_a_window_with_its_own_reason() -> None:
    outputs = run([ev("b", "errored", 0), tick(600)], CONFIG)
    assert [w.open_reason for w in windows(outputs)] == ["errored"]


def test_a_first_event_of_an_unknown_input_may_open_a_window() -> None:
    outputs = run([ev("b", "disconnected", 0), tick(600)], CONFIG)
    assert [w.type for w in windows(outputs)] == ["window.opened"]


def test_connected_closes_the_open_window_as_reconnected() -> None:
    outputs = run([ev("b", "disconnected", 0), ev("c", "connected", 700), tick(10_000)], CONFIG)
    [window] = closed(outputs)
    assert (window.close_reason, window.closing_event_id) == ("reconnected", "c")
    assert (window.closed_ms - window.opened_ms, window.duration_ms) == (700, 700)


def test_a_second_disconnect_while_open_opens_nothing_new() -> None:
    outputs = run(
        [
            ev("b", "disconnected", 0),
            ev("d", "errored", 100),
            ev("c", "connected", 200),
            tick(10_000),
        ],
        CONFIG,
    )
    assert [(w.type, w.opening_event_id) for w in windows(outputs)] == [
        ("window.opened", "b"),
        ("window.closed", "b"),
    ]


def test_ended_closes_the_open_window_and_blocks_new_ones() -> None:
    outputs = run(
        [
            ev("b", "disconnected", 0),
            ev("e", "ended", 300),
            ev("f", "disconnected", 400),
            tick(10_000),
        ],
        CONFIG,
    )
    assert [(w.type, w.close_reason, w.closing_event_id) for w in windows(outputs)] == [
        ("window.opened", None, None),
        ("window.closed", "ended", "e"),
    ]


def test_connected_after_ended_makes_the_input_live_again() -> None:
    outputs = run(
        [
            ev("e", "ended", 0),
            ev("c", "connected", 100),
            ev("d", "disconnected", 200),
            tick(10_000),
        ],
        CONFIG,
    )
    assert [w.opening_event_id for w in closed(outputs)] == ["d"]


def test_other_events_change_nothing_but_are_applied() -> None:
    outputs = run(
        [ev("b", "disconnected", 0), ev("o", "other", 100), ev("c", "connected", 200), tick(5_000)],
        CONFIG,
    )
    assert [(w.close_reason, w.closed_ms) for w in closed(outputs)] == [("reconnected", T0 + 200)]


def test_watermark_time_out_closes_at_opened_plus_reconnect_window() -> None:
    outputs = run([ev("b", "disconnected", 0), tick(2499)], CONFIG)
    assert closed(outputs) == []
    outputs = run([ev("b", "disconnected", 0), tick(2500)], CONFIG)
    [window] = closed(outputs)
    assert (window.close_reason, window.closing_event_id) == ("timed_out", None)
    assert window.closed_ms == T0 + 2000 and window.duration_ms == 2000


def test_event_time_time_out_comes_before_a_late_reconnect_is_applied() -> None:
    outputs = run([ev("b", "disconnected", 0), ev("c", "connected", 3000, 100), tick(5000)], CONFIG)
    [window] = closed(outputs)
    assert (window.close_reason, window.closed_ms) == ("timed_out", T0 + 2000)


def test_a_reconnect_at_exactly_the_time_out_is_too_late() -> None:
    outputs = run([ev("b", "disconnected", 0), ev("c", "connected", 2000), tick(9000)], CONFIG)
    assert [w.close_reason for w in closed(outputs)] == ["timed_out"]


def test_after_a_time_out_the_input_is_ended() -> None:
    outputs = run(
        [ev("b", "disconnected", 0), tick(3000), ev("d", "disconnected", 4000), tick(9000)],
        CONFIG,
    )
    assert [w.opening_event_id for w in windows(outputs)] == ["b", "b"]


def test_reconnect_window_from_the_payload_applies_to_later_windows() -> None:
    outputs = run(
        [
            ev("a", "connected", 0, reconnect_window_s=10),
            ev("b", "disconnected", 1000),
            tick(11_000),
            ev("c", "connected", 10_500, 11_000),
            tick(20_000),
        ],
        CONFIG,
    )
    [window] = closed(outputs)
    assert (window.close_reason, window.duration_ms) == ("reconnected", 9500)


def test_an_event_older_than_the_last_applied_one_is_late() -> None:
    outputs = run(
        [ev("a", "connected", 1000), tick(2000), ev("b", "disconnected", 500, 2100), tick(3000)],
        CONFIG,
    )
    assert late_ids(outputs) == ["b"]
    assert windows(outputs) == []


def test_a_late_event_is_seen_so_its_redelivery_is_a_duplicate() -> None:
    late = ev("b", "disconnected", 500, 2100)
    outputs = run([ev("a", "connected", 1000), tick(2000), late, tick(3000), late], CONFIG)
    assert late_ids(outputs) == ["b"]
    assert [o.event.event_id for o in outputs if isinstance(o, DuplicateEvent)] == ["b"]


def test_duplicates_in_the_buffer_and_after_release_are_dropped() -> None:
    b = ev("b", "disconnected", 0)
    outputs = run([b, b, tick(1000), b, tick(9000)], CONFIG)
    assert sum(isinstance(o, DuplicateEvent) for o in outputs) == 2
    assert [w.type for w in windows(outputs)] == ["window.opened", "window.closed"]


def test_a_duplicate_does_not_advance_the_watermark() -> None:
    b = ev("b", "disconnected", 0)
    state = PartitionState()
    for record in (b, tick(100)):
        state, _ = process(state, record, CONFIG)
    later_copy = ev("b", "disconnected", 0, 50_000)
    state, outputs = process(state, later_copy, CONFIG)
    assert state.watermark_ms == T0 + 100
    assert outputs == [DuplicateEvent(later_copy)]


def test_same_occurred_time_is_ordered_by_event_id() -> None:
    outputs = run(
        [ev("z", "connected", 100), ev("m", "disconnected", 100), tick(5000)],
        CONFIG,
    )
    # m (disconnected) applies before z (connected): a zero-length window.
    [window] = closed(outputs)
    assert (window.opening_event_id, window.closing_event_id, window.duration_ms) == ("m", "z", 0)


def test_inputs_are_independent() -> None:
    outputs = run(
        [
            ev("b1", "disconnected", 0, input_id="one"),
            ev("b2", "disconnected", 100, input_id="two"),
            ev("c2", "connected", 300, input_id="two"),
            tick(9000),
        ],
        CONFIG,
    )
    reasons = {w.input_id: w.close_reason for w in closed(outputs)}
    assert reasons == {"one": "timed_out", "two": "reconnected"}


def test_an_event_received_long_ago_is_released_at_once() -> None:
    outputs = run([tick(10_000), ev("b", "disconnected", 0, 100)], CONFIG)
    assert [w.type for w in windows(outputs)] == ["window.opened", "window.closed"]


def test_seen_ids_are_forgotten_a_day_after_their_release_except_those_at_the_last_time() -> None:
    records = [ev(f"o{i:05d}", "other", i, i) for i in range(1200)]
    state = PartitionState()
    for record in [*records, tick(10_000)]:
        state, _ = process(state, record, CONFIG)
    seen = state.inputs["cloudflare:in1"].seen
    # Younger than 24 h: all kept.
    assert len(seen) == 1200
    day = 24 * 3600 * 1000
    state, _ = process(state, tick(10_000 + day - 1), CONFIG)
    state, _ = process(state, ev("x", "other", 10_000 + day - 1), CONFIG)
    state, _ = process(state, tick(10_000 + day + 1000), CONFIG)
    after = state.inputs["cloudflare:in1"]
    # Released at 10,000 ms, a day and a bit ago: all forgotten but x, which is
    # also the id applied at the last applied time.
    assert list(after.seen) == [seen_digest("x")] == after.seen_at_last
    state, outputs = process(state, ev("o01199", "other", 1199, 10_000 + day + 1001), CONFIG)
    state, outputs2 = process(state, tick(10_000 + day + 2000), CONFIG)
    assert late_ids([*outputs, *outputs2]) == ["o01199"]


def test_seen_ids_are_capped_oldest_first() -> None:
    records = [ev(f"o{i:05d}", "other", i // 4, i // 4) for i in range(SEEN_CAP + 5)]
    state = PartitionState()
    for n, record in enumerate(records):
        state, _ = process(state, record, CONFIG)
        if n % 400 == 0:
            state, _ = process(state, tick(n // 4), CONFIG)
    state, _ = process(state, tick(SEEN_CAP), CONFIG)
    seen = state.inputs["cloudflare:in1"].seen
    assert len(seen) == SEEN_CAP
    assert seen_digest("o00004") not in seen and seen_digest("o00005") in seen


def test_an_id_among_the_last_arrived_is_kept_though_received_long_before() -> None:
    # 1,000 events received 25 h after x, x and y arriving behind them: x and y are
    # released at once, before the 1,000, yet they are among the last 1,000 to
    # arrive, so x delivered again is still a duplicate (before, it was forgotten,
    # applied again and its window_id came out twice, with different content).
    day = 25 * 3600 * 1000
    records = [ev(f"a{i:04d}", "other", i, day) for i in range(1, 1001)]
    records += [ev("x", "disconnected", 5000, 5000), ev("y", "connected", 5000, 5000)]
    records += [tick(day + CONFIG.grace_ms), ev("x", "disconnected", 5000, 5000)]
    records += [tick(day + 200_000)]
    outputs = run(records, CONFIG)
    assert [(w.type, w.close_reason) for w in windows(outputs)] == [
        ("window.opened", None),
        ("window.closed", "reconnected"),
    ]
    assert sum(isinstance(out, DuplicateEvent) for out in outputs) == 1


def test_input_state_round_trips_through_the_changelog_format() -> None:
    state = PartitionState()
    for record in (
        ev("a", "connected", 0, reconnect_window_s=7),
        ev("b", "disconnected", 100)._replace(traceparent=TRACEPARENT),
        tick(700),
        ev("c", "connected", 900)._replace(offset=3),
    ):
        state, _ = process(state, record, CONFIG)
    original = state.inputs["cloudflare:in1"]
    assert original.window is not None and original.buffer and original.seen
    assert original.window.opening_traceparent == TRACEPARENT
    copy, offset = decode_input("cloudflare:in1", encode_input(original, 41))
    # What is not stored: the buffered event's record value (read back by offset).
    assert copy == replace(original, buffer=[e._replace(value=b"") for e in original.buffer])
    assert offset == 41


def test_restore_rebuilds_pending_deadlines() -> None:
    state = PartitionState()
    for record in (ev("b", "disconnected", 0), tick(600)):
        state, _ = process(state, record, CONFIG)
    restored = PartitionState.restore(state.watermark_ms, dict(state.inputs), CONFIG)
    assert restored.pending() == 1
    restored, outputs = process(restored, tick(3000), CONFIG)
    assert [w.close_reason for w in closed(outputs)] == ["timed_out"]


def test_window_records_carry_the_contract_fields() -> None:
    outputs = run([ev("b", "disconnected", 0), ev("c", "connected", 250), tick(900)], CONFIG)
    record = closed(outputs)[0].to_dict()
    assert record == {
        "schema": "livewindows/window/v1",
        "type": "window.closed",
        "window_id": window_id("cloudflare", "in1", "b"),
        "provider": "cloudflare",
        "input_id": "in1",
        "opened_at": "2026-09-21T14:13:20.000Z",
        "closed_at": "2026-09-21T14:13:20.250Z",
        "duration_ms": 250,
        "open_reason": "disconnected",
        "close_reason": "reconnected",
        "opening_event_id": "b",
        "closing_event_id": "c",
    }
    assert all(isinstance(o, WindowRecord) for o in windows(outputs))
