"""The contract's timestamp format: RFC 3339 UTC with exactly three fractional digits.

Providers send seconds, nanoseconds (Cloudflare) or seven digits (Gjirafa); finer
precision is always *truncated*, never rounded, so a provider's retry of an event
maps to the same millisecond and so to the same deterministic event id.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import lru_cache

__all__ = ["InvalidTimestamp", "canonical_ms", "format_ms", "normalize", "parse_ms"]

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)
_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_CANONICAL_ASCII = re.compile(_CANONICAL.pattern, re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000
# Minutes seen recently, both ways: "YYYY-MM-DDTHH:MM" -> epoch ms of that minute
# (only ASCII prefixes that passed the full check), and epoch minute -> "YYYY-MM-DDTHH:MM:".
# Records of a stream are close in time, so a few entries serve nearly every call;
# the caches are cleared when full rather than grown.
_MINUTES_KEPT = 4096
_MINUTES: dict[str, int] = {}
_MINUTE_TEXTS: dict[int, str] = {}
_SECOND_TEXTS: list[str] = []
# Seconds seen recently in the canonical form: "YYYY-MM-DDTHH:MM:SS" -> epoch ms,
# a cached minute and a valid ":SS" (a stream's records share their second with
# hundreds of others, so one lookup and the fraction table decode most).
_SECONDS: dict[str, int] = {}
# The parts of the canonical form's tail: ":SS" -> ms and ".mmmZ" -> ms.
_SECOND_MS = {f":{second:02d}": second * 1000 for second in range(60)}
_FRACTION_MS = {f".{milli:03d}Z": milli for milli in range(1000)}


class InvalidTimestamp(ValueError):
    """A timestamp that is not RFC 3339 (a missing zone is read as UTC)."""


def canonical_ms(text: str) -> int | None:
    """`parse_ms(text)` if `text` is exactly the contract's form in ASCII digits, else None.

    For fast paths that must accept nothing the contract's pattern refuses: a
    None (or an `InvalidTimestamp` for an impossible date) sends the caller to its
    full check.
    """
    if len(text) == 24:
        ms = _seen_second_ms(text)
        if ms is not None:
            return ms
        if _CANONICAL_ASCII.fullmatch(text):
            return parse_ms(text)
    return None


def parse_ms(text: str) -> int:
    """Milliseconds since the epoch; sub-millisecond digits are truncated."""
    if len(text) == 24:
        # Hot path: the contract's own form, whose second (or else minute) was seen
        # before. The cached prefixes passed the full check below, and the two
        # small tables hold only valid ":SS" and ".mmmZ" parts, so lookups check
        # and convert.
        ms = _seen_second_ms(text)
        if ms is not None:
            return ms
        minute_ms = _MINUTES.get(text[:16])
        if minute_ms is not None:
            seconds_ms = _SECOND_MS.get(text[16:19])
            milli = _FRACTION_MS.get(text[19:])
            if seconds_ms is not None and milli is not None:
                _remember_second(text, minute_ms + seconds_ms)
                return minute_ms + seconds_ms + milli
        if _CANONICAL.fullmatch(text):
            # The contract's form: no datetime.
            if not _valid_clock(text):
                _invalid(text)
            minute_ms = (
                _day_ms(text[:10]) + int(text[11:13]) * 3_600_000 + int(text[14:16]) * 60_000
            )
            if text[:16].isascii():  # "0\u0660" passes the clock check and int()
                if len(_MINUTES) >= _MINUTES_KEPT:
                    _MINUTES.clear()
                _MINUTES[text[:16]] = minute_ms
            return minute_ms + int(text[17:19]) * 1000 + int(text[20:23])
    if len(text) >= 20 and text[-1] == "Z" and text[16] == ":":
        # Warm path: a seen minute, then seconds with any fraction (or none) and Z,
        # as providers send them (nanoseconds, seven digits). Same checks as below.
        minute_ms = _MINUTES.get(text[:16])
        if minute_ms is not None:
            second_text = text[17:19]
            if second_text.isdecimal() and second_text < "60":
                if len(text) == 20:
                    return minute_ms + int(second_text) * 1000
                fraction = text[20:-1]
                if text[19] == "." and fraction.isdecimal():
                    millis = int(fraction[:3].ljust(3, "0"))
                    return minute_ms + int(second_text) * 1000 + millis
    stripped = text.strip()
    match = _RFC3339.match(stripped)
    if match is None:
        raise InvalidTimestamp(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError as exc:
        raise InvalidTimestamp(f"not a valid date or time: {text!r}") from exc
    prefix = text[:16]
    if len(stripped) == len(text) and text[10] == "T" and prefix.isascii():
        # A valid "YYYY-MM-DDTHH:MM" (ASCII digits, as the canonical path caches).
        if len(_MINUTES) >= _MINUTES_KEPT:
            _MINUTES.clear()
        _MINUTES[prefix] = int((moment.replace(second=0) - _EPOCH).total_seconds()) * 1000
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    offset_ms = 0
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:  # RFC 3339's time-numoffset
            raise InvalidTimestamp(f"not a valid UTC offset: {text!r}")
        offset_ms = sign * (hours * 60 + minutes) * 60_000
    seconds = int((moment - _EPOCH).total_seconds())
    return seconds * 1000 + millis - offset_ms


def format_ms(ms: int) -> str:
    """`2022-01-13T11:43:41.855Z` for a millisecond epoch time."""
    minute, rest = divmod(ms, 60_000)
    prefix = _MINUTE_TEXTS.get(minute)
    if prefix is None:
        days, rest_of_day = divmod(minute * 60_000, _DAY_MS)
        hours, rest_of_day = divmod(rest_of_day, 3_600_000)
        prefix = f"{_day_text(days)}T{hours:02d}:{rest_of_day // 60_000:02d}:"
        if len(_MINUTE_TEXTS) >= _MINUTES_KEPT:
            _MINUTE_TEXTS.clear()
        _MINUTE_TEXTS[minute] = prefix
    return prefix + _second_texts()[rest]


def _second_texts() -> list[str]:
    """ "SS.mmmZ" for each millisecond of a minute (built on first use: 60,000 strings).

    Built whole, then added in one step: extending from a generator would show other
    threads a part of the list (a load generator's senders format times at once).
    """
    if not _SECOND_TEXTS:
        _SECOND_TEXTS.extend([f"{s:02d}.{m:03d}Z" for s in range(60) for m in range(1000)])
    return _SECOND_TEXTS


@lru_cache(maxsize=4096)
def _day_ms(day: str) -> int:
    try:
        return (date.fromisoformat(day).toordinal() - _EPOCH_ORDINAL) * _DAY_MS
    except ValueError:
        raise InvalidTimestamp(f"not a valid date: {day!r}") from None


@lru_cache(maxsize=4096)
def _day_text(days: int) -> str:
    return date.fromordinal(days + _EPOCH_ORDINAL).isoformat()


def _seen_second_ms(text: str) -> int | None:
    """A 24-character text's ms if its second is cached and its tail is ".mmmZ"."""
    second_ms = _SECONDS.get(text[:19])
    if second_ms is not None:
        milli = _FRACTION_MS.get(text[19:])
        if milli is not None:
            return second_ms + milli
    return None


def _remember_second(text: str, second_ms: int) -> None:
    """Cache the second prefix of a text whose minute was cached and ":SS" checked."""
    if len(_SECONDS) >= _MINUTES_KEPT:
        _SECONDS.clear()
    _SECONDS[text[:19]] = second_ms


def _valid_clock(text: str) -> bool:
    return text[11:13] < "24" and text[14:16] < "60" and text[17:19] < "60"


def _invalid(text: str) -> int:
    raise InvalidTimestamp(f"not a valid date or time: {text!r}")


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def normalize(text: str) -> str:
    """Any accepted RFC 3339 form in the contract's canonical form."""
    return format_ms(parse_ms(text))
