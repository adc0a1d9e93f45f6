"""The changelog format folded back into a partition's state: what both engines restore."""

from __future__ import annotations

import pytest

from processor.changelog import (
    ChangelogGap,
    Position,
    Wal,
    encode_input,
    encode_wal_parts,
    fold,
    input_key,
    position_key,
    wal_key,
)
from processor.windows import InputState


def _input(status: str, offset: int) -> bytes:
    return encode_input(InputState(status=status), offset)


def test_the_last_value_of_each_key_wins_and_a_tombstone_deletes() -> None:
    stored = fold(
        3,
        [
            (input_key(3, "fastpix:a"), _input("live", 1)),
            (input_key(3, "fastpix:b"), _input("live", 1)),
            (position_key(3), Position(2, 100).encode()),
            (input_key(3, "fastpix:a"), _input("ended", 5)),
            (input_key(3, "fastpix:b"), None),
            (position_key(3), Position(6, 200).encode()),
        ],
    )
    assert stored.position == Position(6, 200)
    assert {key: state.status for key, state in stored.inputs.items()} == {"fastpix:a": "ended"}
    assert stored.redone is None


def test_keys_of_other_partitions_are_not_this_partitions_state() -> None:
    stored = fold(0, [(input_key(1, "fastpix:a"), _input("live", 1)), (None, b"x")])
    assert stored.inputs == {} and stored.position is None


def test_a_whole_wal_past_the_position_is_redone() -> None:
    changes = {"cloudflare:j": _input("live", 9), "cloudflare:k": _input("ended", 9)}
    parts = encode_wal_parts(Wal(7, 10, 500, changes))
    stored = fold(
        0,
        [
            (input_key(0, "cloudflare:j"), _input("disconnected", 6)),
            (position_key(0), Position(7, 400).encode()),
            *[(wal_key(0, n), part) for n, part in enumerate(parts)],
            (
                input_key(0, "cloudflare:j"),
                changes["cloudflare:j"],
            ),  # one key written, then a crash
        ],
    )
    assert stored.position == Position(10, 500)
    assert {key: state.status for key, state in stored.inputs.items()} == {
        "cloudflare:j": "live",
        "cloudflare:k": "ended",
    }
    assert stored.redone is not None and stored.redone.changes == changes


def test_a_wal_the_position_has_passed_is_history() -> None:
    (part,) = encode_wal_parts(Wal(7, 10, 500, {"cloudflare:j": _input("live", 9)}))
    stored = fold(
        0,
        [
            (wal_key(0, 0), part),
            (input_key(0, "cloudflare:j"), _input("ended", 12)),
            (position_key(0), Position(13, 900).encode()),
        ],
    )
    assert stored.position == Position(13, 900) and stored.redone is None
    assert stored.inputs["cloudflare:j"].status == "ended"


def test_a_wal_with_a_missing_part_is_ignored() -> None:
    big = {
        f"gjirafa:{n}": encode_input(InputState(status="live"), 9) + b" " * 50_000
        for n in range(30)
    }
    parts = encode_wal_parts(Wal(7, 10, 500, big))
    assert len(parts) > 1
    stored = fold(0, [(position_key(0), Position(7, 400).encode()), (wal_key(0, 0), parts[0])])
    assert stored.position == Position(7, 400) and stored.redone is None and stored.inputs == {}


def test_a_wal_that_does_not_follow_the_position_is_a_gap() -> None:
    (part,) = encode_wal_parts(Wal(8, 10, 500, {}))
    with pytest.raises(ChangelogGap, match="does not follow the stored position 7"):
        fold(0, [(position_key(0), Position(7, 400).encode()), (wal_key(0, 0), part)])


def test_inputs_written_past_the_position_are_named() -> None:
    # A previous owner's batch [5, 9) became visible after the new owner had stored
    # [5, 7) (a race the kafka engine now waits out): k keeps the old owner's value.
    stored = fold(
        0,
        [
            (position_key(0), Position(5, 100).encode()),
            (input_key(0, "fastpix:j"), _input("live", 8)),
            (input_key(0, "fastpix:k"), _input("live", 8)),
            (position_key(0), Position(9, 300).encode()),
            (input_key(0, "fastpix:j"), _input("ended", 6)),
            (position_key(0), Position(7, 200).encode()),
        ],
    )
    assert stored.position == Position(7, 200)
    assert stored.ahead == ("fastpix:k",)
    consistent = fold(
        0,
        [
            (input_key(0, "fastpix:j"), _input("live", 6)),
            (position_key(0), Position(7, 200).encode()),
        ],
    )
    assert consistent.ahead == ()
