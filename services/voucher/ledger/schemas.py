"""Response models of the ledger's entries and point-in-time balances."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.voucher.money import MINOR_UNITS

_ACCOUNT = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e31"
_PROGRAMME = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20"
_VOUCHER = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e30"


class LedgerEntryPublic(BaseModel):
    """One posting, with its journal transaction and its account."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "posting_id": 1042, "journal_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e50", "kind": "capture",
        "account_id": _ACCOUNT, "account_code": f"voucher:{_VOUCHER}:used", "account_kind": "voucher_used",
        "amount": 30_000, "unit": "CNY", "programme_id": _PROGRAMME, "voucher_id": _VOUCHER,
        "provider_id": None, "enterprise_id": None,
        "redemption_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e40", "created_at": "2026-03-02T01:00:00Z"}]})

    posting_id: int
    journal_id: uuid.UUID
    kind: str = Field(description="The journal transaction's kind (capture, refund, …).")
    account_id: uuid.UUID
    account_code: str
    account_kind: str
    amount: int = Field(description=f"Signed, in the minor unit of the account's `unit` ({MINOR_UNITS}).")
    unit: str
    programme_id: uuid.UUID | None
    voucher_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    enterprise_id: uuid.UUID | None
    redemption_id: uuid.UUID | None
    created_at: datetime


class AccountBalancePublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "account_id": _ACCOUNT, "code": f"voucher:{_VOUCHER}:available", "kind": "voucher_available",
        "unit": "CNY", "programme_id": _PROGRAMME, "voucher_id": _VOUCHER, "provider_id": None,
        "enterprise_id": None, "is_materialised": True, "as_of": "2026-03-31T16:00:00Z", "balance": 970_000,
        "postings": 3}]})

    account_id: uuid.UUID
    code: str
    kind: str
    unit: str
    programme_id: uuid.UUID | None
    voucher_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    enterprise_id: uuid.UUID | None
    is_materialised: bool
    as_of: datetime
    balance: int = Field(description="Sum of the account's postings made at or before `as_of`.")
    postings: int = Field(description="How many postings that sum covers.")


class TrialBalanceLine(BaseModel):
    account_id: uuid.UUID
    code: str
    kind: str
    unit: str
    voucher_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    enterprise_id: uuid.UUID | None
    balance: int = Field(description="The account's balance at `as_of`: its postings made by then, plus "
                                     "`unposted_expiry`.")
    postings: int
    unposted_expiry: int = Field(
        default=0,
        description="Holds that had expired by `as_of` but whose release was not yet posted (the hold-expiry job "
                    "or the voucher's next hold posts it): void when read, so counted here — plus on a voucher's "
                    "available account, minus on its held account. Zero on every other account.")


class UnitTotal(BaseModel):
    unit: str
    total: int = Field(description="Sum of the balances in this unit; zero in a balanced ledger.")


class TrialBalancePublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "programme_id": _PROGRAMME, "as_of": "2026-03-31T16:00:00Z", "is_balanced": True,
        "accounts": [
            {"account_id": _ACCOUNT, "code": f"programme:{_PROGRAMME}:funding", "kind": "programme_funding",
             "unit": "CNY", "voucher_id": None, "provider_id": None, "enterprise_id": None,
             "balance": -25_000_000_000, "postings": 1},
            {"account_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e32", "code": f"programme:{_PROGRAMME}:available",
             "kind": "programme_available", "unit": "CNY", "voucher_id": None, "provider_id": None,
             "enterprise_id": None, "balance": 25_000_000_000, "postings": 1}],
        "totals": [{"unit": "CNY", "total": 0}]}]})

    programme_id: uuid.UUID
    as_of: datetime
    is_balanced: bool = Field(description="Every unit's total is zero.")
    accounts: list[TrialBalanceLine]
    totals: list[UnitTotal]
