"""Claim use cases (`enterprise_claim` programmes): the SME files a claim with its contract,
invoice, payment and documents; the subsidy is computed and held exactly as a provider's hold;
the programme office reviews, approves (captured, payable to the enterprise), rejects (the hold
released) and pays (payable to paid, with the payment reference)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import SYSTEM as _SYSTEM
from services.voucher.actor import Actor
from services.voucher.applications import repository as applications_repository
from services.voucher.applications.rules import (
    normalise_contract_number,
    number_problem,
    reference_key,
)
from services.voucher.audit import service as audit
from services.voucher.claims import repository
from services.voucher.claims.rules import (
    HOLD_DAYS,
    ClaimStatus,
    check_transition,
    invoice_identity,
    normalise_invoice_number,
    order_reference,
)
from services.voucher.db import PageRequest, is_integrity_error
from services.voucher.errors import (
    ContractAlreadyUsed,
    DocumentAlreadyClaimed,
    FiledElsewhere,
    Forbidden,
    InvoiceAlreadyClaimed,
    NotFound,
    OrderReferenceConflict,
    RecordsDiffer,
    ValidationFailed,
    WrongPayoutMode,
    field_error,
)
from services.voucher.i18n import Amount, Message, msg
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind, transfer
from services.voucher.programmes import repository as programmes_repository
from services.voucher.programmes.rules import PayoutMode
from services.voucher.providers import service as providers
from services.voucher.redemption import service as redemption
from services.voucher.redemption.rules import Parties, Payee, check_parties, not_enrolled
from services.voucher.settlement.rules import EARLIEST_DAY, PERIOD_ZONE, payment_day_problem
from services.voucher.tables import (
    Claim,
    ClaimDocument,
    ContractReference,
    Enterprise,
    Programme,
    Provider,
    Voucher,
)
from services.voucher.vouchers import service as vouchers

C = ClaimStatus


async def _claimable(
    session: AsyncSession, provider_id: uuid.UUID, invoice: str, invoice_key: str, contract: str, contract_key: str,
    digests: list[str], voucher: Voucher, *, own_only: bool = False,
) -> ContractReference | None:
    """`_holdings`, for the voucher's own enterprise (`own_only`: each refusal names what it
    holds), or for anyone: then what another enterprise holds is refused as one, without saying
    which (`already_filed_elsewhere`). Named apart, one taken contract an enterprise knew of, put
    last, had told it for free whether any other enterprise held an invoice or a document (an
    independent review, December 2026): the invoice's refusal came first, the contract's
    otherwise, and neither filed anything."""
    try:
        return await _holdings(session, provider_id, invoice, invoice_key, contract, contract_key, digests, voucher,
                               own_only=own_only)
    except (InvoiceAlreadyClaimed, DocumentAlreadyClaimed, ContractAlreadyUsed) as exc:
        if own_only:
            raise
        raise FiledElsewhere(msg("the invoice, a document or the contract of this claim is already part of another "
                                 "enterprise's claim or application: the programme office can say which")) from exc


async def _holdings(
    session: AsyncSession, provider_id: uuid.UUID, invoice: str, invoice_key: str, contract: str, contract_key: str,
    digests: list[str], voucher: Voucher, *, own_only: bool = False,
) -> ContractReference | None:
    """The one-claim-per-invoice, per-document and per-contract rules, numbers compared by
    their keys; partial unique indexes back each of them against a concurrent claim. Returns
    the contract's reference when it is the one the application that issued this voucher holds
    and no claim has taken yet: the claim takes it over (the voucher was granted for that
    contract, and its own application had refused every claim under it, `contract_already_used`;
    an independent review, December 2026). `own_only`: refuse only what the voucher's own
    enterprise holds (what it filed is its own to be told, before anything else is asked)."""
    mine = voucher.enterprise_id
    claimed = await repository.live_invoice(session, invoice_key)
    if claimed is not None and (not own_only or claimed.enterprise_id == mine):
        raise InvoiceAlreadyClaimed(msg("invoice {invoice} is already part of a claim (an invoice is claimed once, "
                                        "whoever files it)", invoice=invoice),
                                    invoice_number=invoice)
    taken = await repository.live_documents(session, digests, mine if own_only else None)
    if taken:
        raise DocumentAlreadyClaimed(msg("document(s) {documents} are already part of a claim",
                                         documents=sorted(taken)),
                                     sha256=sorted(taken))
    held = await applications_repository.live_contract(session, provider_id, contract_key)
    if held is not None and held.claim_id is None and held.application_id is not None \
            and held.application_id == voucher.application_id and held.enterprise_id == mine:
        return held
    if held is not None and (not own_only or held.enterprise_id == mine):
        raise _contract_used(contract)
    return None


def _contract_used(contract: str) -> ContractAlreadyUsed:
    return ContractAlreadyUsed(
        msg("contract {contract} is already part of an application or claim: one subsidy per contract",
            contract=contract),
        contract_number=contract,
    )


def _dating_problems(invoice_date: date, now: datetime) -> list[tuple[str, Message]]:
    """An invoice is dated by now (Asia/Shanghai) and within the years the service keeps
    (settlement periods start on 2000-01-01 too): a review filed invoices dated 2099-01-01 and
    0001-01-01, and each held subsidy. How old a purchase a programme subsidises is its own
    policy, not modelled: an office reviewing the claim sees the date."""
    today = now.astimezone(ZoneInfo(PERIOD_ZONE)).date()
    if invoice_date > today:
        return [("invoice_date", msg("the invoice is dated {day}, after today ({today}, Beijing time)",
                                     day=invoice_date, today=today))]
    if invoice_date < EARLIEST_DAY:
        return [("invoice_date", msg("the invoice is dated {day}, before {earliest}",
                                     day=invoice_date, earliest=EARLIEST_DAY))]
    return []


async def file(session: AsyncSession, actor: Actor, data: dict[str, Any], now: datetime) -> Claim:
    """File a claim: the subsidy on the paid invoice is computed and held from the voucher."""
    if actor.enterprise_id is None:
        raise Forbidden(msg("an enterprise files its own claims, with its own key"))
    voucher = await vouchers.get_voucher(session, actor, data["voucher_id"])
    programme = await session.get(Programme, voucher.programme_id)
    assert programme is not None
    if programme.mode != PayoutMode.ENTERPRISE_CLAIM.value:
        raise WrongPayoutMode(msg("programme {programme} pays providers through redemptions, not claims",
                                  programme=programme.code),
                              mode=programme.mode)
    provider = await providers.get_provider(session, _SYSTEM, data["provider_id"])
    invoice = normalise_invoice_number(data["invoice_number"])
    code = normalise_invoice_number(data["invoice_code"]) if data.get("invoice_code") else None
    contract = normalise_contract_number(data["contract_number"])
    problems = []
    for name, number in (("invoice_number", invoice), ("invoice_code", code), ("contract_number", contract)):
        problem = number_problem(number) if number is not None else None
        if problem is not None:
            problems.append(field_error(name, problem))
    if not problems:  # an invoice is known by the tax system's identity, whoever files it
        invoice_key, invalid = invoice_identity(reference_key(invoice), reference_key(code) if code else None)
        problems.extend(field_error(name, message) for name, message in invalid)
    items_total = sum(i["amount"] for i in data["line_items"])
    if items_total != data["amount_paid"]:
        problems.append(field_error("line_items", msg("the line items add up to {total}, not the {paid} paid",
                                                      total=Amount(items_total, voucher.unit),
                                                      paid=Amount(data["amount_paid"], voucher.unit))))
    problems.extend(field_error(name, problem) for name, problem in _dating_problems(data["invoice_date"], now))
    digests = [d["sha256"] for d in data["documents"]]
    twice = sorted({d for d in digests if digests.count(d) > 1})
    if twice:
        problems.append(field_error("documents", msg("document(s) {documents} are listed more than once",
                                                     documents=twice)))
    if problems:
        raise ValidationFailed(problems)
    # The enrolment first, before the provider's status (the hold's): whether a provider outside
    # the programme is suspended is not the enterprise's to learn (an independent review,
    # December 2026).
    enrolled = await programmes_repository.enrolment(session, programme.id, provider.id)
    if enrolled is None or enrolled.withdrawn_at is not None:
        raise not_enrolled(programme.code)
    assert invoice_key is not None
    contract_key = reference_key(contract)
    # What the enterprise itself filed is named before the hold (its own invoice filed again
    # would otherwise read as an order already subsidised); what others filed, only after it.
    await _claimable(session, provider.id, invoice, invoice_key, contract, contract_key, digests, voucher,
                     own_only=True)
    enterprise = await session.get(Enterprise, voucher.enterprise_id)
    assert enterprise is not None
    try:
        held = await redemption.hold(
            session, actor,
            redemption.HoldRequest(voucher_code=voucher.code, enterprise_uscc=enterprise.uscc,
                                   order_reference=order_reference(invoice_key, data["amount_paid"], enterprise.uscc),
                                   line_items=data["line_items"]),
            now, provider_id=provider.id, payee=Payee.ENTERPRISE, ttl=timedelta(days=HOLD_DAYS),
        )
    except OrderReferenceConflict as exc:  # the enterprise's own concurrent claim of this invoice won a race
        raise InvoiceAlreadyClaimed(msg("invoice {invoice} is already part of a claim", invoice=invoice),
                                    invoice_number=invoice) from exc
    # Whether another enterprise holds the invoice, a document or the contract is asked only once
    # everything else about the claim holds (the hold is undone with the request when it is
    # refused), and answered as one: asked first, any enterprise with a voucher could learn, at
    # no cost, which contract numbers, invoices and documents others had filed, sending a line
    # item the programme does not cover so that nothing was ever filed (an independent review,
    # December 2026). A free guess now files a claim, which the office reviews.
    applied = await _claimable(session, provider.id, invoice, invoice_key, contract, contract_key, digests, voucher)
    claim = Claim(
        voucher_id=voucher.id, programme_id=programme.id, enterprise_id=voucher.enterprise_id,
        provider_id=provider.id, redemption_id=held.id, contract_number=contract, invoice_number=invoice,
        invoice_code=code, invoice_key=invoice_key,
        invoice_date=data["invoice_date"], amount_paid=data["amount_paid"], unit=voucher.unit,
        line_items=data["line_items"], documents=data["documents"], subsidy=held.held_amount, status=C.SUBMITTED.value,
        created_at=now, updated_at=now,
    )
    try:
        async with session.begin_nested():
            await repository.add_all(session, [claim])
            await repository.add_all(session, [
                ClaimDocument(claim_id=claim.id, sha256=d["sha256"], file_name=d["file_name"],
                              media_type=d["media_type"], size=d["size"]) for d in data["documents"]
            ] + ([] if applied is not None else [
                ContractReference(provider_id=provider.id, number=contract_key, enterprise_id=voucher.enterprise_id,
                                  claim_id=claim.id, created_at=now)]))
            # Taken only if still untaken, without locking it before the voucher (the claim
            # paths' lock order): a claim that lost the race is refused as if it had seen it.
            if applied is not None and not await applications_repository.take_contract(session, applied.id, claim.id):
                raise _contract_used(contract)
    except Exception as exc:
        if not is_integrity_error(exc):
            raise
        raise InvoiceAlreadyClaimed(
            msg("this invoice, a document or the contract was just claimed by another claim")) from exc
    await audit.record(
        session, "claim.submitted", "claim", claim.id, now=now,
        after=audit.fields(claim, "status contract_number invoice_number invoice_code invoice_date amount_paid subsidy "
                                  "redemption_id documents"),
        programme_id=claim.programme_id, enterprise_id=claim.enterprise_id, provider_id=claim.provider_id,
        voucher_id=claim.voucher_id,
    )
    return claim


async def get(session: AsyncSession, actor: Actor, claim_id: uuid.UUID, *, for_update: bool = False) -> Claim:
    found = await repository.get(session, actor, claim_id, for_update=for_update)
    if found is None:
        raise NotFound(msg("no claim with id {claim_id}", claim_id=claim_id))
    return found


async def list_claims(session: AsyncSession, actor: Actor, page: PageRequest, *, status: str | None = None,
                      programme_id: uuid.UUID | None = None) -> tuple[list[Claim], str | None]:
    return await repository.list_page(session, actor, page, status=status, programme_id=programme_id)


async def _move(session: AsyncSession, claim: Claim, target: C, now: datetime, reason: str | None = None,
                **extra: Any) -> None:
    check_transition(C(claim.status), target)
    await audit.record(
        session, f"claim.{target.value}", "claim", claim.id, now=now,
        before={"status": claim.status}, after={"status": target.value, "status_reason": reason, **extra},
        programme_id=claim.programme_id, enterprise_id=claim.enterprise_id, provider_id=claim.provider_id,
        voucher_id=claim.voucher_id, announce_to_provider=False,
    )
    claim.status = target.value
    claim.status_reason = reason
    claim.updated_at = now
    claim.version += 1


async def start_review(session: AsyncSession, actor: Actor, claim_id: uuid.UUID, now: datetime) -> Claim:
    claim = await _lock(session, await get(session, actor, claim_id))
    await _move(session, claim, C.UNDER_REVIEW, now)
    await session.flush()
    return claim


async def _lock(session: AsyncSession, claim: Claim) -> Claim:
    """Voucher, then the claim (then, in capture or void, its redemption): the voucher first,
    as on every value-moving path. Providers never lock a claim's redemption (they cannot see it)."""
    await vouchers.lock_voucher(session, claim.voucher_id)
    found = await repository.get(session, _SYSTEM, claim.id, for_update=True)
    assert found is not None
    return found


async def approve(session: AsyncSession, actor: Actor, claim_id: uuid.UUID, amount: int | None, note: str | None,
                  now: datetime) -> Claim:
    """Approve up to the held subsidy: captured as a provider's capture is, payable to the
    enterprise; any rest goes back to the voucher."""
    claim = await _lock(session, await get(session, actor, claim_id))
    check_transition(C(claim.status), C.APPROVED)
    # Related parties again, as they stand now: a review lasts months, and a relation the office
    # records meanwhile had not stopped the approval (an independent review, December 2026).
    enterprise = await session.get(Enterprise, claim.enterprise_id)
    provider = await session.get(Provider, claim.provider_id)
    assert enterprise is not None and provider is not None
    check_parties(Parties(enterprise_uscc=enterprise.uscc, enterprise_related=enterprise.related_parties,
                          provider_status=provider.status, provider_related=provider.related_parties,
                          is_enrolled=True, provider_uscc=provider.uscc))
    granted = claim.subsidy if amount is None else amount  # at most the held subsidy: `rules.capture_amount`
    await redemption.capture_claim(session, claim.redemption_id, granted, now)
    await _move(session, claim, C.APPROVED, now, note, approved_amount=granted)
    claim.approved_amount = granted
    await session.flush()
    return claim


async def reject(session: AsyncSession, actor: Actor, claim_id: uuid.UUID, reason: str, now: datetime) -> Claim:
    """Refuse the claim: exactly the held subsidy returns to the voucher; the invoice, documents
    and contract may be claimed again (correctly). An approved claim not yet paid is refused
    too: the approved amount is refunded, out of the enterprise's payable back to the voucher
    (to the programme's pool once the voucher has expired), as a provider's refund is."""
    claim = await _lock(session, await get(session, actor, claim_id))
    check_transition(C(claim.status), C.REJECTED)
    withdrawn: dict[str, Any] = {}
    if claim.status == C.APPROVED.value:
        if claim.approved_amount:
            refund = await redemption.refund(session, _SYSTEM, claim.redemption_id, claim.approved_amount,
                                             f"claim {claim.id} rejected after its approval: {reason}", now,
                                             withdrawn=True)
            withdrawn = {"withdrawn_amount": claim.approved_amount, "refund_id": refund.id}
    else:
        await redemption.void_claim(session, claim.redemption_id, now)
    await _move(session, claim, C.REJECTED, now, reason, **withdrawn)
    for document in await repository.documents_of(session, claim.id):
        document.released_at = now
    for reference in await applications_repository.contracts_of_claim(session, claim.id):
        if reference.application_id is not None:  # its application's again: the voucher stays granted for it
            reference.claim_id = None
        else:
            reference.released_at = now
    await session.flush()
    return claim


async def pay(session: AsyncSession, actor: Actor, claim_id: uuid.UUID, reference: str, paid_on: date,
              now: datetime) -> Claim:
    """Record the payment to the enterprise: payable to paid in the ledger."""
    claim = await get(session, actor, claim_id, for_update=True)
    check_transition(C(claim.status), C.PAID)
    assert claim.approved_amount is not None
    # The approval captured the claim's redemption: its capture is the approval's instant.
    captured = (await redemption.get_redemption(session, _SYSTEM, claim.redemption_id))[0]
    approved_at = captured.captured_at
    in_ledger = await ledger.captured_in_ledger(session, claim.redemption_id)
    if not captured.captured_amount == in_ledger == claim.approved_amount:  # changed behind the service
        raise RecordsDiffer(
            msg("claim {claim_id} was approved for {approved} but its redemption records {captured} captured and "
                "its journals {in_ledger}: its records were changed outside the service, and nothing is paid. The "
                "ledger reconciliation lists what differs",
                claim_id=claim.id, approved=Amount(claim.approved_amount, claim.unit),
                captured=Amount(captured.captured_amount, claim.unit), in_ledger=Amount(in_ledger, claim.unit)),
            approved_amount=claim.approved_amount, captured_amount=captured.captured_amount,
            ledger_captured=in_ledger,
        )
    problem = payment_day_problem(paid_on, approved_at, now)
    if problem is not None:
        raise ValidationFailed([field_error("paid_on", problem)])
    accounts = await ledger.ensure_enterprise_accounts(
        session, claim.enterprise_id, claim.programme_id, claim.unit, now,
        [AccountKind.ENTERPRISE_PAYABLE, AccountKind.ENTERPRISE_PAID],
    )
    await ledger.post(
        session, kind="claim_paid", now=now, programme_id=claim.programme_id, voucher_id=claim.voucher_id,
        redemption_id=claim.redemption_id, memo=f"claim {claim.id} paid, reference {reference}",
        legs=transfer(accounts[AccountKind.ENTERPRISE_PAYABLE], accounts[AccountKind.ENTERPRISE_PAID],
                      claim.approved_amount, claim.unit),
    )
    await _move(session, claim, C.PAID, now, payment_reference=reference, paid_on=paid_on)
    claim.payment_reference = reference
    claim.paid_on = paid_on
    await session.flush()
    return claim

