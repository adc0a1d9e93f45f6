"""Webhook payloads of the seed documents (/work/shared/seeds), one per event type.

Gjirafa's are the documents' examples verbatim (placeholders included);
FastPix's are built field by field from the documents' tables; Cloudflare's
follow the public notification example (nanosecond `updated_at`).
"""

from __future__ import annotations

import base64
from typing import Any

from plumbing.settings import Settings

CF_INPUT = "eb222fcca08eeb1ae84c981ebe8aeeb6"


def cloudflare(
    event_type: str, updated_at: str | None = "2022-01-13T11:43:41.855717910Z", ts: Any = 1642074233
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "notification_name": "Stream Live Input",
        "input_id": CF_INPUT,
        "event_type": event_type,
    }
    if updated_at is not None:
        data["updated_at"] = updated_at
    document: dict[str, Any] = {
        "name": "Live Webhook Test",
        "text": f"Notification type: Stream Live Input\nInput ID: {CF_INPUT}\n"
        f"Event type: {event_type}\nUpdated at: {updated_at}",
        "data": data,
    }
    if ts is not None:
        document["ts"] = ts
    return document


FP_STREAM = "9oa85f64-5717-4562-b3fc-2c963f66afa6"
FP_LIVESTREAM = "a0ba2bf6-fe6b-441c-a9be-bf910d223218"
FP_STREAM_KEY = "d3b9f0c1e2a94b7d8c6e5f4a3b2c1d0e"
FP_SIMULCAST_KEY = "81ta-sr0p-hrpr-t5tt-6bed"
FP_RTMP_KEY = "live_1012464221_DuM8W004MoZYNxQEZ0czODgfHCFBhk"
FP_RTMP_URL = f"rtmp://hyd01.contribute.live-video.net/app/{FP_RTMP_KEY}"


def fastpix_stream(event_type: str, **top: Any) -> dict[str, Any]:
    """A `video.live_stream.*` event with every field of the documents' table."""
    data: dict[str, Any] = {
        "test": True,
        "status": "active",
        "audioOnly": False,
        "streamKey": FP_STREAM_KEY,
        "maxResolution": "1080p",
        "createdAt": "2023-12-06T09:12:28.808Z",
        "reconnectWindow": 60,
        "maxDuration": 500,
        "playback_ids": [{"id": "public", "accessPolicy": "public"}],
    }
    # The table of `disconnected` names the stream `data.id`; the others `data.streamId`.
    data["id" if event_type.endswith(".disconnected") else "streamId"] = FP_LIVESTREAM
    return {
        "type": event_type,
        "webhookId": "2b5f6c1e-0c1c-4d0e-9b1a-2f3e4d5c6b7a",
        "object": {"name": "live", "id": FP_STREAM},
        "environment": {"name": "production", "id": "9oa85f64-5717-4562-b3fc-2c963f66afa6"},
        "data": data,
        "created_at": "2023-12-06T09:12:28.808Z",
        "attempts": [],
        "accessor_source": "",
        "accessor": "",
        **top,
    }


def fastpix_simulcast(event_type: str, **top: Any) -> dict[str, Any]:
    """A `video.live_stream.simulcast_target.*` event with every field of the table."""
    return {
        "type": event_type,
        "webhookId": "2b5f6c1e-0c1c-4d0e-9b1a-2f3e4d5c6b7a",
        "object": {"name": "live", "id": FP_STREAM},
        "environment": {"name": "production", "id": "9oa85f64-5717-4562-b3fc-2c963f66afa6"},
        "data": {
            "simulcastId": "314a486a-3dc7-4cf5-9fcc-1708a4683f21",
            "livestreamId": FP_LIVESTREAM,
            "rtmpUrl": FP_RTMP_URL,
            "streamKey": FP_SIMULCAST_KEY,
            "metadata": {"key1": "value1"},
        },
        "created_at": "2023-12-06T09:12:28.808Z",
        "attempts": [],
        "accessor_source": "",
        "accessor": "",
        **top,
    }


GJIRAFA: dict[str, dict[str, Any]] = {
    "live.video.created": {
        "eventTime": "2024-07-17T11:40:06.0787423Z",
        "eventType": "live.video.created",
        "data": {
            "PublicId": "{PublicId}",
            "Id": "{Id}",
            "Title": "{Title}",
            "Description": "",
            "PlaybackUrl": "{PlaybackUrl}",
            "Thumbnail": "{Thumbnail}",
            "ChannelPublicId": "{ChannelPublicId}",
            "ChannelName": "{ChannelName}",
            "ChannelTitle": "{ChannelTitle}",
            "Author": "{Author}",
            "HasCustomDate": False,
            "CountdownEnabled": False,
            "CountdownSeconds": 0,
            "CanCutAndPublish": True,
            "CanStopAndCut": True,
        },
        "projectId": "{projectId}",
    },
    "live.video.updated": {
        "eventTime": "2024-07-17T11:43:14.0521444Z",
        "eventType": "live.video.updated",
        "data": {
            "PublicId": "{PublicId}",
            "Id": "{Id}",
            "Title": "{Title}",
            "PlaybackUrl": "",
            "Thumbnail": "",
            "ChannelPublicId": "{ChannelPublicId}",
            "Author": "{Author}",
            "HasCustomDate": False,
            "StartDateUTC": "2024-07-17T11:41:34.1770878",
            "CountdownEnabled": False,
            "CountdownSeconds": 0,
            "CanCutAndPublish": False,
            "CanStopAndCut": False,
        },
        "projectId": "{projectId}",
    },
    "live.video.deleted": {
        "eventTime": "2024-07-17T11:47:06.760549Z",
        "eventType": "live.video.deleted",
        "data": {"Id": "{Id}", "Title": "{Title}"},
        "projectId": "{projectId}",
    },
    "live.video.status.changed": {
        "eventTime": "2024-07-17T11:37:44.5317666Z",
        "eventType": "live.video.status.changed",
        "data": {
            "Id": "{Id}",
            "StatusId": 1,
            "Status": "Live",
            "HealthStatusId": 1,
            "HealthStatus": "Healthy",
            "PlaybackUrl": "{PlaybackUrl}",
            "ActiveChannelId": "{ActiveChannelId}",
        },
        "projectId": "{projectId}",
    },
    "live.video.started": {
        "eventTime": "2024-07-17T11:41:34.7307497Z",
        "eventType": "live.video.started",
        "data": {"Id": "{Id}", "LiveStartDateUTC": "2024-07-17T11:41:34.1770878Z"},
        "projectId": "{projectId}",
    },
    "live.video.stopped": {
        "eventTime": "2024-07-17T11:46:04.9906651Z",
        "eventType": "live.video.stopped",
        "data": {
            "Id": "{Id}",
            "LiveCutStartDate": "2024-07-17T11:41:34.1770878",
            "LiveCutEndDate": "2024-07-17T11:46:00.7171556Z",
        },
        "projectId": "{projectId}",
    },
    "live.video.thumbnail.changed": {
        "eventTime": "2024-07-17T11:44:45.1171789Z",
        "eventType": "live.video.thumbnail.changed",
        "data": {"Id": "{Id}", "Path": "{Path}"},
        "projectId": "{projectId}",
    },
}


def gjirafa_status(status: str) -> dict[str, Any]:
    document = {**GJIRAFA["live.video.status.changed"]}
    document["data"] = {**document["data"], "Status": status}
    return document


FASTPIX_KEY_1 = b"fastpix signing key one"
FASTPIX_KEY_2 = b"fastpix signing key two"


def settings(**overrides: Any) -> Settings:
    """Settings with every secret set, two values each (a rotation in progress)."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": "127.0.0.1:1",
        "video_events_token": "cf-token-new,cf-token-old",
        "cf_webhook_secret": "cf-header-new,cf-header-old",
        "fastpix_webhook_secret": ",".join(
            base64.b64encode(k).decode() for k in (FASTPIX_KEY_1, FASTPIX_KEY_2)
        ),
        "gjirafa_webhook_token": "gj-token-new,gj-token-old",
        "publish_timeout_ms": 2000,
        **overrides,
    }
    return Settings(**values)
