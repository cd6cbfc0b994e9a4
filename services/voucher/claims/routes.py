"""Claims over HTTP: an enterprise files and reads its own; the programme office reviews,
approves, rejects and pays."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.claims import service
from services.voucher.claims.rules import ClaimStatus
from services.voucher.claims.schemas import (
    ClaimApproval,
    ClaimCreate,
    ClaimPayment,
    ClaimPublic,
    ClaimRejection,
)
from services.voucher.http.auth import require
from services.voucher.http.deps import Now, Session
from services.voucher.http.idempotency import idempotent
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.redemption.routes import HOLD_ERRORS

router = APIRouter(prefix="/v1/claims", tags=["claims"])
Reader = Annotated[Actor, Depends(require(Scope.CLAIMS_READ))]
Claimant = Annotated[Actor, Depends(require(Scope.CLAIMS_WRITE))]
Reviewer = Annotated[Actor, Depends(require(Scope.CLAIMS_REVIEW))]
IDEM = (errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress)
MOVE = (errors.NotFound, errors.InvalidTransition, *IDEM)


def _public(claim: object) -> ClaimPublic:
    return ClaimPublic.model_validate(claim)


@router.post(
    "",
    operation_id="file_claim",
    summary="File a claim after paying a provider in full; the subsidy is computed and held",
    description="An enterprise in an `enterprise_claim` programme (`claims:write`) files a claim after paying a "
    "provider in full, with a required Idempotency-Key, its contract and invoice numbers and its documents' "
    "SHA-256. The subsidy is computed as for a redemption and held on the voucher for the review (available to "
    "held, one ledger journal); it stores the claim and its documents with the audit events `claim.submitted`, "
    "`hold.placed` and `ledger.posted`. Refused for every reason a hold is refused (unknown code, a voucher that "
    "cannot be used, a provider not approved, not enrolled or related, items out of scope, cap reached, "
    "`wrong_payout_mode`…), with `invoice_already_claimed`, `document_already_claimed` or `contract_already_used` "
    "when the enterprise itself filed it before (asked first), `already_filed_elsewhere` when another enterprise "
    "holds the invoice, a document or the contract (asked last, once the rest of the claim holds, and not saying "
    "which), `validation_failed` for malformed numbers, line items that do not add up to "
    "the amount paid, a document listed twice or an invoice dated after today (Beijing time) or before "
    "2000-01-01, or an Idempotency-Key conflict.",
    status_code=201,
    response_model=ClaimPublic,
    responses=responses(*AUTH_ERRORS, *HOLD_ERRORS, errors.InvoiceAlreadyClaimed,
                        errors.DocumentAlreadyClaimed, errors.ContractAlreadyUsed, errors.FiledElsewhere,
                        errors.ValidationFailed, *IDEM),
    dependencies=[Depends(idempotent(Scope.CLAIMS_WRITE, required=True))],
)
async def file_claim(body: ClaimCreate, session: Session, now: Now, actor: Claimant, response: Response) -> ClaimPublic:
    claim = await service.file(session, actor, body.model_dump(mode="python"), now)
    response.headers["Location"] = f"/v1/claims/{claim.id}"
    return _public(claim)


@router.get("", operation_id="list_claims", summary="List claims (an enterprise sees its own)",
            description="Any key with `claims:read`: an enterprise sees its own claims, operators and auditors "
            "all; filter by status or programme. Changes nothing. Answers `invalid_cursor` for a cursor this "
            "service did not issue.",
            response_model=Page[ClaimPublic], responses=responses(*AUTH_ERRORS, errors.InvalidCursor))
async def list_claims(session: Session, actor: Reader, page: Paging,
                      status: Annotated[ClaimStatus | None, Query()] = None,
                      programme_id: Annotated[uuid.UUID | None, Query()] = None) -> Page[ClaimPublic]:
    rows, cursor = await service.list_claims(session, actor, page, status=status.value if status else None,
                                             programme_id=programme_id)
    return Page(items=[_public(c) for c in rows], next_cursor=cursor)


@router.get("/{claim_id}", operation_id="get_claim", summary="Read a claim",
            description="Any key with `claims:read`, for a claim it may see (an enterprise its own). Changes "
            "nothing. Answers `not_found` when the claim does not exist or is not yours.",
            response_model=ClaimPublic,
            responses=responses(*AUTH_ERRORS, errors.NotFound))
async def get_claim(claim_id: uuid.UUID, session: Session, actor: Reader) -> ClaimPublic:
    return _public(await service.get(session, actor, claim_id))


@router.post("/{claim_id}/review", operation_id="start_claim_review", summary="Start reviewing a submitted claim",
             description="The programme office (`claims:review`) takes a submitted claim into review. The status "
             "becomes `under_review` and the audit event `claim.under_review` is recorded; no value moves. Refused "
             "with `not_found`, `invalid_transition` (not submitted) or an Idempotency-Key conflict.",
             response_model=ClaimPublic, responses=responses(*AUTH_ERRORS, *MOVE),
             dependencies=[Depends(idempotent(Scope.CLAIMS_REVIEW))])
async def start_review(claim_id: uuid.UUID, session: Session, now: Now, actor: Reviewer) -> ClaimPublic:
    return _public(await service.start_review(session, actor, claim_id, now))


@router.post("/{claim_id}/approve", operation_id="approve_claim",
             summary="Approve: the held subsidy (or less) is captured, payable to the enterprise",
             description="The programme office (`claims:review`), with a required Idempotency-Key, approves the "
             "held subsidy or less. The amount is captured as a provider's capture is, but payable to the "
             "enterprise (held to used, the programme's spent to the enterprise's payable), and the rest returns "
             "to the voucher, in one ledger journal; audit events `redemption.captured`, `claim.approved` and "
             "`ledger.posted`, the first two also announced to events and webhooks. Refused with `not_found`, "
             "`invalid_transition` (not under review), `validation_failed` (more than held), `hold_not_active` "
             "(the voucher's expiry or revocation voided the hold), `voucher_expired`, `related_party` (the "
             "enterprise and the provider are related as they stand now: relations are judged again at approval) "
             "or an Idempotency-Key conflict.",
             response_model=ClaimPublic,
             responses=responses(*AUTH_ERRORS, *MOVE, errors.ValidationFailed, errors.HoldNotActive,
                                 errors.VoucherExpired, errors.RelatedParty),
             dependencies=[Depends(idempotent(Scope.CLAIMS_REVIEW, required=True))])
async def approve_claim(claim_id: uuid.UUID, session: Session, now: Now, actor: Reviewer,
                        body: ClaimApproval | None = None) -> ClaimPublic:
    body = body or ClaimApproval()
    return _public(await service.approve(session, actor, claim_id, body.amount, body.note, now))


@router.post("/{claim_id}/reject", operation_id="reject_claim",
             summary="Reject: exactly the held or approved subsidy returns to the voucher",
             description="The programme office (`claims:review`) rejects a claim under review, or approved and not "
             "yet paid, with a reason. Under review: exactly the held subsidy returns to the voucher (held to "
             "available, one ledger journal). Approved: the approved amount is refunded — the enterprise's "
             "payable drops by it and it returns to the voucher, or to the programme's pool once the voucher has "
             "expired (journal `refund`, audit and enterprise event `refund.created`; the claim's audit event "
             "names `withdrawn_amount` and `refund_id`). Either way the invoice, documents and contract may be "
             "claimed again; audit events `claim.rejected`, `hold.voided` (`hold.expired` if the hold had lapsed "
             "with its voucher's expiry) and `ledger.posted`. Refused with `not_found`, `invalid_transition` "
             "(submitted, paid or already rejected) or an Idempotency-Key conflict.",
             response_model=ClaimPublic,
             responses=responses(*AUTH_ERRORS, *MOVE), dependencies=[Depends(idempotent(Scope.CLAIMS_REVIEW, required=True))])
async def reject_claim(claim_id: uuid.UUID, body: ClaimRejection, session: Session, now: Now,
                       actor: Reviewer) -> ClaimPublic:
    return _public(await service.reject(session, actor, claim_id, body.reason, now))


@router.post("/{claim_id}/pay", operation_id="pay_claim",
             summary="Record the payment to the enterprise (payable to paid)",
             description="The programme office (`claims:review`), with a required Idempotency-Key, records the "
             "bank payment of an approved claim with its reference and date. The approved amount moves from the "
             "enterprise's payable to paid in one ledger journal, with the audit events `claim.paid` and "
             "`ledger.posted`. Refused with `not_found`, `invalid_transition` (not approved), `validation_failed` "
             "(`paid_on` before the day it was approved or after today, Beijing time), `records_differ` (the approved "
             "amount differs from what the claim's redemption captured: a record changed outside the service) or an "
             "Idempotency-Key conflict.",
             response_model=ClaimPublic,
             responses=responses(*AUTH_ERRORS, *MOVE, errors.ValidationFailed, errors.RecordsDiffer),
             dependencies=[Depends(idempotent(Scope.CLAIMS_REVIEW, required=True))])
async def pay_claim(claim_id: uuid.UUID, body: ClaimPayment, session: Session, now: Now,
                    actor: Reviewer) -> ClaimPublic:
    return _public(await service.pay(session, actor, claim_id, body.reference, body.paid_on, now))
