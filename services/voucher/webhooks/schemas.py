"""Webhook endpoint and delivery request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.voucher.events.rules import EventType
from services.voucher.registry_schemas import OptionalLine, PatchModel

_URL = Field(min_length=8, max_length=2048, description="https:// URL that receives POSTed events.")
_TYPES = Field(min_length=1, max_length=len(EventType), description="The event types to send here.")
_ENDPOINT: dict[str, Any] = {
    "id": "0190d5d2-6a3c-7e41-9b1f-5c2d8e4f7a10", "url": "https://provider.example.com/voucher-events",
    "event_types": ["redemption.captured"], "description": "billing system", "status": "enabled",
    "enterprise_id": None, "provider_id": "0190d5d2-0000-7000-8000-000000000002",
    "previous_secret_expires_at": None, "created_at": "2026-11-26T08:00:00Z", "updated_at": "2026-11-26T08:00:00Z",
}


class WebhookEndpointCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "url": "https://provider.example.com/voucher-events",
            "event_types": ["redemption.captured", "refund.created", "settlement.paid"],
            "description": "billing system",
        }]},
    )

    url: str = _URL
    event_types: list[EventType] = _TYPES
    description: OptionalLine = Field(default=None, max_length=500)


class WebhookEndpointUpdate(PatchModel):
    nullable = frozenset({"description"})
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "disabled"}]},
    )

    url: str | None = Field(default=None, min_length=8, max_length=2048)
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=len(EventType))
    description: OptionalLine = Field(default=None, max_length=500)
    status: Literal["enabled", "disabled"] | None = None


class WebhookEndpointPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [_ENDPOINT]},
    )

    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str | None
    status: str
    enterprise_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the previous secret also signs (after a rotation); one rotated within its own "
                    "24 hours before that signs until its own, earlier end."
    )
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpointPublic):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_ENDPOINT, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw0YvFmIjp3rA="}]},
    )

    secret: str = Field(description="Signs every delivery (Standard Webhooks). Shown only now: keep it.")


class AttemptPublic(BaseModel):
    number: int
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None


class DeliveryPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "id": "0190d5d2-7000-7000-8000-000000000001", "event_id": "0190d5d2-7000-7000-8000-000000000009",
            "event_type": "redemption.captured", "status": "pending", "attempts": 1,
            "next_attempt_at": "2026-11-26T08:00:30Z", "last_status_code": 500, "last_error": "HTTP 500",
            "delivered_at": None, "created_at": "2026-11-26T08:00:00Z",
            "attempt_log": [{"number": 1, "attempted_at": "2026-11-26T08:00:00Z", "status_code": 500,
                             "duration_ms": 41, "error": "HTTP 500"}],
        }]},
    )

    id: uuid.UUID
    event_id: uuid.UUID = Field(description="Also the `webhook-id` header: the same on every attempt.")
    event_type: str
    status: Literal["pending", "succeeded", "failed", "cancelled"]
    attempts: int = Field(description="Attempts in the current round (a manual redelivery starts a new one).")
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    attempt_log: list[AttemptPublic]


class EndpointHealth(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "endpoint_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e70", "owner": "provider",
        "owner_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e13", "owner_name": "杭州示例算力有限公司",
        "address": "https://hooks.example.com", "status": "enabled",
        "last_success_at": "2026-03-02T01:00:00Z", "last_failure_at": "2026-03-02T02:00:00Z",
        "last_failure_status_code": 503, "last_failure_error": None, "pending": 3,
        "failing_streak": 3, "failing_streak_may_be_longer": False}]})

    endpoint_id: uuid.UUID
    owner: str = Field(description="enterprise or provider: who registered it")
    owner_id: uuid.UUID
    owner_name: str | None
    address: str = Field(description="The scheme, host and port of its URL; never its path, query or secret.")
    status: str = Field(description="enabled or disabled")
    last_success_at: datetime | None = Field(description="When its newest successful delivery got through.")
    last_failure_at: datetime | None = Field(
        description="When the newest failed attempt was made, of a delivery given up on or still being retried.")
    last_failure_status_code: int | None = Field(description="What that attempt was answered (null: no answer).")
    last_failure_error: str | None
    pending: int = Field(description="Deliveries it is still owed (queued or being retried).")
    failing_streak: int = Field(description="Its newest deliveries in a row that were tried and have not got "
                                            "through (a delivery not yet tried, or cancelled, counts neither way).")
    failing_streak_may_be_longer: bool = Field(
        description="Only the newest 50 deliveries are read, and all of them are in the streak.")
