"""Provider request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from services.voucher.programmes.rules import ProgrammeKind
from services.voucher.providers.rules import ProviderStatus
from services.voucher.registry_schemas import PatchModel, RelatedParty, Uscc

EXAMPLE: dict[str, Any] = {
    "uscc": "91330100716105852F",
    "name": "杭州云算科技有限公司",
    "kinds": ["compute", "model"],
    "settlement_account": {
        "bank_name": "中国工商银行杭州余杭支行",
        "account_name": "杭州云算科技有限公司",
        "account_number": "1202020209000123456",
    },
    "webhook_url": "https://provider.example.com/voucher-events",
    "related_parties": [],
}


class SettlementAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bank_name: str = Field(min_length=1, max_length=200)
    account_name: str = Field(min_length=1, max_length=200)
    account_number: str = Field(min_length=4, max_length=40, pattern=r"^[0-9A-Za-z-]+$")


class ProviderFields(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kinds: list[ProgrammeKind] = Field(min_length=1, max_length=2)
    settlement_account: SettlementAccount | None = None
    webhook_url: AnyHttpUrl | None = None
    related_parties: list[RelatedParty] = Field(default_factory=list, max_length=200)


class ProviderCreate(ProviderFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    uscc: Uscc


class ProviderUpdate(PatchModel):
    nullable = frozenset({"settlement_account", "webhook_url"})
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"webhook_url": "https://provider.example.com/hooks/v2"}]},
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    kinds: list[ProgrammeKind] | None = Field(default=None, min_length=1, max_length=2)
    settlement_account: SettlementAccount | None = None
    webhook_url: AnyHttpUrl | None = None
    related_parties: list[RelatedParty] | None = Field(default=None, max_length=200)


class StatusChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "qualification documents verified"}]}
    )

    reason: str = Field(min_length=1, max_length=500)


class ProviderPublic(ProviderFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **EXAMPLE,
                    "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e13",
                    "status": "approved",
                    "status_reason": "qualification documents verified",
                    "version": 2,
                    "created_at": "2026-11-26T06:00:00Z",
                    "updated_at": "2026-11-26T06:01:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    uscc: str
    status: ProviderStatus
    status_reason: str | None
    version: int
    created_at: datetime
    updated_at: datetime
