"""Voucher request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.voucher.instants import Day, Instant
from services.voucher.money import MAX_AMOUNT, MINOR_UNITS
from services.voucher.registry_schemas import OneLineText, OptionalLine, Uscc, WrittenText
from services.voucher.vouchers.rules import VoucherStatus

_IDS = {
    "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e30",
    "programme_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20",
    "enterprise_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e14",
}


class VoucherIssue(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"programme_id": _IDS["programme_id"], "enterprise_id": _IDS["enterprise_id"],
                 "face_value": 50_000_000, "reference": "offline selection 2026-03 #17"}
            ]
        },
    )

    programme_id: uuid.UUID
    enterprise_id: uuid.UUID
    face_value: int = Field(ge=1, le=MAX_AMOUNT, strict=True, description=f"In the minor unit of the programme's unit ({MINOR_UNITS}).")
    valid_from: Instant | None = Field(default=None, description="Default: now.")
    reference: OptionalLine = Field(default=None, max_length=128,
                                    description="e.g. the selection it came from: one line, no control characters "
                                    "(\"\" is taken as none).")


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enterprise_id: uuid.UUID
    face_value: int = Field(ge=1, le=MAX_AMOUNT, strict=True)
    valid_from: Instant | None = None
    reference: OptionalLine = Field(default=None, max_length=128)


class VoucherBulkIssue(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"programme_id": _IDS["programme_id"],
                 "grants": [{"enterprise_id": _IDS["enterprise_id"], "face_value": 50_000_000,
                             "reference": "row 1"}]}
            ]
        },
    )

    programme_id: uuid.UUID
    grants: list[Grant] = Field(min_length=1, max_length=1000)


class Balances(BaseModel):
    available: int
    held: int
    used: int


class VoucherPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_IDS,
                    "code": "CV-7K3M-Q9PD-X2HA-R",
                    "kind": "compute",
                    "unit": "CNY",
                    "face_value": 50_000_000,
                    "status": "active",
                    "balances": {"available": 40_000_000, "held": 0, "used": 10_000_000},
                    "valid_from": "2026-03-02T01:00:00Z",
                    "expires_at": "2027-03-02T01:00:00Z",
                    "period_key": "2026",
                    "issued_at": "2026-03-02T01:00:00Z",
                    "status_reason": None,
                    "reference": None,
                }
            ]
        }
    )

    id: uuid.UUID
    code: str
    programme_id: uuid.UUID
    enterprise_id: uuid.UUID
    kind: str
    unit: str
    face_value: int
    status: VoucherStatus = Field(description="As of now: a voucher past its expiry reads expired.")
    balances: Balances
    valid_from: datetime
    expires_at: datetime
    period_key: str = Field(description="The cap period the grant counted against.")
    issued_at: datetime
    status_reason: str | None
    reference: str | None


class VoucherLookup(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"code": "CV-7K3M-Q9PD-X2HA-R", "enterprise_uscc": "91330110MA2J7C3X1M"}]},
    )

    code: str = Field(min_length=1, max_length=40)
    enterprise_uscc: Uscc


class VoucherQuote(BaseModel):
    """What a provider needs to quote a subsidy, and nothing more."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"code": "CV-7K3M-Q9PD-X2HA-R", "kind": "compute", "unit": "CNY", "status": "active",
                 "available": 40_000_000, "valid_from": "2026-03-02T01:00:00Z",
                 "expires_at": "2027-03-02T01:00:00Z"}
            ]
        }
    )

    code: str
    kind: str
    unit: str
    status: VoucherStatus
    available: int
    valid_from: datetime
    expires_at: datetime


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "under investigation"}]})

    reason: WrittenText = Field(min_length=1, max_length=500)


class Revocation(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "eligibility obtained by false statement", "clawback": 1_000_000}]},
    )

    reason: WrittenText = Field(min_length=1, max_length=500)
    clawback: int = Field(
        default=0, ge=0, le=MAX_AMOUNT, strict=True,
        description="Used value to recover from the enterprise, recorded as a receivable.",
    )


class ClawbackEntry(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"amount": 300_000, "reason": "audit found the order was never delivered"}]},
    )

    amount: int = Field(ge=1, le=MAX_AMOUNT, strict=True,
                        description="Used value to recover from the enterprise, recorded as a receivable.")
    reason: WrittenText = Field(min_length=1, max_length=500)


class ClawbackRepayment(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"amount": 300_000, "reference": "ICBC-20260612-004411",
                                         "paid_on": "2026-06-12"}]},
    )

    amount: int = Field(ge=1, le=MAX_AMOUNT, strict=True,
                        description="What the enterprise paid back, at most what it owes for the voucher.")
    reference: OneLineText = Field(min_length=1, max_length=128, description="The bank's payment reference.")
    paid_on: Day = Field(description="The day the enterprise paid (Beijing time): not after today, not before the "
                         "voucher's first clawback.")


class ClawbackWriteOff(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"amount": 300_000, "reason": "the enterprise was deregistered on 2026-09-30"}]},
    )

    amount: int = Field(ge=1, le=MAX_AMOUNT, strict=True,
                        description="What the programme gives up, at most what the enterprise owes for the voucher.")
    reason: WrittenText = Field(min_length=1, max_length=500)


class ClawbackOverpaymentReturn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"amount": 200_000, "reference": "BOC-20260720-118204",
                                         "paid_on": "2026-07-20"}]},
    )

    amount: int = Field(ge=1, le=MAX_AMOUNT, strict=True,
                        description="What the office paid back to the enterprise, at most what it overpaid for the "
                        "voucher and was not returned yet (`overpaid`).")
    reference: OneLineText = Field(min_length=1, max_length=128, description="The bank's payment reference of the "
                                   "office's transfer.")
    paid_on: Day = Field(description="The day the office paid (Beijing time): not after today, not before the "
                         "voucher's first clawback.")


class ClawbackReversal(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"entry_id": "0190d5d2-9b01-7c22-8a55-3f2b9c1d0e77",
                                         "reason": "the transfer bounced: the bank returned it on 2026-06-15"}]},
    )

    entry_id: uuid.UUID = Field(description="The clawback, repayment, write-off or overpayment return to undo: its "
                                "`id` in the voucher's clawback entries.")
    reason: WrittenText = Field(min_length=1, max_length=500)


class ClawbackEntryPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": "0190d5d2-9b01-7c22-8a55-3f2b9c1d0e77", "kind": "clawback_repaid",
                                         "amount": -100_000, "unit": "CNY", "at": "2026-06-12T02:00:00Z",
                                         "memo": "clawback repaid by the enterprise, reference ICBC-20260612-004411",
                                         "reference": "ICBC-20260612-004411", "reverses": None,
                                         "reversed_by": None}]})

    id: uuid.UUID = Field(description="The journal's id (a reversal names it as `entry_id`).")
    kind: str = Field(description="The journal's kind: `clawback_recorded`, `clawback_repaid`, "
                      "`clawback_written_off`, `clawback_overpayment_returned` (the office paid the enterprise "
                      "back what it overpaid), `clawback_reversed`, `clawback_repayment_reversed`, "
                      "`clawback_write_off_reversed`, `clawback_overpayment_return_reversed`, "
                      "`clawback_recovered_by_refunds` (the part of a reversal or return that refunds recover, "
                      "or of a clawback that the enterprise's payments already cover; positive when a return's or "
                      "a clawback's is undone), or `refund` (a refund of the voucher's order recovering value "
                      "clawed back).")
    amount: int = Field(description="What the journal did to what the enterprise owes for the voucher: positive "
                        "raises it, negative lowers it.")
    unit: str
    at: Instant = Field(description="When it was recorded.")
    memo: str
    reference: str | None = Field(description="A repayment's or an overpayment return's bank reference.")
    reverses: uuid.UUID | None = Field(description="For a reversal (and its refunds' or payments' part): the entry "
                                       "it undoes; for the refunds' part of an overpayment return, or the part of a "
                                       "clawback the enterprise's payments cover: the return or the clawback.")
    reversed_by: uuid.UUID | None = Field(description="For a clawback, repayment, write-off or overpayment return: the "
                                          "reversal that undid it.")


class ClawbackPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"voucher_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e41", "status": "expired",
                                         "unit": "CNY", "used": 1_000_000, "clawed_back": 300_000,
                                         "recovered_by_refunds": 0, "repaid": 100_000, "written_off": 0,
                                         "owed": 200_000, "room": 700_000, "overpaid": 0, "overpayment_returned": 0,
                                         "forgivable": 200_000}]})

    voucher_id: uuid.UUID
    status: VoucherStatus = Field(description="As of now.")
    unit: str
    used: int = Field(description="The value used on the voucher (captured less refunded).")
    clawed_back: int = Field(description="The clawbacks recorded against the voucher (at revocation, or later).")
    recovered_by_refunds: int = Field(description="Clawed-back value that refunds of the voucher's orders returned "
                                      "to the programme through the provider: what of the clawback the value "
                                      "still used no longer covers.")
    repaid: int = Field(description="What the enterprise paid back (recorded repayments, less those reversed).")
    written_off: int = Field(description="What the programme office wrote off (less write-offs reversed).")
    owed: int = Field(description="What the enterprise still owes back for this voucher: clawed back, less "
                      "recovered by refunds, repaid and written off, plus what the office returned to it of an "
                      "overpayment (never below 0: a return counts only once the repayment it came from is "
                      "reversed).")
    room: int = Field(description="How much more used value may still be clawed back: used and not clawed back yet.")
    overpaid: int = Field(description="What the enterprise repaid beyond the clawed-back value still used, after "
                          "a refund of the order returned the same value through the provider, and the office has "
                          "not returned to it yet (record the return with POST .../clawback/overpayment-returns). "
                          "Usually 0.")
    overpayment_returned: int = Field(description="What the office paid back to the enterprise of what it "
                                      "overpaid (less returns reversed).")
    forgivable: int = Field(description="What a write-off may take off now: what is owed, less money the office "
                            "returned to the enterprise and is owed back after its repayment was reversed (that is "
                            "repaid, not written off). Usually equal to `owed`.")


class Posting(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"id": 42, "transaction_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e40", "account": "available",
                 "amount": -1_000_000, "unit": "CNY", "kind": "hold_placed", "memo": "hold for order PO-1",
                 "redemption_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e50", "created_at": "2026-03-02T01:00:00Z"}
            ]
        }
    )

    id: int
    transaction_id: uuid.UUID
    account: str = Field(description="available, held or used")
    amount: int
    unit: str
    kind: str
    memo: str
    redemption_id: uuid.UUID | None
    created_at: datetime


class PostingPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [Posting.model_config["json_schema_extra"]["examples"][0]],  # type: ignore[index]
                          "next_cursor": "42"}]
        }
    )

    items: list[Posting]
    next_cursor: str | None
