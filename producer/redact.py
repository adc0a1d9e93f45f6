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

__all__ = ["REDACTED", "redact", "redact_rtmp_url", "redacted_and_depth"]

REDACTED = "[redacted]"


def _field(name: str) -> str:
    return name.replace("_", "").replace("-", "").casefold()


_KEY_FIELDS = frozenset({"streamkey"})
_URL_FIELDS = frozenset({"rtmpurl", "rtmpsurl", "srturl"})

# What a field name is: a key, a URL carrying a key, or anything else. Names
# repeat from webhook to webhook, so each is classified once (a bounded memo:
# the answer depends on the name alone).
_PLAIN, _KEY, _URL = 0, 1, 2
_KINDS: dict[str, int] = {}
_KINDS_MAX = 4096


def _kind(name: object) -> int:
    if not isinstance(name, str):
        return _PLAIN
    kind = _KINDS.get(name)
    if kind is None:
        field = _field(name)
        kind = _KEY if field in _KEY_FIELDS else _URL if field in _URL_FIELDS else _PLAIN
        if len(_KINDS) < _KINDS_MAX:
            _KINDS[name] = kind
    return kind


def redact_rtmp_url(url: object) -> object:
    """`rtmp://host/app/<key>` → `rtmp://host/app/[redacted]`; anything odd → `[redacted]`.

    The last non-empty path segment is taken for the key, so `rtmp://host/app/`
    becomes `rtmp://host/[redacted]/`: a segment that may be a key is hidden.
    """
    if url is None or url == "":
        return url
    if not isinstance(url, str):
        return REDACTED
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if not parts.netloc or not parts.path.startswith("/"):
        return REDACTED  # no path segment to keep apart from the key: hide it all
    # The key is the last non-empty segment, trailing slashes or not
    # (`.../app/<key>/` must not keep it).
    kept = parts.path.rstrip("/")
    head, slash, _key = kept.rpartition("/")
    path = f"{head}/{REDACTED}{parts.path[len(kept) :]}" if slash else parts.path
    # A key can also ride in the query, the fragment or the user info.
    netloc = parts.netloc.rpartition("@")[2]
    query = REDACTED if parts.query else ""
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def redact(document: Any) -> Any:
    """A copy of a JSON document with every credential field replaced.

    Iterative rather than recursive: a body may nest deeper than Python's stack.
    """
    return redacted_and_depth(document)[0]


def redacted_and_depth(document: Any) -> tuple[Any, int]:
    """`redact(document)`, and how deep its mappings and lists nest (0: a scalar).

    One walk for both: the depth bound and the redaction each need every node.
    """
    if isinstance(document, dict):
        top: Any = {}
    elif isinstance(document, list):
        top = list(document)
    else:
        return document, 0
    deepest = 0
    # (original node, its copy, depth); each copy is already in its parent.
    # A redacted value is still walked, copy None, so that the depth is the
    # input's own.
    stack: list[tuple[Any, Any, int]] = [(document, top, 1)]
    kinds = _KINDS
    while stack:
        node, copy, level = stack.pop()
        if level > deepest:
            deepest = level
        below = level + 1
        if copy is None:  # inside a redacted value: the depth only
            values = node.values() if isinstance(node, dict) else node
            stack.extend((value, None, below) for value in values if isinstance(value, dict | list))
        elif isinstance(node, dict):
            for name, value in node.items():
                kind = kinds.get(name)
                if kind is None:
                    kind = _kind(name)
                if kind != _PLAIN and (kind == _URL or value is not None):
                    copy[name] = REDACTED if kind == _KEY else redact_rtmp_url(value)
                    if isinstance(value, dict | list):  # gone, but it counts for the depth
                        stack.append((value, None, below))
                elif isinstance(value, dict | list):
                    child: Any = {} if isinstance(value, dict) else list(value)
                    copy[name] = child
                    stack.append((value, child, below))
                else:
                    copy[name] = value
        else:  # a list, copied whole already: replace its containers by their copies
            for index, value in enumerate(node):
                if isinstance(value, dict | list):
                    child = {} if isinstance(value, dict) else list(value)
                    copy[index] = child
                    stack.append((value, child, below))
    return top, deepest
