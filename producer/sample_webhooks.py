"""`livewindows send-test-events`: a provider's webhooks, signed like the provider signs them.

`sample_requests` is pure (tests and benchmarks build the same requests); the
command only sends them in order and prints each answer. The sequence of every
provider is connected → disconnected → connected → disconnected → ended (or
errored, for Cloudflare, which has no end event), in the provider's own
payload shapes and timestamp precisions.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from plumbing.settings import ConfigError, Settings, secret_values
from producer import auth
from schemas.timestamps import format_ms

__all__ = ["SampleRequest", "cloudflare_document", "sample_requests", "send_command"]


@dataclass(frozen=True)
class SampleRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    event_type: str

    @property
    def route(self) -> str:
        """The path without its token, fit to print."""
        head, _, _token = self.path.rpartition("/events/")
        return f"{head}/events/{{token}}" if head else self.path


# (offset from the start in ms, event type[, Gjirafa status])
_CLOUDFLARE = [
    (0, "live_input.connected"),
    (12_000, "live_input.disconnected"),
    (20_500, "live_input.connected"),
    (45_000, "live_input.errored"),
    (51_250, "live_input.connected"),
]
_FASTPIX = [
    (0, "video.live_stream.connected"),
    (800, "video.live_stream.active"),
    (12_000, "video.live_stream.disconnected"),
    (20_500, "video.live_stream.connected"),
    (21_000, "video.live_stream.active"),
    (45_000, "video.live_stream.disconnected"),
    (105_000, "video.live_stream.idle"),  # FastPix ends it after reconnectWindow (60 s)
]
_GJIRAFA = [
    (0, "live.video.started", None),
    (400, "live.video.status.changed", "Live"),
    (12_000, "live.video.status.changed", "Interrupted"),
    (20_500, "live.video.status.changed", "Live"),
    (45_000, "live.video.status.changed", "Interrupted"),
    (80_000, "live.video.stopped", None),
]
# From the first to the last event of each sequence.
SPAN_MS = {"cloudflare": _CLOUDFLARE[-1][0], "fastpix": _FASTPIX[-1][0], "gjirafa": _GJIRAFA[-1][0]}


def sample_requests(
    provider: str, input_id: str, settings: Settings, start_ms: int
) -> list[SampleRequest]:
    """The signed requests of one provider's sample sequence, in sending order."""
    if provider == "cloudflare":
        return _cloudflare(input_id, settings, start_ms)
    if provider == "fastpix":
        return _fastpix(input_id, settings, start_ms)
    if provider == "gjirafa":
        return _gjirafa(input_id, settings, start_ms)
    raise ValueError(f"unknown provider {provider!r}")


def _first(name: str, values: tuple[str, ...]) -> str:
    if not values:
        raise ConfigError(f"{name} is not set: cannot sign test events")
    return values[0]


def cloudflare_document(
    input_id: str,
    event_type: str,
    at_ms: int,
    nanos: int,
    name: str = "livewindows test notification",
) -> dict[str, Any]:
    """A Cloudflare Stream Live notification, its time with nanoseconds as Cloudflare sends it."""
    updated_at = f"{format_ms(at_ms)[:-1]}{nanos:06d}Z"
    return {
        "name": name,
        "text": f"Notification type: Stream Live Input\nInput ID: {input_id}\n"
        f"Event type: {event_type}\nUpdated at: {updated_at}",
        "data": {
            "notification_name": "Stream Live Input",
            "input_id": input_id,
            "event_type": event_type,
            "updated_at": updated_at,
        },
        "ts": at_ms // 1000,
    }


def _cloudflare(input_id: str, settings: Settings, start_ms: int) -> list[SampleRequest]:
    token = _first("VIDEO_EVENTS_TOKEN", secret_values(settings.video_events_token))
    secret = secret_values(settings.cf_webhook_secret)[:1] or (token,)
    requests = []
    for n, (offset_ms, event_type) in enumerate(_CLOUDFLARE):
        at_ms = start_ms + offset_ms
        document = cloudflare_document(input_id, event_type, at_ms, (n * 104_729) % 1_000_000)
        headers = {"Content-Type": "application/json", "cf-webhook-auth": secret[0]}
        path = f"/api/v1/video/events/{token}"
        requests.append(SampleRequest(path, headers, orjson.dumps(document), event_type))
    return requests


def _fastpix(input_id: str, settings: Settings, start_ms: int) -> list[SampleRequest]:
    _first("FASTPIX_WEBHOOK_SECRET", secret_values(settings.fastpix_webhook_secret))
    key = auth.Credentials.from_settings(settings).fastpix_keys[0]  # signs with the first
    environment = {"name": "production", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "env"))}
    requests = []
    for n, (offset_ms, event_type) in enumerate(_FASTPIX):
        at = format_ms(start_ms + offset_ms)
        data: dict[str, Any] = {
            "test": True,
            "status": "active" if event_type.endswith(("connected", "active")) else "idle",
            "audioOnly": False,
            "streamKey": f"sk-{uuid.uuid5(uuid.NAMESPACE_URL, input_id).hex}",
            "maxResolution": "1080p",
            "createdAt": format_ms(start_ms - 3_600_000),
            "reconnectWindow": 60,
            "maxDuration": 43_200,
            "playback_ids": [{"id": "public", "accessPolicy": "public"}],
        }
        # The docs name the stream `data.id` in disconnected events, `streamId` elsewhere.
        data["id" if event_type.endswith(".disconnected") else "streamId"] = input_id
        document = {
            "type": event_type,
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{input_id}/{n}/{event_type}")),
            "webhookId": str(uuid.uuid5(uuid.NAMESPACE_URL, "livewindows-test-webhook")),
            "object": {"name": "live", "id": input_id},
            "environment": environment,
            "data": data,
            "created_at": at,
            "attempts": [],
            "accessor_source": "",
            "accessor": "",
        }
        body = orjson.dumps(document)
        headers = {
            "Content-Type": "application/json",
            "FastPix-Signature": auth.fastpix_signature(body, key),
        }
        requests.append(SampleRequest("/api/v1/video/fastpix/events", headers, body, event_type))
    return requests


def _gjirafa(input_id: str, settings: Settings, start_ms: int) -> list[SampleRequest]:
    token = _first("GJIRAFA_WEBHOOK_TOKEN", secret_values(settings.gjirafa_webhook_token))
    requests = []
    for n, (offset_ms, event_type, status) in enumerate(_GJIRAFA):
        at_ms = start_ms + offset_ms
        event_time = f"{format_ms(at_ms)[:-1]}{(n * 7919) % 10_000:04d}Z"  # seven digits
        data: dict[str, Any] = {"Id": input_id}
        if status is not None:
            data |= {"StatusId": {"Live": 1, "Interrupted": 3}[status], "Status": status}
            data |= {"HealthStatusId": 1, "HealthStatus": "Healthy"}
        elif event_type == "live.video.started":
            data["LiveStartDateUTC"] = event_time
        else:
            data |= {"LiveCutStartDate": format_ms(start_ms)[:-1], "LiveCutEndDate": event_time}
        document = {
            "eventTime": event_time,
            "eventType": event_type,
            "data": data,
            "projectId": "livewindows-test",
        }
        headers = {"Content-Type": "application/json"}
        path = f"/api/v1/video/gjirafa/events/{token}"
        requests.append(SampleRequest(path, headers, orjson.dumps(document), event_type))
    return requests


def send_command(args: argparse.Namespace, settings: Settings) -> int:
    input_id = args.input or f"test-{uuid.uuid4().hex[:12]}"
    # The sequence ends now: every event is in the past, as a provider's would be.
    start_ms = time.time_ns() // 1_000_000 - SPAN_MS[args.provider]
    requests = sample_requests(args.provider, input_id, settings, start_ms)
    print(f"sending {len(requests)} {args.provider} webhooks for input {input_id}")
    timeout_s = settings.publish_timeout_ms / 1000 + 10
    return asyncio.run(_send_all(args.url.rstrip("/"), requests, timeout_s))


async def _send_all(base_url: str, requests: list[SampleRequest], timeout_s: float) -> int:
    failed = 0
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for request in requests:  # in order: the sequence is the point
            try:
                async with session.post(
                    base_url + request.path, data=request.body, headers=request.headers
                ) as response:
                    text = (await response.text()).strip()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                # Never print the path itself: it may carry a token.
                reason = str(exc).replace(request.path, request.route)
                print(f"cannot reach {base_url}: {exc.__class__.__name__} {reason}")
                return 1
            failed += status != 202
            print(f"{request.event_type:<50} {status} {text}")
    return 1 if failed else 0
