"""Pieces shared by the provider webhook models.

Provider models are deliberately tolerant: unknown fields are kept
(`extra="allow"`) and only what the SPEC §3 mapping needs is required and typed,
so a provider adding or reshaping a cosmetic field never costs us an event, and
a 422 names exactly the fields the mapping could not use.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from schemas.records import check_occurred_ms
from schemas.timestamps import format_ms, parse_ms

__all__ = ["NonEmptyStr", "ProviderModel", "Rfc3339", "check_rfc3339"]


def check_rfc3339(text: str) -> str:
    # Normalizing here (not only later) turns an unusable timestamp into a field
    # error with its location, and catches dates that parse but cannot be
    # formatted back (an offset pushing year 1 before the epoch of `date`).
    try:
        ms = parse_ms(text)
        format_ms(ms)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:64]!r}") from exc
    check_occurred_ms(ms)  # an event time: its window's close must be writable too
    return text


Rfc3339 = Annotated[
    str,
    AfterValidator(check_rfc3339),
    Field(description="RFC 3339 time; digits below the millisecond are truncated"),
]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _id_text(text: str) -> str:
    # An id of spaces would make every such event one id (and the next ones
    # duplicates); a NUL or other control character is no id either, and one in
    # an input id would reach every window record and store downstream.
    if text.isspace():
        raise ValueError("must not be blank")
    if _CONTROL.search(text):
        raise ValueError("must not contain control characters")
    return text


NonEmptyStr = Annotated[str, Field(min_length=1), AfterValidator(_id_text)]


class ProviderModel(BaseModel):
    """Base of every provider model: extra fields allowed and kept."""

    model_config = ConfigDict(extra="allow", frozen=True)
