"""The contract's timestamp format: RFC 3339 UTC with exactly three fractional digits.

Providers send seconds, nanoseconds (Cloudflare) or seven digits (Gjirafa); finer
precision is always *truncated*, never rounded, so a provider's retry of an event
maps to the same millisecond and so to the same deterministic event id.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import lru_cache

__all__ = ["InvalidTimestamp", "format_ms", "normalize", "parse_ms"]

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)
_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000


class InvalidTimestamp(ValueError):
    """A timestamp that is not RFC 3339 (a missing zone is read as UTC)."""


def parse_ms(text: str) -> int:
    """Milliseconds since the epoch; sub-millisecond digits are truncated."""
    if len(text) == 24 and _CANONICAL.fullmatch(text):
        # The contract's own form, on every record of the hot path: no datetime.
        return (
            (
                _day_ms(text[:10])
                + int(text[11:13]) * 3_600_000
                + int(text[14:16]) * 60_000
                + int(text[17:19]) * 1000
                + int(text[20:23])
            )
            if _valid_clock(text)
            else _invalid(text)
        )
    match = _RFC3339.match(text.strip())
    if match is None:
        raise InvalidTimestamp(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError as exc:
        raise InvalidTimestamp(f"not a valid date or time: {text!r}") from exc
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    offset_ms = 0
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset_ms = sign * (int(digits[:2]) * 60 + int(digits[2:])) * 60_000
    seconds = int((moment - _EPOCH).total_seconds())
    return seconds * 1000 + millis - offset_ms


def format_ms(ms: int) -> str:
    """`2022-01-13T11:43:41.855Z` for a millisecond epoch time."""
    days, rest = divmod(ms, _DAY_MS)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{_day_text(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


@lru_cache(maxsize=4096)
def _day_ms(day: str) -> int:
    try:
        return (date.fromisoformat(day).toordinal() - _EPOCH_ORDINAL) * _DAY_MS
    except ValueError:
        raise InvalidTimestamp(f"not a valid date: {day!r}") from None


@lru_cache(maxsize=4096)
def _day_text(days: int) -> str:
    return date.fromordinal(days + _EPOCH_ORDINAL).isoformat()


def _valid_clock(text: str) -> bool:
    return text[11:13] < "24" and text[14:16] < "60" and text[17:19] < "60"


def _invalid(text: str) -> int:
    raise InvalidTimestamp(f"not a valid date or time: {text!r}")


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def normalize(text: str) -> str:
    """Any accepted RFC 3339 form in the contract's canonical form."""
    return format_ms(parse_ms(text))
