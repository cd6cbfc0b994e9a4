"""Request and response models of settlements and their statements."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.voucher.instants import Day
from services.voucher.money import MINOR_UNITS
from services.voucher.registry_schemas import OneLineText, WrittenText
from services.voucher.settlement.rules import ItemKind, SettlementStatus

_ID = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e40"
_PROVIDER = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e13"
_PROGRAMME = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20"


class SettlementCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "provider_id": _PROVIDER, "programme_id": _PROGRAMME, "period_start": "2026-03-01",
        "period_end": "2026-03-31"}]})

    provider_id: uuid.UUID
    programme_id: uuid.UUID
    period_start: Day = Field(description="First day, in Asia/Shanghai.")
    period_end: Day = Field(description="Last day (inclusive), in Asia/Shanghai; must be over.")


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"note": "checked against our records"}]})

    note: WrittenText | None = Field(default=None, max_length=2000)


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "order PO-77 is missing"}]})

    reason: WrittenText = Field(min_length=1, max_length=2000)


class Payment(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"reference": "ICBC-20260405-000123", "paid_on": "2026-04-05"}]})

    reference: OneLineText = Field(min_length=1, max_length=128, description="The bank's payment reference.")
    paid_on: Day


class PayeeAccount(BaseModel):
    """The provider's settlement account as it stood when the payment was approved."""

    bank_name: str
    account_name: str
    account_number: str


class SettlementPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": _ID, "provider_id": _PROVIDER, "programme_id": _PROGRAMME, "unit": "CNY",
        "period_start": "2026-03-01", "period_end": "2026-03-31", "status": "paid",
        "captured_total": 1_500_000, "refunded_total": 100_000, "total": 1_400_000, "line_count": 4,
        "status_reason": None, "payment_reference": "ICBC-20260405-000123", "paid_on": "2026-04-05",
        "payee_account": {"bank_name": "中国工商银行杭州余杭支行", "account_name": "杭州云算科技有限公司",
                          "account_number": "1202020209000123456"},
        "created_at": "2026-04-01T02:00:00Z", "updated_at": "2026-04-05T03:00:00Z",
        "submitted_at": "2026-04-02T02:00:00Z", "approved_at": "2026-04-03T02:00:00Z",
        "paid_at": "2026-04-05T03:00:00Z", "cancelled_at": None}]})

    id: uuid.UUID
    provider_id: uuid.UUID
    programme_id: uuid.UUID
    unit: str
    period_start: Day
    period_end: Day
    status: SettlementStatus
    captured_total: int
    refunded_total: int
    total: int = Field(description="captured_total − refunded_total: what the programme pays the provider or, below "
                                   "zero, what the provider repays (a repayment statement).")
    line_count: int
    status_reason: str | None
    payment_reference: str | None
    paid_on: Day | None
    payee_account: PayeeAccount | None = Field(
        description="Where the payment goes: the provider's settlement account as it stood when the office approved "
        "the payment (a later change in the registry does not change it). Null until then, for a settlement that "
        "pays nothing or is a repayment, and for one approved before December 2026.")
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    approved_at: datetime | None
    paid_at: datetime | None
    cancelled_at: datetime | None


class StatementLine(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: ItemKind
    order_reference: str
    redemption_id: uuid.UUID
    refund_id: uuid.UUID | None
    occurred_at: datetime
    amount: int = Field(description=f"Captures positive, refunds negative, in the unit's minor unit ({MINOR_UNITS}).")


class Statement(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "settlement": SettlementPublic.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
        "lines": [{"kind": "capture", "order_reference": "PO-1", "redemption_id": _ID, "refund_id": None,
                   "occurred_at": "2026-03-05T02:00:00Z", "amount": 1_500_000}],
        "captured_total": 1_500_000, "refunded_total": 100_000, "total": 1_400_000,
        "csv_sha256": "9f2c...", "csv_url": f"/v1/settlements/{_ID}/statement.csv",
        "xlsx_url": f"/v1/settlements/{_ID}/statement.xlsx"}]})

    settlement: SettlementPublic
    lines: list[StatementLine]
    captured_total: int
    refunded_total: int
    total: int
    csv_sha256: str = Field(description="SHA-256 of the CSV statement's bytes, BOM included.")
    csv_url: str
    xlsx_url: str = Field(description="The same statement as an Excel workbook (its `Digest` header "
                                      "carries the workbook's SHA-256).")
