"""Bytes on the windows topic to `Window`, or a reason to skip the record.

Billing sums `duration_ms`, so a record is accepted only if it is consistent with
itself as well as with the schema: a closed window has its close fields and a
duration equal to `closed_at - opened_at`; an opened one has none of them.
Anything else would put a wrong number into the totals, so it is skipped.
"""

from __future__ import annotations

from pydantic import ValidationError

from schemas.records import Window
from schemas.timestamps import InvalidTimestamp, parse_ms

__all__ = ["InvalidWindow", "decode_window"]


class InvalidWindow(ValueError):
    """A record that is not a valid window record of the contract."""


def decode_window(value: bytes | None) -> Window:
    """The window record in `value`; raises `InvalidWindow` saying what is wrong."""
    if not value:
        raise InvalidWindow("empty record value")
    try:
        window = Window.model_validate_json(value)
    except ValidationError as exc:
        raise InvalidWindow(_describe(exc)) from None
    _check_consistent(window)
    return window


def _check_consistent(window: Window) -> None:
    # What a store could not hold must be refused here: one record a database
    # refuses would fail its whole batch, again at every restart.
    texts = (window.input_id, window.opening_event_id, window.closing_event_id or "")
    if any("\x00" in text for text in texts):
        raise InvalidWindow("a NUL character in input_id or an event id")
    opened_ms = _ms(window.opened_at)
    close_fields = (window.closed_at, window.duration_ms, window.close_reason)
    if window.type == "window.opened":
        if any(field is not None for field in (*close_fields, window.closing_event_id)):
            raise InvalidWindow("window.opened with close fields")
        return
    if window.closed_at is None or window.duration_ms is None or window.close_reason is None:
        raise InvalidWindow("window.closed without closed_at, duration_ms or close_reason")
    elapsed_ms = _ms(window.closed_at) - opened_ms
    if elapsed_ms != window.duration_ms:
        raise InvalidWindow(
            f"duration_ms {window.duration_ms} is not closed_at - opened_at = {elapsed_ms}"
        )


def _ms(text: str) -> int:
    try:
        return parse_ms(text)
    except InvalidTimestamp as exc:  # the form is checked, not the calendar
        raise InvalidWindow(str(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "record"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)
