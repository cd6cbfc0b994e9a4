"""Request and response models of applications, the publicity notice and eligibility results."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.voucher.applications.rules import ApplicationStatus
from services.voucher.eligibility.schemas import Eligibility
from services.voucher.i18n import msg
from services.voucher.instants import Day
from services.voucher.money import MAX_AMOUNT
from services.voucher.registry_schemas import NameText, WrittenText

_ID = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e30"
_PROGRAMME = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20"
_PROVIDER = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e13"


class Contract(BaseModel):
    """A contract the subsidy is for: one subsidy per contract, across applications and claims."""

    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=1, max_length=64, description="Compared without case or white space.")
    provider_id: uuid.UUID = Field(description="The counterparty: a registered provider.")
    amount: int = Field(ge=1, le=MAX_AMOUNT, strict=True, description="Contract value, in the programme's unit.")
    signed_on: Day
    starts_on: Day
    ends_on: Day

    @model_validator(mode="after")
    def _dates(self) -> Contract:
        if self.ends_on < self.starts_on:
            raise ValueError(msg("ends_on is before starts_on"))
        return self


class ApplicationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "programme_id": _PROGRAMME, "requested_amount": 30_000_000,
            "purpose": "Fine-tuning a quality-inspection model on domestic accelerators",
            "contracts": [{"number": "HZC-2026-0042", "provider_id": _PROVIDER, "amount": 100_000_000,
                           "signed_on": "2026-02-20", "starts_on": "2026-03-01", "ends_on": "2026-12-31"}],
        }]},
    )

    programme_id: uuid.UUID
    requested_amount: int = Field(ge=1, le=MAX_AMOUNT, strict=True, description="In the programme's unit.")
    #: Read by the office and in the public notice's record: text a person writes, no control
    #: characters, something visible (an independent review, December 2026).
    purpose: WrittenText = Field(min_length=1, max_length=2000)
    contracts: list[Contract] = Field(default_factory=list, max_length=20)


class ApplicationDryRun(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "programme_id": _PROGRAMME, "requested_amount": 30_000_000}]})

    programme_id: uuid.UUID
    requested_amount: int = Field(ge=1, le=MAX_AMOUNT, strict=True, description="In the programme's unit.")


class ApplicationPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": _ID, "programme_id": _PROGRAMME, "enterprise_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e11",
        "status": "publicity", "unit": "CNY", "requested_amount": 30_000_000, "approved_amount": 25_000_000,
        "purpose": "Fine-tuning a quality-inspection model", "contracts": [],
        "eligibility": {"version": 1, "passed": True,
                        "result": {"rule": "/", "passed": True, "reason": "all conditions met", "rules": None},
                        "failed": []},
        "status_reason": None, "submitted_at": "2026-03-02T01:00:00Z", "approved_at": "2026-03-05T02:00:00Z",
        "publicity_ends_at": "2026-03-10T02:00:00Z", "issued_at": None, "voucher_id": None,
        "decided_at": "2026-03-05T02:00:00Z", "updated_at": "2026-03-05T02:00:00Z",
    }]})

    id: uuid.UUID
    programme_id: uuid.UUID
    enterprise_id: uuid.UUID
    status: ApplicationStatus
    unit: str
    requested_amount: int
    approved_amount: int | None
    purpose: str
    contracts: list[dict[str, Any]]
    eligibility: Eligibility
    status_reason: str | None
    submitted_at: datetime
    approved_at: datetime | None
    publicity_ends_at: datetime | None
    issued_at: datetime | None = Field(description="When its voucher was written. Null while `status` is `issued` "
                                       "only because its publicity has ended and the voucher is not written yet: a "
                                       "read writes at most 50 (the worker the rest); reading the application "
                                       "itself writes it.")
    voucher_id: uuid.UUID | None = Field(description="Its voucher, once written (see `issued_at`).")
    decided_at: datetime | None
    updated_at: datetime


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"amount": 25_000_000, "note": "Granted 250,000.00 of 300,000.00: contract partly outside scope"}]})

    amount: int = Field(ge=1, le=MAX_AMOUNT, strict=True, description="At most the amount requested.")
    note: WrittenText | None = Field(default=None, max_length=2000)


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"reason": "The purchase is storage, outside the programme's scope"}]})

    reason: WrittenText = Field(min_length=1, max_length=2000)


class Objection(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"statement": "The applicant and the provider share a shareholder", "objector": "anonymous letter"}]})

    statement: WrittenText = Field(min_length=1, max_length=2000, description="The objector's statement, as received.")
    objector: NameText | None = Field(default=None, max_length=200,
                                      description="Who objected, as the office records it (a name, or e.g. "
                                      "\"anonymous letter\"): one line, no invisible formatting characters.")


class Withdrawal(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "project postponed"}]})

    reason: WrittenText | None = Field(default=None, max_length=2000)


class TransitionPublic(BaseModel):
    from_status: ApplicationStatus | None
    to_status: ApplicationStatus
    reason: str | None
    details: dict[str, Any]
    principal_id: uuid.UUID | None = Field(description="Who took the step; hidden from the enterprise unless it was itself.")
    at: datetime


class PublicityEntry(BaseModel):
    """What a 公示 notice shows, and nothing else."""

    enterprise_name: str
    uscc_masked: str = Field(description="First 6 and last 4 characters of the USCC.")
    approved_amount: int
    publicity_ends_at: datetime


class PublicityNotice(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "programme_code": "yuhang-2026-compute", "programme_name": "Yuhang 2026 compute voucher", "unit": "CNY",
        "items": [{"enterprise_name": "杭州示例智能科技有限公司", "uscc_masked": "913301********0001",
                   "approved_amount": 25_000_000, "publicity_ends_at": "2026-03-10T02:00:00Z"}],
        "next_cursor": None,
    }]})

    programme_code: str
    programme_name: str
    unit: str
    items: list[PublicityEntry]
    next_cursor: str | None
