"""Webhook authentication (SPEC §2): pure functions over path tokens, headers and bytes.

Invariants:
- every comparison is `hmac.compare_digest` on bytes, and every configured value
  of a rotating secret is compared (no early exit), so timing says nothing about
  which value, or which part of a two-part credential, was close;
- a provider with no configured secret authenticates nothing (an empty tuple
  never matches): a missing secret can never open an endpoint;
- the FastPix signature is computed over the raw body bytes as received, never
  over a re-serialization.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from plumbing.settings import ConfigError, Settings, secret_values

__all__ = [
    "Credentials",
    "cloudflare_ok",
    "fastpix_ok",
    "fastpix_signature",
    "gjirafa_ok",
    "matches_any",
    "missing_secrets",
]


@dataclass(frozen=True, repr=False)
class Credentials:
    """Every accepted value of every webhook secret, decoded once at start-up."""

    video_events_tokens: tuple[str, ...]
    cf_webhook_secrets: tuple[str, ...]
    fastpix_keys: tuple[bytes, ...]
    gjirafa_tokens: tuple[str, ...]

    def __repr__(self) -> str:  # never print a secret, even by accident
        return "Credentials(...)"

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        """Raises `ConfigError` for a FastPix secret that is not base64 of a key; absent is
        allowed (`missing_secrets` says so)."""
        tokens = secret_values(settings.video_events_token)
        cf_secrets = secret_values(settings.cf_webhook_secret) or tokens
        return cls(
            video_events_tokens=tokens,
            cf_webhook_secrets=cf_secrets,
            fastpix_keys=tuple(_b64_key(v) for v in secret_values(settings.fastpix_webhook_secret)),
            gjirafa_tokens=secret_values(settings.gjirafa_webhook_token),
        )


def missing_secrets(settings: Settings) -> list[str]:
    """Environment names of the secrets a producer cannot run without."""
    required = {
        "VIDEO_EVENTS_TOKEN": settings.video_events_token,
        "FASTPIX_WEBHOOK_SECRET": settings.fastpix_webhook_secret,
        "GJIRAFA_WEBHOOK_TOKEN": settings.gjirafa_webhook_token,
    }
    return [name for name, secret in required.items() if not secret_values(secret)]


# One alphabet or the other, whole, padding optional: `urlsafe_b64decode` alone
# would drop any other character and could leave an empty key, with which
# anybody can sign.
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]*|[A-Za-z0-9_-]*)={0,2}")


def _b64_key(value: str) -> bytes:
    """A FastPix secret's HMAC key; `ConfigError` unless it is base64 of at least one byte."""
    key = b""
    if _BASE64.fullmatch(value):
        unpadded = value.rstrip("=")
        try:
            key = base64.b64decode(
                unpadded.replace("-", "+").replace("_", "/") + "=" * (-len(unpadded) % 4),
                validate=True,
            )
        except (binascii.Error, ValueError):
            key = b""
    if not key:
        raise ConfigError("FASTPIX_WEBHOOK_SECRET: a value is not base64 of a non-empty key")
    return key


def _bytes(text: str) -> bytes:
    # compare_digest refuses non-ASCII str; a percent-decoded path may hold anything.
    return text.encode("utf-8", "surrogatepass")


def matches_any(candidate: str | None, accepted: Iterable[str]) -> bool:
    """Whether `candidate` equals one of `accepted`, comparing against all of them."""
    given = _bytes(candidate) if candidate is not None else b""
    found = False
    for value in accepted:
        found |= hmac.compare_digest(given, _bytes(value))
    return found and candidate is not None


def cloudflare_ok(path_token: str, cf_webhook_auth: str | None, creds: Credentials) -> bool:
    """Path token is a VIDEO_EVENTS_TOKEN and the `cf-webhook-auth` header a CF secret."""
    token_ok = matches_any(path_token, creds.video_events_tokens)
    header_ok = matches_any(cf_webhook_auth, creds.cf_webhook_secrets)
    return token_ok & header_ok  # both computed: never hint which part failed


def fastpix_signature(body: bytes, key: bytes) -> str:
    """base64(HMAC-SHA256(key, body)): the `FastPix-Signature` header a sender sets."""
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode("ascii")


def fastpix_ok(signature: str | None, body: bytes, creds: Credentials) -> bool:
    """`FastPix-Signature` signs the raw body with one of the decoded secrets."""
    given = _bytes(signature.strip()) if signature is not None else b""
    found = False
    for key in creds.fastpix_keys:
        found |= hmac.compare_digest(given, fastpix_signature(body, key).encode("ascii"))
    return found and signature is not None


def gjirafa_ok(path_token: str, creds: Credentials) -> bool:
    """Path token is a GJIRAFA_WEBHOOK_TOKEN."""
    return matches_any(path_token, creds.gjirafa_tokens)
