"""Which assignor belongs to which engine (`processor.group`); the waiting and the
refusal run against a real broker in tests/processor/test_worker_engine_switch.py
and in each engine's own worker tests."""

from __future__ import annotations

import pytest

from plumbing.settings import ConfigError
from processor.group import GroupHeldByOtherEngine, held_by_other_engine, patience_s


@pytest.mark.parametrize(
    ("engine", "assignor", "held"),
    [
        ("kafka", "faust", True),
        ("faust", "range", True),
        ("faust", "roundrobin", True),
        ("faust", "cooperative-sticky", True),
        ("kafka", "range", False),
        ("kafka", "roundrobin", False),
        ("faust", "faust", False),
        ("kafka", "", False),  # no members, or none has chosen an assignor yet
        ("faust", "", False),
    ],
)
def test_a_group_is_held_by_the_other_engine_when_its_assignor_is_the_others(
    engine: str, assignor: str, held: bool
) -> None:
    assert held_by_other_engine(engine, assignor) is held


def test_the_refusal_is_a_configuration_error_that_says_what_to_do() -> None:
    refusal = GroupHeldByOtherEngine("billing-workers", "kafka", "faust")
    assert isinstance(refusal, ConfigError)
    assert "billing-workers" in str(refusal) and "faust engine" in str(refusal)
    assert "stop those workers first, or use another PROCESSOR_APP_ID" in str(refusal)


def test_the_refusal_names_consumers_of_neither_engine_as_such() -> None:
    refusal = str(GroupHeldByOtherEngine("billing-workers", "kafka", "cooperative-sticky"))
    assert "held by consumers with assignor 'cooperative-sticky', not livewindows workers" in (
        refusal
    )
    assert "engine" not in refusal.split(";")[0]  # not taken for the Faust engine's workers
    assert "stop those consumers first, or use another PROCESSOR_APP_ID" in refusal
    faust_side = str(GroupHeldByOtherEngine("billing-workers", "faust", "range"))
    assert "workers of the kafka engine (assignor 'range')" in faust_side


def test_the_other_engine_may_hold_the_group_for_two_session_timeouts_and_a_margin() -> None:
    assert patience_s(10_000) == 25.0
    assert patience_s(6_000) == 17.0
