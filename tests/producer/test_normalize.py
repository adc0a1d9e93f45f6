"""SPEC §3/§4 mapping, row by row: every event type of every seed document."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from producer.normalize import (
    MAX_DEPTH,
    InvalidPayload,
    NotJSON,
    derived_event_id,
    parse_json,
    to_event,
)
from schemas.providers import cloudflare as cf
from schemas.providers import fastpix as fp
from schemas.providers import gjirafa as gj
from schemas.records import LATEST_OCCURRED_MS, MAX_RECONNECT_WINDOW_S, Event
from schemas.timestamps import format_ms
from tests.producer import seeds

RECEIVED_MS = 1_790_000_000_123
RECEIVED_AT = "2026-09-21T14:13:20.123Z"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# provider, document, input_id, kind, occurred_at, reconnect_window_s
ROWS: list[tuple[str, dict[str, Any], str, str, str, int | None]] = [
    # Cloudflare: data.input_id; data.updated_at with nanoseconds, truncated.
    (
        "cloudflare",
        seeds.cloudflare("live_input.connected"),
        seeds.CF_INPUT,
        "connected",
        "2022-01-13T11:43:41.855Z",
        None,
    ),
    (
        "cloudflare",
        seeds.cloudflare("live_input.disconnected"),
        seeds.CF_INPUT,
        "disconnected",
        "2022-01-13T11:43:41.855Z",
        None,
    ),
    (
        "cloudflare",
        seeds.cloudflare("live_input.errored"),
        seeds.CF_INPUT,
        "errored",
        "2022-01-13T11:43:41.855Z",
        None,
    ),
    # FastPix live stream events: object.id, created_at, data.reconnectWindow.
    (
        "fastpix",
        seeds.fastpix_stream("video.live_stream.created"),
        seeds.FP_STREAM,
        "other",
        "2023-12-06T09:12:28.808Z",
        60,
    ),
    (
        "fastpix",
        seeds.fastpix_stream("video.live_stream.connected"),
        seeds.FP_STREAM,
        "connected",
        "2023-12-06T09:12:28.808Z",
        60,
    ),
    (
        "fastpix",
        seeds.fastpix_stream("video.live_stream.recording"),
        seeds.FP_STREAM,
        "other",
        "2023-12-06T09:12:28.808Z",
        60,
    ),
    (
        "fastpix",
        seeds.fastpix_stream("video.live_stream.active"),
        seeds.FP_STREAM,
        "connected",
        "2023-12-06T09:12:28.808Z",
        60,
    ),
    (
        "fastpix",
        seeds.fastpix_stream("video.live_stream.disconnected"),
        seeds.FP_STREAM,
        "disconnected",
        "2023-12-06T09:12:28.808Z",
        60,
    ),
    (
        "fastpix",
        seeds.fastpix_stream("video.live_stream.idle"),
        seeds.FP_STREAM,
        "ended",
        "2023-12-06T09:12:28.808Z",
        60,
    ),
    (
        "fastpix",
        seeds.fastpix_stream("video.live_stream.updated"),
        seeds.FP_STREAM,
        "other",
        "2023-12-06T09:12:28.808Z",
        60,
    ),
    (
        "fastpix",
        seeds.fastpix_stream("video.live_stream.enabled"),
        seeds.FP_STREAM,
        "other",
        "2023-12-06T09:12:28.808Z",
        60,
    ),
    (
        "fastpix",
        seeds.fastpix_stream("video.live_stream.disabled"),
        seeds.FP_STREAM,
        "ended",
        "2023-12-06T09:12:28.808Z",
        60,
    ),
    (
        "fastpix",
        seeds.fastpix_stream("video.live_stream.deleted"),
        seeds.FP_STREAM,
        "ended",
        "2023-12-06T09:12:28.808Z",
        60,
    ),
    # FastPix simulcast target events: data.livestreamId, never object.id.
    (
        "fastpix",
        seeds.fastpix_simulcast("video.live_stream.simulcast_target.created"),
        seeds.FP_LIVESTREAM,
        "other",
        "2023-12-06T09:12:28.808Z",
        None,
    ),
    (
        "fastpix",
        seeds.fastpix_simulcast("video.live_stream.simulcast_target.starting"),
        seeds.FP_LIVESTREAM,
        "other",
        "2023-12-06T09:12:28.808Z",
        None,
    ),
    (
        "fastpix",
        seeds.fastpix_simulcast("video.live_stream.simulcast_target.broadcasting"),
        seeds.FP_LIVESTREAM,
        "other",
        "2023-12-06T09:12:28.808Z",
        None,
    ),
    (
        "fastpix",
        seeds.fastpix_simulcast("video.live_stream.simulcast_target.deleted"),
        seeds.FP_LIVESTREAM,
        "other",
        "2023-12-06T09:12:28.808Z",
        None,
    ),
    # Gjirafa: data.Id; eventTime with seven digits, truncated.
    (
        "gjirafa",
        seeds.GJIRAFA["live.video.created"],
        "{Id}",
        "other",
        "2024-07-17T11:40:06.078Z",
        None,
    ),
    (
        "gjirafa",
        seeds.GJIRAFA["live.video.updated"],
        "{Id}",
        "other",
        "2024-07-17T11:43:14.052Z",
        None,
    ),
    (
        "gjirafa",
        seeds.GJIRAFA["live.video.deleted"],
        "{Id}",
        "ended",
        "2024-07-17T11:47:06.760Z",
        None,
    ),
    (
        "gjirafa",
        seeds.GJIRAFA["live.video.status.changed"],
        "{Id}",
        "connected",
        "2024-07-17T11:37:44.531Z",
        None,
    ),
    (
        "gjirafa",
        seeds.GJIRAFA["live.video.started"],
        "{Id}",
        "connected",
        "2024-07-17T11:41:34.730Z",
        None,
    ),
    (
        "gjirafa",
        seeds.GJIRAFA["live.video.stopped"],
        "{Id}",
        "ended",
        "2024-07-17T11:46:04.990Z",
        None,
    ),
    (
        "gjirafa",
        seeds.GJIRAFA["live.video.thumbnail.changed"],
        "{Id}",
        "other",
        "2024-07-17T11:44:45.117Z",
        None,
    ),
]


def _event_type(provider: str, document: dict[str, Any]) -> str:
    return {
        "cloudflare": lambda: document["data"]["event_type"],
        "fastpix": lambda: document["type"],
        "gjirafa": lambda: document["eventType"],
    }[provider]()


def _row_id(row: tuple[Any, ...]) -> str:
    return f"{row[0]}:{_event_type(row[0], row[1])}"


def test_the_table_covers_every_event_type_of_the_seed_documents() -> None:
    covered = {(row[0], _event_type(row[0], row[1])) for row in ROWS}
    documented = (
        {("cloudflare", t) for t in cf.EVENT_TYPES}
        | {("fastpix", t) for t in fp.LIVE_STREAM_TYPES + fp.SIMULCAST_TARGET_TYPES}
        | {("gjirafa", t) for t in gj.EVENT_TYPES}
    )
    assert covered == documented
    assert (len(cf.EVENT_TYPES), len(fp.LIVE_STREAM_TYPES + fp.SIMULCAST_TARGET_TYPES)) == (3, 14)
    assert len(gj.EVENT_TYPES) == 7


@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_every_seed_event_maps_as_spec_section_3_says(row: tuple[Any, ...]) -> None:
    provider, document, input_id, kind, occurred_at, reconnect_window_s = row
    event = to_event(provider, document, RECEIVED_MS)
    event_type = _event_type(provider, document)
    assert (event.provider, event.input_id, event.kind) == (provider, input_id, kind)
    assert (event.provider_event_type, event.occurred_at) == (event_type, occurred_at)
    assert (event.received_at, event.reconnect_window_s) == (RECEIVED_AT, reconnect_window_s)
    # None of the seed documents carries a top-level `id`: the derived id applies.
    assert event.event_id == _sha(f"{provider}|{input_id}|{event_type}|{occurred_at}")
    assert event.key == f"{provider}:{input_id}"


@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_every_event_round_trips_through_the_record_model(row: tuple[Any, ...]) -> None:
    event = to_event(row[0], row[1], RECEIVED_MS)
    value = orjson.dumps(event.model_dump(by_alias=True))
    assert orjson.loads(value)["schema"] == "livewindows/event/v1"
    assert Event.model_validate_json(value) == event


def test_derived_event_id_is_sha256_of_the_four_parts() -> None:
    assert derived_event_id(
        "cloudflare", "in1", "live_input.connected", "2022-01-13T11:43:41.855Z"
    ) == _sha("cloudflare|in1|live_input.connected|2022-01-13T11:43:41.855Z")


def test_a_retry_with_other_sub_millisecond_digits_gets_the_same_event_id() -> None:
    first = to_event(
        "cloudflare",
        seeds.cloudflare("live_input.disconnected", "2022-01-13T11:43:41.855717910Z"),
        1,
    )
    retry = to_event(
        "cloudflare",
        seeds.cloudflare("live_input.disconnected", "2022-01-13T11:43:41.855999999Z"),
        2,
    )
    assert first.event_id == retry.event_id
    assert first.received_at != retry.received_at


def test_the_event_id_differs_per_input_type_and_millisecond() -> None:
    base = to_event("gjirafa", seeds.GJIRAFA["live.video.started"], 0).event_id
    other_ms = {**seeds.GJIRAFA["live.video.started"], "eventTime": "2024-07-17T11:41:34.7317497Z"}
    other_input = {**seeds.GJIRAFA["live.video.started"], "data": {"Id": "other"}}
    other_type = {**seeds.GJIRAFA["live.video.started"], "eventType": "live.video.stopped"}
    ids = {to_event("gjirafa", d, 0).event_id for d in (other_ms, other_input, other_type)}
    assert base not in ids and len(ids) == 3


def test_fastpix_top_level_id_is_the_event_id() -> None:
    document = seeds.fastpix_stream("video.live_stream.disconnected", id="evt-7f3a")
    assert to_event("fastpix", document, 0).event_id == "evt-7f3a"


def test_fastpix_webhook_id_is_never_the_event_id() -> None:
    one = to_event("fastpix", seeds.fastpix_stream("video.live_stream.connected"), 0)
    two = to_event("fastpix", seeds.fastpix_stream("video.live_stream.disconnected"), 0)
    assert one.payload["webhookId"] == two.payload["webhookId"]
    assert one.event_id != two.event_id
    assert "2b5f6c1e" not in one.event_id


def test_fastpix_without_reconnect_window_has_none() -> None:
    document = seeds.fastpix_stream("video.live_stream.disconnected")
    del document["data"]["reconnectWindow"]
    assert to_event("fastpix", document, 0).reconnect_window_s is None


def test_fastpix_reconnect_window_is_taken_as_is() -> None:
    document = seeds.fastpix_stream("video.live_stream.disconnected")
    document["data"]["reconnectWindow"] = 300
    assert to_event("fastpix", document, 0).reconnect_window_s == 300


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("Live", "connected"),
        ("Interrupted", "disconnected"),
        ("Offline", "ended"),
        ("Processing", "other"),
        ("Unheard", "other"),
        ("live", "connected"),
    ],
)
def test_gjirafa_status_changed_maps_by_status(status: str, kind: str) -> None:
    assert to_event("gjirafa", seeds.gjirafa_status(status), 0).kind == kind


def test_gjirafa_public_id_is_the_input_when_there_is_no_id() -> None:
    document = {**seeds.GJIRAFA["live.video.created"]}
    document["data"] = {k: v for k, v in document["data"].items() if k != "Id"}
    assert to_event("gjirafa", document, 0).input_id == "{PublicId}"


def test_gjirafa_integer_id_is_its_decimal_text() -> None:
    document = {**seeds.GJIRAFA["live.video.started"], "data": {"Id": 4711}}
    assert to_event("gjirafa", document, 0).input_id == "4711"


@pytest.mark.parametrize(
    ("provider", "document"),
    [
        ("cloudflare", seeds.cloudflare("live_input.paused")),
        ("fastpix", seeds.fastpix_stream("video.live_stream.transcoding")),
        ("fastpix", seeds.fastpix_simulcast("video.live_stream.simulcast_target.errored")),
        ("gjirafa", {**seeds.GJIRAFA["live.video.started"], "eventType": "live.video.renamed"}),
    ],
    ids=["cloudflare", "fastpix", "fastpix-simulcast", "gjirafa"],
)
def test_unknown_event_types_of_a_known_provider_are_other(
    provider: str, document: dict[str, Any]
) -> None:
    event = to_event(provider, document, 0)
    assert event.kind == "other"
    assert event.provider_event_type == _event_type(provider, document)


def test_unknown_fastpix_simulcast_type_still_takes_the_livestream_id() -> None:
    document = seeds.fastpix_simulcast("video.live_stream.simulcast_target.errored")
    assert to_event("fastpix", document, 0).input_id == seeds.FP_LIVESTREAM


@pytest.mark.parametrize(
    ("ts", "occurred_at"),
    [
        (1642074233, "2022-01-13T11:43:53.000Z"),
        (1642074233.8559, "2022-01-13T11:43:53.855Z"),
        ("2022-01-13T11:43:53.8559Z", "2022-01-13T11:43:53.855Z"),
    ],
)
def test_cloudflare_falls_back_to_ts_without_updated_at(ts: Any, occurred_at: str) -> None:
    event = to_event("cloudflare", seeds.cloudflare("live_input.connected", None, ts), 0)
    assert event.occurred_at == occurred_at


def test_cloudflare_updated_at_wins_over_ts() -> None:
    event = to_event("cloudflare", seeds.cloudflare("live_input.connected"), 0)
    assert event.occurred_at == "2022-01-13T11:43:41.855Z"


def test_timestamps_with_an_offset_are_converted_to_utc() -> None:
    document = {
        **seeds.GJIRAFA["live.video.started"],
        "eventTime": "2024-07-17T13:41:34.7307497+02:00",
    }
    assert to_event("gjirafa", document, 0).occurred_at == "2024-07-17T11:41:34.730Z"


def _fields(provider: str, document: Any) -> list[str]:
    with pytest.raises(InvalidPayload) as caught:
        to_event(provider, document, 0)
    return [e["field"] for e in caught.value.errors]


def test_cloudflare_missing_fields_are_each_listed() -> None:
    assert _fields("cloudflare", {"data": {"updated_at": "yesterday"}}) == [
        "data.input_id",
        "data.event_type",
        "data.updated_at",
    ]


def test_cloudflare_without_any_time_is_rejected_at_updated_at() -> None:
    assert _fields("cloudflare", seeds.cloudflare("live_input.connected", None, None)) == [
        "data.updated_at"
    ]


def test_fastpix_stream_event_needs_object_id_and_created_at() -> None:
    document = seeds.fastpix_stream("video.live_stream.connected")
    del document["object"]["id"], document["created_at"]
    assert sorted(_fields("fastpix", document)) == ["created_at", "object.id"]


def test_fastpix_simulcast_event_needs_the_livestream_id() -> None:
    document = seeds.fastpix_simulcast("video.live_stream.simulcast_target.created")
    del document["data"]["livestreamId"]
    assert _fields("fastpix", document) == ["data.livestreamId"]


@pytest.mark.parametrize("window", [-1, "60", 60.5, True])
def test_fastpix_reconnect_window_must_be_a_non_negative_integer(window: Any) -> None:
    document = seeds.fastpix_stream("video.live_stream.disconnected")
    document["data"]["reconnectWindow"] = window
    assert _fields("fastpix", document) == ["data.reconnectWindow"]


@pytest.mark.parametrize("blank", ["", " ", "\t\n", "in\x00put", "a\x1fb", "\x7f"])
def test_blank_ids_are_rejected_not_shared(blank: str) -> None:
    # A blank event id would be one id for all such events: the next ones duplicates.
    # A control character is no id either (PostgreSQL's text cannot even hold a NUL).
    stream = seeds.fastpix_stream("video.live_stream.disconnected", id=blank)
    assert _fields("fastpix", stream) == ["id"]
    stream = seeds.fastpix_stream("video.live_stream.disconnected")
    stream["object"]["id"] = blank
    assert _fields("fastpix", stream) == ["object.id"]
    document = {**seeds.GJIRAFA["live.video.started"], "data": {"Id": blank}}
    assert _fields("gjirafa", document) == ["data.Id"]
    cloudflare = seeds.cloudflare("live_input.connected")
    cloudflare["data"]["input_id"] = blank
    assert _fields("cloudflare", cloudflare) == ["data.input_id"]


def test_event_times_and_windows_too_late_to_write_a_window_are_422() -> None:
    # A time-out closes at opened_at + the reconnect window: past year 9999 no
    # window record could be written, and the worker would stop on it.
    late, last = "9999-12-31T23:59:30Z", format_ms(LATEST_OCCURRED_MS)
    stream = seeds.fastpix_stream("video.live_stream.disconnected")
    assert to_event("fastpix", {**stream, "created_at": last}, 0).occurred_at == last
    assert _fields("fastpix", {**stream, "created_at": late}) == ["created_at"]
    stream["data"]["reconnectWindow"] = MAX_RECONNECT_WINDOW_S + 1
    assert _fields("fastpix", stream) == ["data.reconnectWindow"]
    document = {**seeds.GJIRAFA["live.video.started"], "eventTime": late}
    assert _fields("gjirafa", document) == ["eventTime"]
    assert _fields("cloudflare", seeds.cloudflare("live_input.connected", late)) == [
        "data.updated_at"
    ]
    too_late_ts = LATEST_OCCURRED_MS // 1000 + 1
    assert _fields("cloudflare", seeds.cloudflare("live_input.connected", None, too_late_ts))


def test_fastpix_without_a_type_is_rejected() -> None:
    document = seeds.fastpix_stream("video.live_stream.connected")
    del document["type"]
    assert _fields("fastpix", document) == ["type"]


def test_gjirafa_needs_an_id_or_public_id() -> None:
    document = {**seeds.GJIRAFA["live.video.started"], "data": {"Title": "t"}}
    assert _fields("gjirafa", document) == ["data"]


def test_gjirafa_status_changed_needs_a_status() -> None:
    document = {**seeds.GJIRAFA["live.video.status.changed"], "data": {"Id": "x"}}
    assert _fields("gjirafa", document) == ["data.Status"]


@pytest.mark.parametrize(
    "when", ["2024-13-01T00:00:00Z", "17/07/2024", "", "0001-01-01T00:00:00+01:00"]
)
def test_gjirafa_unusable_event_time_is_rejected(when: str) -> None:
    document = {**seeds.GJIRAFA["live.video.started"], "eventTime": when}
    assert _fields("gjirafa", document) == ["eventTime"]


@pytest.mark.parametrize("document", [[], "text", 3, None])
def test_json_that_is_not_an_object_is_a_schema_failure(document: Any) -> None:
    for provider in ("cloudflare", "fastpix", "gjirafa"):
        assert _fields(provider, document)


def test_a_body_nested_deeper_than_the_limit_is_rejected() -> None:
    deep: Any = "x"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    document = {**seeds.GJIRAFA["live.video.started"], "extra": deep}
    assert _fields("gjirafa", document) == ["body"]
    shallow = {**seeds.GJIRAFA["live.video.started"], "extra": deep[0]}
    assert to_event("gjirafa", shallow, 0).kind == "connected"


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", b"{'a': 1}", b"NaN", b"[1,]"])
def test_parse_json_rejects_what_is_not_json(body: bytes) -> None:
    with pytest.raises(NotJSON):
        parse_json(body)


def test_extra_fields_are_kept_in_the_payload() -> None:
    document = {**seeds.GJIRAFA["live.video.started"], "newField": {"nested": [1, 2]}}
    assert to_event("gjirafa", document, 0).payload["newField"] == {"nested": [1, 2]}


def test_depth_counts_inside_a_redacted_value() -> None:
    deep: Any = "x"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    document = {**seeds.GJIRAFA["live.video.started"], "extra": {"streamKey": deep}}
    assert _fields("gjirafa", document) == ["body"]


@pytest.mark.parametrize(
    ("event_time", "occurred_at"),
    [
        ("2031-02-03T04:05:06.9876543Z", "2031-02-03T04:05:06.987Z"),
        ("2031-02-03T04:05:07Z", "2031-02-03T04:05:07.000Z"),
        ("2031-02-03T04:05:08.5Z", "2031-02-03T04:05:08.500Z"),
        ("2031-02-03T04:05:09.123456789Z", "2031-02-03T04:05:09.123Z"),
        ("2031-02-03T04:05:10.1+01:00", "2031-02-03T03:05:10.100Z"),
    ],
)
def test_provider_times_are_the_same_once_their_minute_was_seen(
    event_time: str, occurred_at: str
) -> None:
    first = {**seeds.GJIRAFA["live.video.started"], "eventTime": "2031-02-03T04:05:00.0000000Z"}
    document = {**first, "eventTime": event_time}
    for _ in range(2):  # cold, then with the minute in the timestamp cache
        assert to_event("gjirafa", first, 0).occurred_at == "2031-02-03T04:05:00.000Z"
        assert to_event("gjirafa", document, 0).occurred_at == occurred_at


@pytest.mark.parametrize(
    "event_time",
    ["2031-02-03T04:05:60.0000000Z", "2031-02-03T04:05:1x.0000000Z", "2031-02-03T04:05:01.Z"],
)
def test_a_bad_second_is_rejected_even_in_a_seen_minute(event_time: str) -> None:
    seen = {**seeds.GJIRAFA["live.video.started"], "eventTime": "2031-02-03T04:05:00.0000000Z"}
    to_event("gjirafa", seen, 0)
    assert _fields("gjirafa", {**seen, "eventTime": event_time}) == ["eventTime"]
