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
        "redemption_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e40", "created_at": "2026-03-02T01:00:00Z",
        "journal_created_at": "2026-03-02T01:00:00Z", "journal_programme_id": _PROGRAMME,
        "journal_voucher_id": _VOUCHER, "memo": ""}]})

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
    enterprise_id: uuid.UUID | None = Field(
        description="The account's enterprise; on a voucher's accounts, the voucher's enterprise.")
    redemption_id: uuid.UUID | None
    created_at: datetime
    journal_created_at: datetime = Field(description="When the journal was posted (its postings' time).")
    journal_programme_id: uuid.UUID | None = Field(description="The programme the journal names.")
    journal_voucher_id: uuid.UUID | None = Field(description="The voucher the journal names, if any.")
    memo: str = Field(description="The journal's memo (e.g. a void's reason, a payment's reference).")


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
    enterprise_id: uuid.UUID | None = Field(
        description="The account's enterprise; on a voucher's accounts, the voucher's enterprise.")
    is_materialised: bool
    as_of: datetime
    balance: int = Field(description="Sum of the account's postings made at or before `as_of`, plus "
                                     "`unposted_expiry`.")
    postings: int = Field(description="How many postings that sum covers.")
    unposted_expiry: int = Field(
        default=0,
        description="Holds that had expired by `as_of` but whose release was not yet posted (the hold-expiry job "
                    "or the voucher's next hold posts it): void when read, so counted here, as in the trial "
                    "balance — plus on a voucher's available account, minus on its held account. Zero on every "
                    "other account.")


class TrialBalanceLine(BaseModel):
    account_id: uuid.UUID
    code: str
    kind: str
    unit: str
    voucher_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    enterprise_id: uuid.UUID | None = Field(
        description="The account's enterprise; on a voucher's accounts, the voucher's enterprise.")
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


class RegionSpending(BaseModel):
    region_code: str = Field(description="The enterprises' administrative division code (GB/T 2260).")
    enterprises: int
    spent: int


class CategorySpending(BaseModel):
    category: str
    spent: int


class CapUse(BaseModel):
    enterprise_id: uuid.UUID
    name: str
    region_code: str
    subsidised: int = Field(description="Subsidy held or captured in the period, net of voids and refunds: "
                                        "what the cap limits.")
    granted: int = Field(description="Face value of the vouchers issued to it in the period.")
    committed: int = Field(description="Approved and not yet issued (publicity running).")
    cap_used_bps: int = Field(description="`subsidised` as basis points of the enterprise cap (10000: all of it).")


class SpendingPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "programme_id": _PROGRAMME, "unit": "CNY", "as_of": "2026-03-31T16:00:00Z", "spent": 30_000_000,
        "by_region": [{"region_code": "330106", "enterprises": 2, "spent": 30_000_000}],
        "by_category": [{"category": "accelerator:domestic", "spent": 24_000_000},
                        {"category": "storage:block", "spent": 6_000_000}],
        "period_key": "2026", "enterprise_cap": 200_000_000,
        "heaviest_users": [{"enterprise_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e14", "name": "杭州示例科技有限公司",
                            "region_code": "330106", "subsidised": 20_000_000, "granted": 50_000_000,
                            "committed": 0, "cap_used_bps": 1000}]}]})

    programme_id: uuid.UUID
    unit: str
    as_of: datetime
    spent: int = Field(description=f"Captured net of refunds, in the minor unit of the programme's unit "
                                   f"({MINOR_UNITS}): the programme's spent account.")
    by_region: list[RegionSpending] = Field(description="By the region of the enterprise, largest first.")
    by_category: list[CategorySpending] = Field(
        description="By order category, largest first: each redemption's spent amount is shared among its lines "
                    "in proportion to the subsidy computed for each line, rounded down, the rounding left on its "
                    "first line, so the categories add up exactly to `spent`.")
    period_key: str = Field(description="The cap period `heaviest_users` is about (the one `as_of` falls in).")
    enterprise_cap: int
    heaviest_users: list[CapUse] = Field(description="The enterprises that have used the most of their cap in the "
                                                     "period, most first (at most 10).")
