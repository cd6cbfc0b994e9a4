"""API key request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from services.voucher.apikeys.rules import Role, Scope
from services.voucher.instants import Instant
from services.voucher.registry_schemas import NameText, OneLineText, WrittenText


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "role": "provider",
                    "name": "billing system",
                    "provider_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e11",
                    "expires_at": "2027-12-31T16:00:00Z",
                },
                {"role": "auditor", "name": "audit laptop", "principal_name": "District audit bureau"},
            ]
        },
    )

    role: Role
    name: OneLineText = Field(min_length=1, max_length=200, description="What the key is used for.")
    enterprise_id: uuid.UUID | None = Field(default=None, description="For enterprise keys.")
    provider_id: uuid.UUID | None = Field(default=None, description="For provider keys.")
    principal_id: uuid.UUID | None = Field(
        default=None, description="Another key for an existing operator or auditor principal."
    )
    principal_name: NameText | None = Field(
        default=None, min_length=1, max_length=200, description="A new operator or auditor principal's name."
    )
    scopes: list[Scope] | None = Field(
        default=None, description="A subset of the role's scopes; all of them when omitted."
    )
    expires_at: Instant | None = None


class ApiKeyRevoke(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "laptop lost"}]})

    reason: WrittenText = Field(min_length=1, max_length=500)


class ApiKeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"grace_seconds": 3600}]})

    grace_seconds: int = Field(
        default=0,
        ge=0,
        le=7 * 24 * 3600,
        description="How long the old key keeps working (0: it stops at once).",
    )


_KEY_EXAMPLE: JsonDict = {
    "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e11",
    "name": "billing system",
    "prefix": "vk_3f9a1b2c4d",
    "role": "provider",
    "principal_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e12",
    "principal_name": "Hangzhou Compute Co.",
    "enterprise_id": None,
    "provider_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e13",
    "scopes": ["keys:self", "programmes:read", "providers:read"],
    "status": "active",
    "created_at": "2026-11-26T06:00:00Z",
    "expires_at": None,
    "revoked_at": None,
    "revoked_reason": None,
    "rotated_from_id": None,
    "created_by_key_id": None,
}


class ApiKeyPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_KEY_EXAMPLE]})

    id: uuid.UUID
    name: str
    prefix: str = Field(description="The public start of the key, to tell keys apart.")
    role: Role
    principal_id: uuid.UUID
    principal_name: str
    enterprise_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    scopes: list[str]
    status: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None
    rotated_from_id: uuid.UUID | None
    created_by_key_id: uuid.UUID | None = Field(
        default=None, description="The key that created or rotated it (null: made with the CLI). After "
                                  "revoking a leaked key, list what it made with `?created_by_key_id=`.")


class ApiKeyCreated(ApiKeyPublic):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {**_KEY_EXAMPLE, "key": "vk_3f9a1b2c4d_Jq8x2mW0pL5vR7tY1nB4cE6hK9sD3fG0aZ2uQ8iO1wX"}]})

    key: str = Field(description="The secret key. Shown once: it is stored only as a hash.")


class Me(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "principal_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e12",
                    "role": "enterprise",
                    "key_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e11",
                    "scopes": ["enterprises:read", "keys:self", "programmes:read"],
                    "enterprise_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e14",
                    "provider_id": None,
                    "sandbox": False,
                    "now": "2026-12-02T02:15:00.123456Z",
                }
            ]
        }
    )

    principal_id: uuid.UUID
    role: Role
    key_id: uuid.UUID | None
    scopes: list[str]
    enterprise_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    sandbox: bool = Field(description="True when the service runs in sandbox mode: its clock (`now`) may be "
                                      "ahead of real time (`GET /v1/sandbox/clock`).")
    now: datetime = Field(description="The service's time, which every rule uses: real time, or the sandbox clock.")
