"""Event response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "id": "0190d5d2-7000-7000-8000-000000000009", "seq": 42, "type": "redemption.captured",
            "occurred_at": "2026-11-26T08:00:00Z", "programme_id": "0190d5d2-0000-7000-8000-000000000001",
            "enterprise_id": "0190d5d2-0000-7000-8000-000000000003",
            "provider_id": "0190d5d2-0000-7000-8000-000000000002",
            "resource_type": "redemption", "resource_id": "0190d5d2-7000-7000-8000-000000000005",
            "data": {"status": "captured", "captured_amount": 150000, "released": 0},
        }]},
    )

    id: uuid.UUID = Field(description="Also the `webhook-id` of its deliveries.")
    seq: int = Field(description="Position in publication order: gap-free, increasing.")
    type: str
    occurred_at: datetime
    programme_id: uuid.UUID | None
    enterprise_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    resource_type: str
    resource_id: uuid.UUID
    data: dict[str, Any]


class EventPage(BaseModel):
    """A page of events; `poll_cursor` is the feed position to keep between polls."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "items": [EventPublic.model_config["json_schema_extra"]["examples"][0]],  # type: ignore[index]
        "next_cursor": None, "poll_cursor": "NDI",
    }]})

    items: list[EventPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
    poll_cursor: str | None = Field(
        description="Where this page ends (the `cursor` you sent when it is empty): keep it and poll with it "
        "as `cursor` to get only newer events. Null only when you have never had an event."
    )
