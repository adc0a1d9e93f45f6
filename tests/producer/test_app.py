"""The HTTP layer (SPEC §2) with an in-memory publisher: statuses, order of checks, logs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from producer.openapi import Accepted, ErrorBody
from producer.sample_webhooks import sample_requests
from schemas.records import Event
from tests.producer import seeds
from tests.producer.conftest import RECEIVED_MS, MakeClient
from tests.producer.fakes import MemoryPublisher

CF_PATH = "/api/v1/video/events/cf-token-new"
CF_HEADERS = {"cf-webhook-auth": "cf-header-new"}
FP_PATH = "/api/v1/video/fastpix/events"
GJ_PATH = "/api/v1/video/gjirafa/events/gj-token-old"


def fp_headers(body: bytes, key: bytes = seeds.FASTPIX_KEY_2) -> dict[str, str]:
    digest = hmac.new(key, body, hashlib.sha256).digest()
    return {"FastPix-Signature": base64.b64encode(digest).decode()}


def body_of(document: Any) -> bytes:
    return orjson.dumps(document)


@pytest.mark.parametrize("provider", ["cloudflare", "fastpix", "gjirafa"])
async def test_a_signed_sequence_is_accepted_and_published_in_order(
    make_client: MakeClient, provider: str
) -> None:
    publisher = MemoryPublisher()
    client = await make_client(publisher=publisher)
    requests = sample_requests(provider, "input-7", seeds.settings(), 1_700_000_000_000)
    answers = []
    for request in requests:
        response = await client.post(request.path, data=request.body, headers=request.headers)
        assert response.status == 202, await response.text()
        answers.append(Accepted.model_validate(await response.json()))
    assert [a.event_id for a in answers] == [e.event_id for e in publisher.events]
    assert [e.provider_event_type for e in publisher.events] == [r.event_type for r in requests]
    assert {e.key for e in publisher.events} == {f"{provider}:input-7"}
    assert {e.received_at for e in publisher.events} == {"2026-09-21T14:13:20.123Z"}


async def test_202_is_sent_only_after_the_publisher_returned(make_client: MakeClient) -> None:
    release = asyncio.Event()

    class Gated(MemoryPublisher):
        async def publish(self, event: Event) -> None:
            await release.wait()
            await super().publish(event)

    publisher = Gated()
    client = await make_client(publisher=publisher)
    body = body_of(seeds.GJIRAFA["live.video.started"])
    pending = asyncio.ensure_future(client.post(GJ_PATH, data=body))
    await asyncio.sleep(0.2)
    assert not pending.done()
    release.set()
    response = await pending
    assert response.status == 202 and len(publisher.events) == 1


async def test_publish_failure_is_503_with_retry_after(make_client: MakeClient) -> None:
    publisher = MemoryPublisher(fail=True)
    client = await make_client(publisher=publisher)
    response = await client.post(GJ_PATH, data=body_of(seeds.GJIRAFA["live.video.started"]))
    assert response.status == 503
    assert int(response.headers["Retry-After"]) > 0
    assert ErrorBody.model_validate(await response.json()).error
    assert publisher.events == []


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/v1/video/events/wrong", CF_HEADERS),
        (CF_PATH, {"cf-webhook-auth": "wrong"}),
        (CF_PATH, {}),
        ("/api/v1/video/gjirafa/events/wrong", {}),
        (FP_PATH, {}),
        (FP_PATH, {"FastPix-Signature": "AAAA"}),
    ],
    ids=["cf-token", "cf-header", "cf-no-header", "gjirafa-token", "fastpix-none", "fastpix-bad"],
)
async def test_wrong_credentials_are_401_and_say_nothing_more(
    make_client: MakeClient, path: str, headers: dict[str, str]
) -> None:
    publisher = MemoryPublisher()
    client = await make_client(publisher=publisher)
    response = await client.post(
        path, data=body_of(seeds.cloudflare("live_input.connected")), headers=headers
    )
    assert response.status == 401
    assert await response.json() == {"error": "unauthorized"}
    assert publisher.events == []


@pytest.mark.parametrize("path", ["/api/v1/video/events/wrong", "/api/v1/video/gjirafa/events/x"])
async def test_token_routes_check_credentials_before_the_body(
    make_client: MakeClient, path: str
) -> None:
    client = await make_client(settings=seeds.settings(max_body_bytes=100))
    for body in (b"not json", b"{" + b" " * 1000 + b"}"):
        response = await client.post(path, data=body, headers=CF_HEADERS)
        assert response.status == 401


async def test_fastpix_signature_is_checked_before_parsing(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.post(FP_PATH, data=b"not json", headers={"FastPix-Signature": "x"})
    assert response.status == 401
    response = await client.post(FP_PATH, data=b"not json", headers=fp_headers(b"not json"))
    assert response.status == 400


async def test_a_body_altered_after_signing_is_401(make_client: MakeClient) -> None:
    publisher = MemoryPublisher()
    client = await make_client(publisher=publisher)
    body = body_of(seeds.fastpix_stream("video.live_stream.disconnected"))
    altered = body.replace(seeds.FP_STREAM.encode(), b"another-stream")
    response = await client.post(FP_PATH, data=altered, headers=fp_headers(body))
    assert response.status == 401 and publisher.events == []


@pytest.mark.parametrize("body", [b"", b"{", b"\xff", b"<xml/>"])
async def test_a_body_that_is_not_json_is_400(make_client: MakeClient, body: bytes) -> None:
    publisher = MemoryPublisher()
    client = await make_client(publisher=publisher)
    response = await client.post(GJ_PATH, data=body)
    assert response.status == 400
    assert (await response.json())["error"] == "body is not JSON"
    assert publisher.events == []


async def test_a_schema_failure_is_422_listing_each_failing_field(make_client: MakeClient) -> None:
    publisher = MemoryPublisher()
    client = await make_client(publisher=publisher)
    body = body_of({"name": "x", "data": {"updated_at": "yesterday"}})
    response = await client.post(CF_PATH, data=body, headers=CF_HEADERS)
    assert response.status == 422
    answer = ErrorBody.model_validate(await response.json())
    assert [f.field for f in answer.fields or []] == [
        "data.input_id",
        "data.event_type",
        "data.updated_at",
    ]
    assert publisher.events == []


async def test_a_body_over_the_limit_is_413_by_content_length(make_client: MakeClient) -> None:
    publisher = MemoryPublisher()
    client = await make_client(settings=seeds.settings(max_body_bytes=1024), publisher=publisher)
    document = {**seeds.GJIRAFA["live.video.started"], "pad": "x" * 1024}
    response = await client.post(GJ_PATH, data=body_of(document))
    assert response.status == 413
    assert "1024" in (await response.json())["error"]
    assert publisher.events == []


async def test_a_chunked_body_is_cut_at_the_limit(make_client: MakeClient) -> None:
    publisher = MemoryPublisher()
    client = await make_client(settings=seeds.settings(max_body_bytes=1024), publisher=publisher)
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"pad": "'
        for _ in range(10_000):  # 10 MB if nobody stopped reading
            sent += 1
            yield b"x" * 1024

    response = await client.post(GJ_PATH, data=endless())
    assert response.status == 413
    assert publisher.events == []
    assert sent < 10_000


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decompress_is_400(
    make_client: MakeClient, encoding: str
) -> None:
    publisher = MemoryPublisher()
    client = await make_client(publisher=publisher)
    headers = {"Content-Encoding": encoding}
    response = await client.post(GJ_PATH, data=b"not compressed at all", headers=headers)
    assert response.status == 400
    assert (await response.json())["error"].startswith("body could not be read")
    assert publisher.events == []


async def test_a_body_of_exactly_the_limit_is_read(make_client: MakeClient) -> None:
    publisher = MemoryPublisher()
    client = await make_client(settings=seeds.settings(max_body_bytes=1024), publisher=publisher)
    body = body_of({**seeds.GJIRAFA["live.video.started"], "pad": ""})
    body = body[:-1] + b" " * (1024 - len(body)) + b"}"
    assert len(body) == 1024
    response = await client.post(GJ_PATH, data=body)
    assert response.status == 202 and len(publisher.events) == 1


async def test_unknown_routes_and_methods_answer_json(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.get("/nowhere")
    assert (response.status, await response.json()) == (404, {"error": "not found"})
    response = await client.get(FP_PATH)
    assert response.status == 405 and response.headers["Allow"] == "POST"
    assert (await response.json())["error"] == "method not allowed"


async def test_an_unexpected_error_is_a_json_500_and_is_logged(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(MemoryPublisher):
        async def publish(self, event: Event) -> None:
            raise RuntimeError("bug")

    client = await make_client(publisher=Broken())
    response = await client.post(GJ_PATH, data=body_of(seeds.GJIRAFA["live.video.started"]))
    assert (response.status, await response.json()) == (500, {"error": "internal error"})
    assert "unexpected error" in caplog.text


async def test_healthz_and_readyz(make_client: MakeClient) -> None:
    publisher = MemoryPublisher()
    client = await make_client(publisher=publisher)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    publisher.is_ready = False
    response = await client.get("/readyz")
    assert response.status == 503 and "Retry-After" in response.headers
    assert (await client.get("/healthz")).status == 200
    # A fatal producer error (e.g. the idempotent producer lost its sequence): only a
    # restart helps, so liveness fails too and an orchestrator restarts the process.
    publisher.fatal_error = "fenced"
    response = await client.get("/healthz")
    assert response.status == 503 and "fenced" in (await response.json())["error"]


async def test_the_publisher_lives_as_long_as_the_app(make_client: MakeClient) -> None:
    publisher = MemoryPublisher()
    client = await make_client(publisher=publisher)
    assert publisher.started and not publisher.closed
    await client.close()
    assert publisher.closed


async def test_metrics_count_requests_by_provider_and_status(make_client: MakeClient) -> None:
    client = await make_client(publisher=MemoryPublisher())
    await client.post(GJ_PATH, data=body_of(seeds.GJIRAFA["live.video.started"]))
    await client.post(GJ_PATH, data=b"{")
    await client.post(CF_PATH, data=b"{}")
    text = await (await client.get("/metrics")).text()
    assert 'livewindows_http_requests_total{provider="gjirafa",status="202"} 1.0' in text
    assert 'livewindows_http_requests_total{provider="gjirafa",status="400"} 1.0' in text
    assert 'livewindows_http_requests_total{provider="cloudflare",status="401"} 1.0' in text
    assert 'livewindows_publish_seconds_count{provider="gjirafa"} 1.0' in text
    assert 'livewindows_request_body_bytes_count{provider="gjirafa"} 2.0' in text


async def test_openapi_is_generated_from_the_models(make_client: MakeClient) -> None:
    client = await make_client()
    document = await (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) >= {
        "/api/v1/video/events/{token}",
        "/api/v1/video/fastpix/events",
        "/api/v1/video/gjirafa/events/{token}",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    schemas = document["components"]["schemas"]
    assert schemas["CloudflareData"]["required"] == ["input_id", "event_type"]
    assert schemas["FastPixSimulcastTargetData"]["required"] == ["livestreamId"]
    assert schemas["GjirafaEvent"]["additionalProperties"] is True
    responses = document["paths"]["/api/v1/video/fastpix/events"]["post"]["responses"]
    assert set(responses) == {"202", "400", "401", "413", "422", "503"}


async def test_received_at_is_the_clock_when_the_request_arrived(make_client: MakeClient) -> None:
    publisher = MemoryPublisher(stall_s=0.05)
    client = await make_client(publisher=publisher, clock_ms=lambda: RECEIVED_MS + 5)
    await client.post(GJ_PATH, data=body_of(seeds.GJIRAFA["live.video.started"]))
    assert publisher.events[0].received_at == "2026-09-21T14:13:20.128Z"


async def test_logs_carry_no_secret_at_any_level(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await make_client(publisher=MemoryPublisher())
    simulcast = body_of(seeds.fastpix_simulcast("video.live_stream.simulcast_target.created"))
    stream = body_of(seeds.fastpix_stream("video.live_stream.connected"))
    bad = body_of({**seeds.fastpix_stream("video.live_stream.connected"), "created_at": "no"})
    signatures = []
    for body in (simulcast, stream, bad):
        headers = fp_headers(body)
        signatures.append(headers["FastPix-Signature"])
        await client.post(FP_PATH, data=body, headers=headers)
    await client.post(
        CF_PATH, data=body_of(seeds.cloudflare("live_input.connected")), headers=CF_HEADERS
    )
    await client.post("/api/v1/video/gjirafa/events/gj-token-new", data=b"{")
    lines = [r.getMessage() for r in caplog.records if r.name == "livewindows.producer.http"]
    assert len(lines) == 5
    text = caplog.text
    for secret in (
        seeds.FP_STREAM_KEY,
        seeds.FP_SIMULCAST_KEY,
        seeds.FP_RTMP_KEY,
        "cf-token-new",
        "cf-header-new",
        "gj-token-new",
        *signatures,
    ):
        assert secret not in text
    first = orjson.loads(lines[0])
    assert first["route"] == FP_PATH and first["status"] == 202
    assert first["payload"]["data"]["streamKey"] == "[redacted]"  # the payload is there...
    assert orjson.loads(lines[2])["payload"]["data"]["streamKey"] == "[redacted]"  # ...on 422 too
    assert orjson.loads(lines[3])["route"] == "/api/v1/video/events/{token}"


async def test_every_openapi_reference_resolves(make_client: MakeClient) -> None:
    client = await make_client()
    document = await (await client.get("/openapi.json")).json()

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    found = refs(document)
    assert len(found) > 20
    prefix = "#/components/schemas/"
    assert all(
        r.startswith(prefix) and r[len(prefix) :] in document["components"]["schemas"]
        for r in found
    )


async def test_accepted_requests_log_at_debug_and_failures_at_warning(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="livewindows.producer.http")
    client = await make_client(publisher=MemoryPublisher())
    accepted = await client.post(GJ_PATH, data=body_of(seeds.GJIRAFA["live.video.started"]))
    refused = await client.post(CF_PATH, data=b"{}")
    assert (accepted.status, refused.status) == (202, 401)
    records = [r for r in caplog.records if r.name == "livewindows.producer.http"]
    assert [r.levelno for r in records] == [logging.WARNING]
    line = orjson.loads(records[0].getMessage())
    assert line["status"] == 401 and line["error"] == "unauthorized"


async def test_a_chunked_body_within_the_limit_is_read_whole(make_client: MakeClient) -> None:
    publisher = MemoryPublisher()
    client = await make_client(publisher=publisher)
    body = body_of(seeds.GJIRAFA["live.video.started"])

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]
            await asyncio.sleep(0)

    response = await client.post(GJ_PATH, data=pieces())
    assert response.status == 202
    assert publisher.events[0].payload == seeds.GJIRAFA["live.video.started"]


async def test_metrics_keep_counting_on_repeated_labels(make_client: MakeClient) -> None:
    client = await make_client(publisher=MemoryPublisher())
    for _ in range(3):
        await client.post(GJ_PATH, data=body_of(seeds.GJIRAFA["live.video.started"]))
    await client.post(GJ_PATH, data=b"{")
    text = await (await client.get("/metrics")).text()
    assert 'livewindows_http_requests_total{provider="gjirafa",status="202"} 3.0' in text
    assert 'livewindows_http_requests_total{provider="gjirafa",status="400"} 1.0' in text
    assert 'livewindows_publish_seconds_count{provider="gjirafa"} 3.0' in text
    assert 'livewindows_request_body_bytes_count{provider="gjirafa"} 4.0' in text
