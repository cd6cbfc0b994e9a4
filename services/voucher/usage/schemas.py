"""Request and response models of usage reconciliation."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.voucher.i18n import msg
from services.voucher.instants import Day
from services.voucher.money import MAX_AMOUNT, MINOR_UNITS
from services.voucher.usage.rules import MAX_RECORDS

_PROGRAMME = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20"


class UsageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_reference: str = Field(min_length=1, max_length=128)
    amount: int = Field(ge=1, le=MAX_AMOUNT, strict=True, description=f"The order amount, in the minor unit of the programme's unit ({MINOR_UNITS}).")
    subsidy: int = Field(ge=0, le=MAX_AMOUNT, strict=True, description="The subsidy the provider applied.")


class UsageUpload(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"programme_id": _PROGRAMME, "period_start": "2026-03-01", "period_end": "2026-03-31",
         "records": [{"order_reference": "PO-1", "amount": 10_000_000, "subsidy": 3_000_000}]},
        {"programme_id": _PROGRAMME, "period_start": "2026-03-01", "period_end": "2026-03-31",
         "csv": "order_reference,amount,subsidy\nPO-1,10000000,3000000\n"},
    ]})

    programme_id: uuid.UUID
    period_start: Day = Field(description="First day, in Asia/Shanghai.")
    period_end: Day = Field(description="Last day (inclusive), in Asia/Shanghai; must be over.")
    records: list[UsageRecord] | None = Field(default=None, max_length=MAX_RECORDS)
    csv: str | None = Field(default=None, max_length=4_000_000,
                            description="CSV text with the header order_reference,amount,subsidy (integers in the minor unit of the programme's unit: " + MINOR_UNITS + ").")

    @model_validator(mode="after")
    def _one_source(self) -> UsageUpload:
        if (self.records is None) == (self.csv is None):
            raise ValueError(msg("give exactly one of records and csv"))
        return self


class UsageReport(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e50", "provider_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e13",
        "programme_id": _PROGRAMME, "period_start": "2026-03-01", "period_end": "2026-03-31",
        "source_format": "csv", "source_sha256": "5e88...", "record_count": 2, "created_at": "2026-04-01T02:00:00Z",
        "summary": {"matched": 1, "mismatched": 1, "missing_ours": 0, "missing_theirs": 1,
                    "their_subsidy": 4_000_000, "our_subsidy": 3_500_000},
        "matched": [{"order_reference": "PO-1", "amount": 10_000_000, "subsidy": 3_000_000}],
        "mismatched": [{"order_reference": "PO-2", "theirs": {"amount": 2_000_000, "subsidy": 1_000_000},
                        "ours": {"amount": 2_000_000, "subsidy": 400_000}, "subsidy_difference": 600_000}],
        "missing_ours": [],
        "missing_theirs": [{"order_reference": "PO-3", "ours": {"amount": 300_000, "subsidy": 100_000}}],
    }]})

    id: uuid.UUID
    provider_id: uuid.UUID
    programme_id: uuid.UUID
    period_start: Day
    period_end: Day
    source_format: str
    source_sha256: str
    record_count: int
    created_at: datetime
    summary: dict[str, int]
    matched: list[dict[str, Any]] | None = None
    mismatched: list[dict[str, Any]] | None = None
    missing_ours: list[dict[str, Any]] | None = None
    missing_theirs: list[dict[str, Any]] | None = None
