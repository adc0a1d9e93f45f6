"""The producer's OpenAPI 3.1 document, generated from the pydantic models.

Request and response schemas come from the same models that validate the
webhooks and describe the answers, so the document cannot drift from the code;
only the routing (paths, parameters, security) is assembled here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from schemas.providers.cloudflare import CloudflareNotification
from schemas.providers.fastpix import FastPixLiveStreamEvent, FastPixSimulcastTargetEvent
from schemas.providers.gjirafa import GjirafaEvent

__all__ = ["Accepted", "ErrorBody", "FieldProblem", "openapi_document"]


class Accepted(BaseModel):
    """202: the broker acknowledged the record (acks=all)."""

    status: Literal["accepted"] = "accepted"
    event_id: str


class FieldProblem(BaseModel):
    field: str = Field(description="dotted path in the body, e.g. data.input_id")
    message: str


class ErrorBody(BaseModel):
    """Every failure: a reason, and for 422 the fields that failed."""

    error: str
    fields: list[FieldProblem] | None = Field(default=None, description="422 only")


_REF = "#/components/schemas/{model}"

_ERRORS = {
    "400": "body is not JSON",
    "401": "credentials missing or wrong",
    "413": "body over MAX_BODY_BYTES",
    "422": "JSON that fails the provider's schema (fields lists each failure)",
    "503": "not durably written within PUBLISH_TIMEOUT_MS; retry after Retry-After seconds",
}


def _webhook(summary: str, body_schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "202": {
            "description": "accepted: the broker acknowledged the record",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="Accepted")}}},
        }
    }
    for status, description in _ERRORS.items():
        responses[status] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}},
        }
    responses["503"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            },
            "responses": responses,
            **extra,
        }
    }


_TOKEN = {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}


def _probe(summary: str, media_type: str = "application/json") -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "responses": {"200": {"description": "OK", "content": {media_type: {}}}},
        }
    }


def openapi_document(max_body_bytes: int) -> dict[str, Any]:
    """The OpenAPI 3.1 document served at `/openapi.json`."""
    models: list[type[BaseModel]] = [
        CloudflareNotification,
        FastPixLiveStreamEvent,
        FastPixSimulcastTargetEvent,
        GjirafaEvent,
        Accepted,
        ErrorBody,
    ]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=_REF)

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return {"$ref": _REF.format(model=model.__name__)}

    fastpix_body = {"oneOf": [ref(FastPixLiveStreamEvent), ref(FastPixSimulcastTargetEvent)]}
    paths = {
        "/api/v1/video/events/{token}": _webhook(
            "Cloudflare Stream Live notifications",
            ref(CloudflareNotification),
            parameters=[{**_TOKEN, "description": "one of VIDEO_EVENTS_TOKEN"}],
            security=[{"cfWebhookAuth": []}],
        ),
        "/api/v1/video/fastpix/events": _webhook(
            "FastPix live stream webhooks", fastpix_body, security=[{"fastPixSignature": []}]
        ),
        "/api/v1/video/gjirafa/events/{token}": _webhook(
            "Gjirafa VP live video webhooks",
            ref(GjirafaEvent),
            parameters=[{**_TOKEN, "description": "one of GJIRAFA_WEBHOOK_TOKEN"}],
        ),
        "/healthz": _probe(
            "the process is up (503 after a fatal Kafka producer error: restart it)"
        ),
        "/readyz": _probe("Kafka answers and has the events topic (503 otherwise)"),
        "/metrics": _probe("Prometheus metrics", "text/plain"),
        "/openapi.json": _probe("this document"),
    }
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "livewindows producer",
            "version": "1",
            "description": "Live-video provider webhooks in, canonical events to Kafka out. "
            f"Bodies are limited to {max_body_bytes} bytes.",
        },
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {
                "cfWebhookAuth": {"type": "apiKey", "in": "header", "name": "cf-webhook-auth"},
                "fastPixSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "FastPix-Signature",
                    "description": "base64(HMAC-SHA256(base64-decoded secret, raw body))",
                },
            },
        },
    }
