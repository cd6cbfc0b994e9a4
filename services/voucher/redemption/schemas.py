"""Redemption request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from services.voucher.claims.rules import CLAIM_ORDER_PREFIX
from services.voucher.i18n import msg
from services.voucher.money import MAX_AMOUNT, MINOR_UNITS
from services.voucher.programmes.schemas import CATEGORY_PATTERN
from services.voucher.registry_schemas import OrderLineText, Uscc

_ITEM: JsonDict = {
    "category": "accelerator:domestic",
    "description": "Ascend 910B training, 64 cards x 20 h",
    "amount": 40_000_000,
    "accelerator": "Ascend 910B",
    "hours_milli": 1_280_000,
}


class LineItem(BaseModel):
    """One line of the SME's order. Compute items name the accelerator and hours (in
    thousandths); model items name the model and the tokens."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_ITEM]})

    category: str = Field(pattern=CATEGORY_PATTERN.pattern, description="e.g. accelerator:domestic")
    description: OrderLineText = Field(default="", max_length=500)
    amount: int = Field(ge=1, le=MAX_AMOUNT, strict=True, description=f"Order amount of this line, in the minor unit of the voucher's unit ({MINOR_UNITS}).")
    accelerator: OrderLineText | None = Field(default=None, max_length=100)
    hours_milli: int | None = Field(default=None, ge=1, le=10**12, strict=True)
    model: OrderLineText | None = Field(default=None, max_length=100)
    tokens: int | None = Field(default=None, ge=1, le=10**15, strict=True)

    @model_validator(mode="after")
    def _usage(self) -> LineItem:
        group = self.category.split(":", 1)[0]
        if group == "accelerator" and (self.accelerator is None or self.hours_milli is None):
            raise ValueError(msg("an accelerator line names the accelerator and its hours_milli"))
        if group == "model" and (self.model is None or self.tokens is None):
            raise ValueError(msg("a model line names the model and its tokens"))
        return self


class QuoteRequest(BaseModel):
    """An order to quote: what a hold for it would grant, now."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"voucher_code": "CV-7K3M-Q9PD-X2HA-R", "enterprise_uscc": "91330110MA2J7C3X1M",
                 "order_reference": "PO-2026-000123", "line_items": [_ITEM]}
            ]
        },
    )

    voucher_code: str = Field(min_length=1, max_length=40)
    enterprise_uscc: Uscc
    order_reference: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$",
                                 description="The provider's own reference of the order: printable ASCII, not "
                                 f"beginning with `{CLAIM_ORDER_PREFIX}` (kept for the orders of enterprises' "
                                 "claims).")
    line_items: list[LineItem] = Field(min_length=1, max_length=100)

    @field_validator("order_reference")
    @classmethod
    def _not_a_claim_s(cls, value: str) -> str:
        # A claim's order is keyed by its provider and `invoice:<invoice>:<amount>:<USCC>`, all of
        # which the provider knows: taken first by a provider's hold, it answered the claim 409
        # (a provider could block an enterprise's claim naming it, or probe whether one was filed).
        if value.startswith(CLAIM_ORDER_PREFIX):
            raise ValueError(msg("an order reference beginning with '{prefix}' is kept for enterprises' claims",
                                 prefix=CLAIM_ORDER_PREFIX))
        return value

    @model_validator(mode="after")
    def _order_total(self) -> Self:
        if sum(i.amount for i in self.line_items) > MAX_AMOUNT:
            raise ValueError(msg("the order's total exceeds the maximum amount of {maximum}, counted in the minor unit "
                                 "of the voucher's unit (fen for CNY)", maximum=MAX_AMOUNT))
        return self


class HoldCreate(QuoteRequest):
    """An order to hold a subsidy for: the order a quote takes, and the subsidy quoted if any."""

    expected_subsidy: int | None = Field(
        default=None, ge=1, le=MAX_AMOUNT, strict=True,
        description=f"The subsidy the provider quoted the enterprise, in the minor unit of the voucher's unit ({MINOR_UNITS}). Given, "
                    "exactly this is granted, or the request is refused with 409 `subsidy_below_expected` (nothing "
                    "moved) when the rates, the stacking ceiling, the enterprise's cap or the voucher's balance "
                    "leave less. Left out: the computed subsidy, cut down to what the limits allow.")


class SubsidyQuote(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"voucher_code": "CV-7K3M-Q9PD-X2HA-R", "order_reference": "PO-2026-000123",
                 "order_amount": 40_000_000, "unit": "CNY", "subsidy": 20_000_000, "limited_by": "rates",
                 "computation": {"order_amount": 40_000_000, "gross_subsidy": 20_000_000,
                                 "subsidy": 20_000_000, "limited_by": "rates"},
                 "quoted_at": "2026-03-02T01:00:00Z"}
            ]
        }
    )

    voucher_code: str
    order_reference: str
    order_amount: int
    unit: str
    subsidy: int = Field(description=f"What a hold for this order placed now would grant, in the minor unit of the "
                                     f"voucher's unit ({MINOR_UNITS}).")
    limited_by: str = Field(description="Which limit bound the subsidy (rates, stacking ceiling, "
                                               "enterprise cap, voucher balance), as in a hold's computation.")
    computation: dict[str, Any] = Field(description="Each step of the subsidy computation, as a hold records it and "
                                        "a provider sees it: without the enterprise's spend and subsidy this period "
                                        "before the order, its cap's step by name only and the step after it "
                                        "without `before` — figures that sum its orders with every provider.")
    quoted_at: datetime


class CaptureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount": 9_000_000}, {}]})

    amount: int | None = Field(default=None, ge=1, le=MAX_AMOUNT, strict=True, description="Default: all that is held.")


#: Free text a person wrote: any character but the C0 controls other than tab and line ends, and DEL.
REASON_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


class VoidRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "order cancelled"}]})

    reason: str | None = Field(default=None, min_length=1, max_length=500, pattern=REASON_PATTERN,
                               description="Why the hold is voided; kept in the audit event and the journal's memo")


class RefundCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"amount": 2_000_000, "reason": "8 GPU-hours not delivered"}]}
    )

    amount: int = Field(ge=1, le=MAX_AMOUNT, strict=True)
    reason: str = Field(min_length=1, max_length=500, pattern=REASON_PATTERN)


class RefundPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e60", "redemption_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e50",
                 "amount": 2_000_000, "reason": "8 GPU-hours not delivered", "destination": "voucher",
                 "created_at": "2026-03-03T01:00:00Z"}
            ]
        }
    )

    id: uuid.UUID
    redemption_id: uuid.UUID
    amount: int
    reason: str
    destination: str = Field(description="voucher (still valid) or pool (expired or revoked)")
    created_at: datetime


class RedemptionPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e50",
                    "voucher_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e30",
                    "programme_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20",
                    "enterprise_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e14",
                    "provider_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e13",
                    "order_reference": "PO-2026-000123",
                    "order_amount": 40_000_000,
                    "unit": "CNY",
                    "line_items": [_ITEM],
                    "computation": {"order_amount": 40_000_000, "gross_subsidy": 20_000_000,
                                    "subsidy": 20_000_000, "limited_by": "rates",
                                    "enterprise_pays": 20_000_000, "items": [], "steps": []},
                    "status": "held",
                    "held_amount": 20_000_000,
                    "captured_amount": 0,
                    "refunded_amount": 0,
                    "hold_expires_at": "2026-03-02T01:30:00Z",
                    "created_at": "2026-03-02T01:00:00Z",
                    "captured_at": None,
                    "voided_at": None,
                    "void_reason": None,
                }
            ]
        }
    )

    id: uuid.UUID
    voucher_id: uuid.UUID
    programme_id: uuid.UUID
    enterprise_id: uuid.UUID
    provider_id: uuid.UUID
    order_reference: str
    order_amount: int
    unit: str
    line_items: list[dict[str, Any]]
    computation: dict[str, Any] = Field(description="Each step of the subsidy computation. A provider's key reads it "
                                        "without `spend_this_period_before` and `subsidy_this_period_before`, the "
                                        "`enterprise_cap` step by name only and the step after it without "
                                        "`before`: those figures sum the enterprise's orders with every provider; "
                                        "the enterprise, operators and auditors read them.")
    status: str = Field(description="held, captured, voided or refunded; a hold past its TTL reads voided")
    held_amount: int
    captured_amount: int
    refunded_amount: int
    hold_expires_at: datetime
    created_at: datetime
    captured_at: datetime | None
    voided_at: datetime | None
    void_reason: str | None
