"""The contract's timestamp format: RFC 3339 UTC with exactly three fractional digits.

Providers send seconds, nanoseconds (Cloudflare) or seven digits (Gjirafa); finer
precision is always *truncated*, never rounded, so a provider's retry of an event
maps to the same millisecond and so to the same deterministic event id.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["InvalidTimestamp", "format_ms", "parse_ms", "normalize"]

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidTimestamp(ValueError):
    """A timestamp that is not RFC 3339 (a missing zone is read as UTC)."""


def parse_ms(text: str) -> int:
    """Milliseconds since the epoch; sub-millisecond digits are truncated."""
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
    seconds, millis = divmod(ms, 1000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


def normalize(text: str) -> str:
    """Any accepted RFC 3339 form in the contract's canonical form."""
    return format_ms(parse_ms(text))
