"""Ledger over HTTP: the reconciliation proof (operators and auditors)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.http.auth import require
from services.voucher.http.deps import Session
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.ledger import service

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])


class ReconciliationPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"is_clean": True, "accounts": 120, "postings": 5400, "transactions": 2300,
                 "account_differences": [], "negative_balances": [], "unbalanced_transactions": [],
                 "commitment_differences": [], "settlement_differences": []}
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


@router.get(
    "/reconciliation",
    operation_id="reconcile_ledger",
    summary="Recompute every balance from the postings and report any difference",
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
    )
