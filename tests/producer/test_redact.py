"""Credentials never survive redaction, wherever they sit (SPEC §2)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer.normalize import to_event
from producer.publisher import encode
from producer.redact import REDACTED, redact, redact_rtmp_url
from schemas.providers import fastpix as fp
from tests.producer import seeds

SECRETS = (seeds.FP_STREAM_KEY, seeds.FP_SIMULCAST_KEY, seeds.FP_RTMP_KEY)


def test_stream_key_of_a_live_stream_event_is_redacted() -> None:
    document = seeds.fastpix_stream("video.live_stream.connected")
    assert redact(document)["data"]["streamKey"] == REDACTED


def test_simulcast_stream_key_and_rtmp_url_key_are_redacted_and_the_rest_kept() -> None:
    data = redact(seeds.fastpix_simulcast("video.live_stream.simulcast_target.created"))["data"]
    assert data["streamKey"] == REDACTED
    assert data["rtmpUrl"] == "rtmp://hyd01.contribute.live-video.net/app/[redacted]"
    assert data["simulcastId"] == "314a486a-3dc7-4cf5-9fcc-1708a4683f21"
    assert data["metadata"] == {"key1": "value1"}


def test_redaction_does_not_touch_the_input() -> None:
    document = seeds.fastpix_stream("video.live_stream.connected")
    redact(document)
    assert document["data"]["streamKey"] == seeds.FP_STREAM_KEY


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("rtmp://host/app/key123", "rtmp://host/app/[redacted]"),
        ("rtmps://host:443/live/app/key123", "rtmps://host:443/live/app/[redacted]"),
        ("rtmp://host/app/key123?token=abc", "rtmp://host/app/[redacted]?[redacted]"),
        ("rtmp://user:pw@host/app/key", "rtmp://host/app/[redacted]"),
        # A trailing slash does not make the key the empty segment after it.
        ("rtmps://host:443/rtmp/FB-KEY-123/", "rtmps://host:443/rtmp/[redacted]/"),
        ("rtmp://host/app/KEY/?a=b", "rtmp://host/app/[redacted]/?[redacted]"),
        ("rtmp://host/KEY//", "rtmp://host/[redacted]//"),
        ("rtmp://host/app/", "rtmp://host/[redacted]/"),  # "app" may be the key
        ("rtmp://host/", "rtmp://host/"),
        ("rtmp://host", REDACTED),
        ("not a url", REDACTED),
        ("", ""),
        (None, None),
        (42, REDACTED),
        ("rtmp://[::1/app/key", REDACTED),
    ],
)
def test_rtmp_url_keeps_everything_but_the_key(url: Any, redacted: Any) -> None:
    assert redact_rtmp_url(url) == redacted


segment = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8)


@given(st.lists(segment, max_size=3), segment, st.integers(0, 3), st.sampled_from(["", "?q=1"]))
def test_the_last_path_segment_never_survives_whatever_follows_it(
    head: list[str], key: str, slashes: int, query: str
) -> None:
    url = f"rtmp://host/{'/'.join([*head, 'SECRET' + key])}{'/' * slashes}{query}"
    assert "SECRET" not in str(redact_rtmp_url(url))


def test_nested_credentials_are_redacted_at_any_depth() -> None:
    document = {
        "data": {
            "simulcastTargets": [
                {"streamKey": "k1", "rtmpUrl": "rtmp://a/app/k2"},
                {"stream_key": "k3", "nested": [{"StreamKey": "k4"}]},
            ]
        }
    }
    text = orjson.dumps(redact(document)).decode()
    assert not any(secret in text for secret in ("k1", "k2", "k3", "k4"))
    assert text.count(REDACTED) == 4


def test_a_null_stream_key_stays_null() -> None:
    assert redact({"data": {"streamKey": None}}) == {"data": {"streamKey": None}}


def test_redaction_survives_a_body_deeper_than_the_python_stack() -> None:
    deep: Any = {"streamKey": "deep-secret"}
    for _ in range(5000):
        deep = {"a": [deep]}
    node = redact(deep)
    for _ in range(5000):
        node = node["a"][0]
    assert node == {"streamKey": REDACTED}


@pytest.mark.parametrize("event_type", fp.LIVE_STREAM_TYPES + fp.SIMULCAST_TARGET_TYPES)
def test_no_fastpix_secret_reaches_the_published_value(event_type: str) -> None:
    build = seeds.fastpix_simulcast if fp.is_simulcast_target(event_type) else seeds.fastpix_stream
    _key, value = encode(to_event("fastpix", build(event_type), 0))
    assert not any(secret.encode() in value for secret in SECRETS)
    assert REDACTED.encode() in value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["a", "streamKey", "rtmpUrl", "data"]), children, max_size=3
        )
    ),
    max_leaves=20,
)


@given(json_values)
def test_redaction_is_idempotent_and_leaves_no_raw_stream_key(document: Any) -> None:
    once = redact(document)
    assert redact(once) == once

    def stream_keys(node: Any) -> list[Any]:
        if isinstance(node, dict):
            own = [v for k, v in node.items() if k == "streamKey" and v is not None]
            return own + [x for v in node.values() for x in stream_keys(v)]
        if isinstance(node, list):
            return [x for v in node for x in stream_keys(v)]
        return []

    assert all(value == REDACTED for value in stream_keys(once))
