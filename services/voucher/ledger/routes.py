"""Ledger over HTTP: the reconciliation proof (operators and auditors); entries and
point-in-time balances (auditors)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.http.auth import require
from services.voucher.http.deps import Db, Now, Session
from services.voucher.http.pagination import IntPaging, Page
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.i18n import msg
from services.voucher.instants import Instant
from services.voucher.ledger import service
from services.voucher.ledger.schemas import (
    AccountBalancePublic,
    CapUse,
    CategorySpending,
    LedgerEntryPublic,
    RegionSpending,
    SpendingPublic,
    TrialBalanceLine,
    TrialBalancePublic,
    UnitTotal,
)
from services.voucher.windows import range_problem

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])


class ReconciliationPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"is_clean": True, "accounts": 120, "postings": 5400, "transactions": 2300,
                 "account_differences": [], "negative_balances": [], "unbalanced_transactions": [],
                 "commitment_differences": [], "settlement_differences": [], "clawback_differences": [],
                 "record_differences": [], "captures_to_settle_again": []}
            ]
        }
    )

    is_clean: bool
    accounts: int
    postings: int
    transactions: int
    account_differences: list[dict[str, Any]]
    negative_balances: list[dict[str, Any]]
    unbalanced_transactions: list[dict[str, Any]]
    commitment_differences: list[dict[str, Any]]
    settlement_differences: list[dict[str, Any]]
    clawback_differences: list[dict[str, Any]] = Field(
        description="Vouchers whose receivable differs from what their clawback's sums say is owed (`what`: "
        "\"clawback owed for the voucher\"), and reversals that do not undo the entry they name exactly once, in "
        "full and in kind, or that name none and do not net to nothing (`what`: \"reversal does not undo its entry "
        "exactly once\" or \"reversal names no entry\", with the reversals' journal ids and what they and the "
        "entry moved).")
    #: Redemptions, settlement lines and totals, and claims whose amounts differ from the ledger
    #: (a row changed outside the service): each names what it differs in.
    record_differences: list[dict[str, Any]]
    captures_to_settle_again: list[dict[str, Any]] = Field(
        description="Not a difference, and not counted by `is_clean`: captures the provider is still owed whose "
        "period's settlement was cancelled and not made again (the monthly job does not make a cancelled period "
        "again). Each names its redemption and the latest cancelled settlement of its day.")


@router.get(
    "/reconciliation",
    operation_id="reconcile_ledger",
    summary="Recompute every balance from the postings and report any difference",
    description="Operators and auditors (`ledger:read`). Recomputes every stored balance from the postings and "
    "checks that no balance is negative, every journal sums to zero per unit, commitments and settlements "
    "agree with the ledger, each programme's funding is its budget, moved once when it opened, value crosses a "
    "voucher's boundary only when it is issued (its face value), revoked, expired or refunded to the pool (as its "
    "refund records say), each journal moves only the kinds of account its own kind may, and only the way it may, every order's and enterprise's cap counters agree with their redemptions, every "
    "journal's redemption exists, and each voucher's clawback still owed is the smaller of the clawback and the value "
    "still used on it less what was repaid and written off, plus what the office returned of an overpayment, and that the records money is paid from agree with the ledger: each redemption's "
    "captured, refunded and held amounts with its journals, each settlement's lines with their captures and "
    "refunds and its totals with its lines, each approved or paid claim with its capture and payment; "
    "`is_clean` is true when nothing differs. Also lists, apart, captures whose period's settlement was cancelled "
    "and not made again (`captures_to_settle_again`). Changes nothing, and has no problem of its "
    "own beyond authentication.",
    response_model=ReconciliationPublic,
    responses=responses(*AUTH_ERRORS),
)
async def reconcile_ledger(
    session: Session,
    actor: Annotated[Actor, Depends(require(Scope.LEDGER_READ))],
) -> ReconciliationPublic:
    result = await service.reconcile(session)
    return ReconciliationPublic(
        is_clean=result.is_clean, accounts=result.accounts, postings=result.postings,
        transactions=result.transactions, account_differences=result.account_differences,
        negative_balances=result.negative_balances, unbalanced_transactions=result.unbalanced_transactions,
        commitment_differences=result.commitment_differences,
        settlement_differences=result.settlement_differences,
        clawback_differences=result.clawback_differences,
        record_differences=result.record_differences,
        captures_to_settle_again=result.captures_to_settle_again,
    )


# -- entries and point-in-time balances (auditors) --------------------------------------------

Auditor = Annotated[Actor, Depends(require(Scope.AUDIT_READ))]
AsOf = Annotated[
    Instant | None,
    Query(description="The instant (RFC 3339 with an offset), not later than now; postings made at or before "
                      "it count. Default: now."),
]


#: How far ahead of the service's clock a caller's "now" may be and still be read as now.
CLOCK_SKEW = timedelta(seconds=5)


def _past(as_of: datetime | None, now: datetime) -> datetime:
    """`as_of`, which may not be later than now: a balance is what the ledger said, and a later
    instant's would be a forecast (holds whose TTL would pass by then shown as released, which a
    capture before then makes untrue; an independent review). A caller whose clock runs up to
    CLOCK_SKEW ahead gets the balance now, its `as_of` saying so. Default: now."""
    if as_of is None:
        return now
    if as_of > now + CLOCK_SKEW:
        raise errors.ValidationFailed([errors.field_error(
            "as_of", msg("`as_of` is later than now ({now}); a balance is read at an instant that has passed",
                         now=now), location="query")])
    return min(as_of, now)


@router.get(
    "/entries",
    operation_id="list_ledger_entries",
    summary="List postings with their journal transaction and account, in posting order",
    description="Operators and auditors (`audit:read`); changes nothing. "
                "Filters match the posting's account (every account names its programme, and its "
                "voucher, provider or enterprise where it has one). `since`/`until` select postings "
                "made in [since, until). For the whole ledger in one file, use `GET /v1/exports/ledger-entries`. "
                "Answers `invalid_cursor` for a cursor this service did not issue and `validation_failed` "
                "when `until` is not after `since`.",
    response_model=Page[LedgerEntryPublic],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor, errors.ValidationFailed),
)
async def list_ledger_entries(
    session: Session, actor: Auditor, page: IntPaging,
    programme_id: Annotated[uuid.UUID | None, Query()] = None,
    enterprise_id: Annotated[uuid.UUID | None, Query()] = None,
    provider_id: Annotated[uuid.UUID | None, Query()] = None,
    voucher_id: Annotated[uuid.UUID | None, Query()] = None,
    account_id: Annotated[uuid.UUID | None, Query()] = None,
    since: Annotated[Instant | None, Query(description="Postings made at or after (RFC 3339).")] = None,
    until: Annotated[Instant | None, Query(description="Postings made before (RFC 3339).")] = None,
) -> Page[LedgerEntryPublic]:
    if (problem := range_problem(since, until)) is not None:
        raise errors.ValidationFailed([errors.field_error("until", problem, location="query")])
    rows, cursor = await service.entries(
        session, page, programme_id=programme_id, enterprise_id=enterprise_id, provider_id=provider_id,
        voucher_id=voucher_id, account_id=account_id, since=since, until=until,
    )
    return Page(items=[LedgerEntryPublic.model_validate(r) for r in rows], next_cursor=cursor)


@router.get(
    "/accounts/{account_id}/balance",
    operation_id="ledger_account_balance",
    summary="An account's balance at an instant: the sum of its postings made at or before `as_of`",
    description="Operators and auditors (`audit:read`); changes nothing. "
                "Computed from the postings, so it works for accounts whose balance is not "
                "materialised (programme spent, provider payable) and for any past instant. On a "
                "voucher's available and held accounts, holds that had lapsed by `as_of` count as released "
                "(`unposted_expiry`), as in the voucher's read and the trial balance. `as_of` is inclusive (a posting "
                "made at that instant counts), where an export's `until` is not: the ledger-entries export that "
                "adds up to this balance is the one until `as_of` plus one microsecond. "
                "Answers `not_found` for an unknown account and `validation_failed` for an `as_of` later than now.",
    response_model=AccountBalancePublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.ValidationFailed),
)
async def ledger_account_balance(
    account_id: uuid.UUID, db: Db, now: Now, actor: Auditor, as_of: AsOf = None,
) -> AccountBalancePublic:
    async with db.snapshot() as session:  # the postings and the lapsed holds as of one instant
        found = await service.balance_as_of(session, account_id, _past(as_of, now))
    a = found.account
    return AccountBalancePublic(
        account_id=a["id"], code=a["code"], kind=a["kind"], unit=a["unit"], programme_id=a["programme_id"],
        voucher_id=a["voucher_id"], provider_id=a["provider_id"], enterprise_id=a["enterprise_id"],
        is_materialised=a["is_materialised"], as_of=found.as_of, balance=found.balance, postings=found.postings,
        unposted_expiry=found.unposted_expiry,
    )


#: Routes about a programme's books that live under /v1/programmes.
programme_router = APIRouter(prefix="/v1/programmes", tags=["ledger"])


@programme_router.get(
    "/{programme_id}/trial-balance",
    operation_id="programme_trial_balance",
    summary="Every account of a programme with its balance at an instant, and the totals per unit",
    description="Operators and auditors (`audit:read`); changes nothing. "
                "Balances are sums of the postings made at or before `as_of`; accounts opened later "
                "are left out. Every journal balances, so each unit's total is zero and `is_balanced` "
                "is true; anything else means postings crossed into another programme's accounts. "
                "Answers `not_found` for an unknown programme and `validation_failed` for an `as_of` later than now.",
    response_model=TrialBalancePublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.ValidationFailed),
)
async def programme_trial_balance(
    programme_id: uuid.UUID, db: Db, now: Now, actor: Auditor, as_of: AsOf = None,
) -> TrialBalancePublic:
    async with db.snapshot() as session:  # the postings and the lapsed holds as of one instant
        found = await service.trial_balance(session, programme_id, _past(as_of, now))
    return TrialBalancePublic(
        programme_id=found.programme_id, as_of=found.as_of, is_balanced=found.is_balanced,
        accounts=[TrialBalanceLine.model_validate(a) for a in found.accounts],
        totals=[UnitTotal(unit=u, total=t) for u, t in found.totals.items()],
    )


@programme_router.get(
    "/{programme_id}/spending",
    operation_id="programme_spending",
    summary="Where a programme's subsidy went: by region, by category, and the enterprises nearest their cap",
    description="Operators and auditors (`audit:read`); changes nothing. `spent` is what was captured net of "
                "refunds — the programme's spent account — broken down by the region of the enterprise and by "
                "order category (each redemption shared among its lines in proportion to the subsidy computed "
                "for each, so the categories add up exactly); `heaviest_users` are the enterprises that have used "
                "the most of their cap in the current cap period. Answers `not_found` for an unknown programme.",
    response_model=SpendingPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def programme_spending(programme_id: uuid.UUID, db: Db, now: Now, actor: Auditor) -> SpendingPublic:
    async with db.snapshot() as session:  # one instant: the breakdowns add up to the same total
        found = await service.spending(session, programme_id, now)
    cap = found.enterprise_cap
    return SpendingPublic(
        programme_id=found.programme_id, unit=found.unit, as_of=found.as_of, spent=found.spent,
        by_region=[RegionSpending(region_code=r, enterprises=n, spent=v) for r, n, v in found.by_region],
        by_category=[CategorySpending(category=c, spent=v) for c, v in found.by_category],
        period_key=found.period_key, enterprise_cap=cap,
        heaviest_users=[CapUse(**u, cap_used_bps=u["subsidised"] * 10_000 // cap) for u in found.heaviest_users],
    )
