"""Credential redaction of provider payloads (SPEC §2), applied before publish or log.

FastPix sends credentials: `data.streamKey` (the stream's and a simulcast
target's) and the key part (last path segment) of a simulcast `data.rtmpUrl`.
The rule is applied to every mapping at every depth and to every provider, by
field name: a credential nested where the docs do not show one (a list of
simulcast targets inside a stream, say) is redacted just the same, and a
payload that failed validation can still be logged safely.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["REDACTED", "redact", "redact_rtmp_url"]

REDACTED = "[redacted]"


def _field(name: str) -> str:
    return name.replace("_", "").replace("-", "").casefold()


_KEY_FIELDS = frozenset({"streamkey"})
_URL_FIELDS = frozenset({"rtmpurl", "rtmpsurl", "srturl"})


def redact_rtmp_url(url: object) -> object:
    """`rtmp://host/app/<key>` → `rtmp://host/app/[redacted]`; anything odd → `[redacted]`."""
    if url is None or url == "":
        return url
    if not isinstance(url, str):
        return REDACTED
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    head, slash, last = parts.path.rpartition("/")
    if not parts.netloc or not slash:
        return REDACTED  # no path segment to keep apart from the key: hide it all
    # A key can also ride in the query, the fragment or the user info.
    path = f"{head}/{REDACTED}" if last else parts.path
    netloc = parts.netloc.rpartition("@")[2]
    query = REDACTED if parts.query else ""
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def redact(document: Any) -> Any:
    """A copy of a JSON document with every credential field replaced.

    Iterative rather than recursive: a body may nest deeper than Python's stack.
    """
    root: list[Any] = [document]
    stack: list[tuple[Any, list[Any] | dict[str, Any], int | str]] = [(document, root, 0)]
    while stack:
        node, parent, slot = stack.pop()
        if isinstance(node, dict):
            copy: dict[str, Any] = {}
            parent[slot] = copy  # type: ignore[index]
            for name, value in node.items():
                field = _field(name) if isinstance(name, str) else ""
                if field in _KEY_FIELDS and value is not None:
                    copy[name] = REDACTED
                elif field in _URL_FIELDS:
                    copy[name] = redact_rtmp_url(value)
                else:
                    copy[name] = value
                    stack.append((value, copy, name))
        elif isinstance(node, list):
            items: list[Any] = list(node)
            parent[slot] = items  # type: ignore[index]
            stack.extend((value, items, index) for index, value in enumerate(node))
    return root[0]
