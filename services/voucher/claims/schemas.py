"""Request and response models of enterprise claims."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.voucher.claims.rules import ClaimStatus
from services.voucher.instants import Day
from services.voucher.money import MAX_AMOUNT
from services.voucher.redemption.schemas import LineItem
from services.voucher.registry_schemas import FileNameText, OneLineText, WrittenText

_VOUCHER = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e21"
_PROVIDER = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e13"
_DIGEST = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"


class Document(BaseModel):
    """A document kept outside the service, known by its metadata and SHA-256 digest."""

    model_config = ConfigDict(extra="forbid")

    #: Shown to the office reviewing the claim: one line, no control or invisible formatting
    #: characters ("invoice\u202efdp.exe" had read as "invoiceexe.pdf"; an independent review).
    file_name: FileNameText = Field(min_length=1, max_length=255)
    media_type: str = Field(min_length=3, max_length=100, pattern=r"^[a-z0-9.+-]+/[a-z0-9.+-]+$")
    size: int = Field(ge=1, le=10**10, strict=True)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Lower-case hex SHA-256 of the file.")


class ClaimCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "voucher_id": _VOUCHER, "provider_id": _PROVIDER, "contract_number": "SZ-2026-118",
        "invoice_number": "44031234", "invoice_code": "3300231130", "invoice_date": "2026-03-01",
        "amount_paid": 2_000_000,
        "line_items": [{"category": "accelerator:domestic", "amount": 2_000_000, "accelerator": "Ascend 910B",
                        "hours_milli": 150_000}],
        "documents": [{"file_name": "invoice-44031234.pdf", "media_type": "application/pdf", "size": 183_224,
                       "sha256": _DIGEST}],
    }]})

    voucher_id: uuid.UUID
    provider_id: uuid.UUID
    contract_number: str = Field(min_length=1, max_length=64)
    invoice_number: str = Field(
        min_length=1, max_length=64,
        description="A fully digital invoice's (数电票) 20-digit number, or an older VAT invoice's 8-digit number "
                    "with its `invoice_code`. An invoice is claimed once, whoever files it.")
    invoice_code: str | None = Field(default=None, min_length=1, max_length=64,
                                     description="An older VAT invoice's code (10 or 12 digits); none for a fully "
                                                 "digital invoice.")
    invoice_date: Day
    amount_paid: int = Field(ge=1, le=MAX_AMOUNT, strict=True, description="Paid in full to the provider.")
    line_items: list[LineItem] = Field(min_length=1, max_length=100)
    documents: list[Document] = Field(min_length=1, max_length=20)


class ClaimPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e60", "voucher_id": _VOUCHER,
        "programme_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20", "enterprise_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e11",
        "provider_id": _PROVIDER, "redemption_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e61",
        "contract_number": "SZ-2026-118", "invoice_number": "44031234", "invoice_code": "3300231130",
        "invoice_date": "2026-03-01",
        "amount_paid": 2_000_000, "unit": "CNY", "line_items": [], "documents": [], "subsidy": 600_000,
        "approved_amount": None, "status": "under_review", "status_reason": None, "payment_reference": None,
        "paid_on": None, "created_at": "2026-03-02T01:00:00Z", "updated_at": "2026-03-02T02:00:00Z"}]})

    id: uuid.UUID
    voucher_id: uuid.UUID
    programme_id: uuid.UUID
    enterprise_id: uuid.UUID
    provider_id: uuid.UUID
    redemption_id: uuid.UUID
    contract_number: str
    invoice_number: str
    invoice_code: str | None = None
    invoice_date: Day
    amount_paid: int
    unit: str
    line_items: list[dict[str, Any]]
    documents: list[dict[str, Any]]
    subsidy: int = Field(description="Computed as for a redemption; held from the voucher during review.")
    approved_amount: int | None
    status: ClaimStatus
    status_reason: str | None
    payment_reference: str | None
    paid_on: Day | None
    created_at: datetime
    updated_at: datetime


class ClaimApproval(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount": 600_000, "note": "verified"}]})

    amount: int | None = Field(default=None, ge=1, le=MAX_AMOUNT, strict=True, description="Default: all held.")
    note: WrittenText | None = Field(default=None, max_length=2000)


class ClaimRejection(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "invoice does not match"}]})

    reason: WrittenText = Field(min_length=1, max_length=2000)


class ClaimPayment(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"reference": "ICBC-20260410-77", "paid_on": "2026-04-10"}]})

    reference: OneLineText = Field(min_length=1, max_length=128)
    paid_on: Day
