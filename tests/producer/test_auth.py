"""Webhook authentication as pure functions (SPEC §2): tokens, header secrets, HMAC."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from plumbing.settings import ConfigError
from producer.auth import (
    Credentials,
    cloudflare_ok,
    fastpix_ok,
    fastpix_signature,
    gjirafa_ok,
    matches_any,
    missing_secrets,
)
from tests.producer import seeds

CREDS = Credentials.from_settings(seeds.settings())
BODY = b'{"type":"video.live_stream.connected","object":{"id":"s1"}}'


def _sign(body: bytes, key: bytes) -> str:
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


# --- Cloudflare: path token AND cf-webhook-auth header -------------------------


@pytest.mark.parametrize("token", ["cf-token-new", "cf-token-old"])
@pytest.mark.parametrize("header", ["cf-header-new", "cf-header-old"])
def test_cloudflare_accepts_every_rotated_value_of_both_parts(token: str, header: str) -> None:
    assert cloudflare_ok(token, header, CREDS)


@pytest.mark.parametrize(
    ("token", "header"),
    [
        ("wrong", "cf-header-new"),
        ("cf-token-new", "wrong"),
        ("cf-token-new", None),
        ("cf-token-new", ""),
        ("cf-header-new", "cf-token-new"),  # the two parts swapped
        ("cf-token-new,cf-token-old", "cf-header-new"),  # the whole list is not a value
        ("cf-token-ne", "cf-header-new"),  # a prefix
        ("cf-token-new ", "cf-header-new"),
        ("ünïcödé", "cf-header-new"),
    ],
)
def test_cloudflare_rejects_a_wrong_or_missing_part(token: str, header: str | None) -> None:
    assert not cloudflare_ok(token, header, CREDS)


def test_cf_webhook_secret_defaults_to_the_video_events_token() -> None:
    creds = Credentials.from_settings(seeds.settings(cf_webhook_secret=None))
    assert cloudflare_ok("cf-token-old", "cf-token-new", creds)
    assert not cloudflare_ok("cf-token-new", "cf-header-new", creds)


# --- FastPix: base64(HMAC-SHA256(base64-decoded secret, raw body)) --------------


@pytest.mark.parametrize("key", [seeds.FASTPIX_KEY_1, seeds.FASTPIX_KEY_2])
def test_fastpix_accepts_a_signature_with_any_rotated_key(key: bytes) -> None:
    assert fastpix_ok(_sign(BODY, key), BODY, CREDS)


def test_fastpix_signature_is_base64_of_hmac_sha256_with_the_decoded_secret() -> None:
    assert fastpix_signature(BODY, seeds.FASTPIX_KEY_1) == _sign(BODY, seeds.FASTPIX_KEY_1)
    # Signing with the secret's base64 text instead of its bytes is a different signature.
    text_key = base64.b64encode(seeds.FASTPIX_KEY_1)
    assert not fastpix_ok(_sign(BODY, text_key), BODY, CREDS)


def test_fastpix_rejects_a_signature_with_a_wrong_key() -> None:
    assert not fastpix_ok(_sign(BODY, b"another key"), BODY, CREDS)


def test_fastpix_rejects_a_modified_body() -> None:
    signature = _sign(BODY, seeds.FASTPIX_KEY_1)
    assert not fastpix_ok(signature, BODY.replace(b"s1", b"s2"), CREDS)
    assert not fastpix_ok(signature, BODY + b"\n", CREDS)


def test_fastpix_verifies_the_bytes_as_received_not_a_reserialization() -> None:
    spaced = b'{ "type": "video.live_stream.connected", "object": {"id": "s1"} }'
    assert fastpix_ok(_sign(spaced, seeds.FASTPIX_KEY_1), spaced, CREDS)
    assert not fastpix_ok(_sign(BODY, seeds.FASTPIX_KEY_1), spaced, CREDS)


@pytest.mark.parametrize("signature", [None, "", "not base64 at all", "é"])
def test_fastpix_rejects_a_missing_or_malformed_signature(signature: str | None) -> None:
    assert not fastpix_ok(signature, BODY, CREDS)


def test_fastpix_tolerates_surrounding_whitespace_in_the_header() -> None:
    assert fastpix_ok(f" {_sign(BODY, seeds.FASTPIX_KEY_1)}\t", BODY, CREDS)


def test_fastpix_url_safe_secrets_are_decoded_too() -> None:
    key = b"\xfb\xff\xfe key with url-unsafe base64"
    secret = base64.urlsafe_b64encode(key).decode().rstrip("=")
    creds = Credentials.from_settings(seeds.settings(fastpix_webhook_secret=secret))
    assert creds.fastpix_keys == (key,)


# `urlsafe_b64decode` drops what is not in its alphabet: "====" or "$$$$" would
# give an empty HMAC key, with which anybody can sign.
@pytest.mark.parametrize(
    "secret", ["not*base64!", "====", "=", "!!!!", "$$$$$$$$", "a", "a b", "c2VjcmV0,=="]
)
def test_a_fastpix_secret_that_is_not_base64_of_a_key_is_a_config_error(secret: str) -> None:
    with pytest.raises(ConfigError, match="FASTPIX_WEBHOOK_SECRET"):
        Credentials.from_settings(seeds.settings(fastpix_webhook_secret=secret))


# --- Gjirafa: path token ----------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "ok"),
    [
        ("gj-token-new", True),
        ("gj-token-old", True),
        ("gj-token", False),
        ("", False),
        ("cf-token-new", False),
    ],
)
def test_gjirafa_path_token(token: str, ok: bool) -> None:
    assert gjirafa_ok(token, CREDS) is ok


# --- no secret configured: nothing is accepted -----------------------------------


def test_without_secrets_nothing_authenticates() -> None:
    empty = Credentials((), (), (), ())
    assert not cloudflare_ok("", "", empty)
    assert not fastpix_ok("", b"", empty)
    assert not gjirafa_ok("", empty)
    assert not matches_any("", ())


def test_missing_secrets_names_the_environment_variables() -> None:
    settings = seeds.settings(fastpix_webhook_secret=None, gjirafa_webhook_token=" , ")
    assert missing_secrets(settings) == ["FASTPIX_WEBHOOK_SECRET", "GJIRAFA_WEBHOOK_TOKEN"]
    assert missing_secrets(seeds.settings()) == []


def test_credentials_never_show_a_secret_in_their_repr() -> None:
    assert "cf-token" not in repr(CREDS) and "gj-token" not in repr(CREDS)


def test_every_value_is_compared_even_after_a_match(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr("producer.auth.hmac.compare_digest", spy)
    assert matches_any("one", ("one", "two", "three"))
    assert compared == [b"one", b"two", b"three"]
    compared.clear()
    assert cloudflare_ok("wrong", "cf-header-new", CREDS) is False
    assert len(compared) == 4  # the header is still checked when the token failed
