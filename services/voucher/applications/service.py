"""Application use cases: submit (judged at once), review (approve, reject), object during
publicity, withdraw, and the end of publicity that issues the voucher.

Money moves only at three points, each in the transaction of its transition: approval
commits budget (programme_available → programme_committed) and cap (usage.committed); an
objection keeps that commitment while the office examines it, and a rejection or withdrawal
then releases exactly it; the end of publicity turns the commitment into a voucher.

Locks are taken in one order everywhere: application → the enterprise's usage rows, in
ascending period order → programme accounts (pool before committed), the same suborder as
direct issuance. The programme's shared lock may come before or after an application's row:
those who hold the programme exclusively (update, close, archive, enrolment) wait on nothing
else, and a shared request is granted at once beside other shared holders.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import SYSTEM, Actor
from services.voucher.apikeys.rules import Role
from services.voucher.applications import repository
from services.voucher.applications.rules import (
    RELEASES_CONTRACTS,
    ApplicationStatus,
    check_transition,
    in_window,
    normalise_contract_number,
    number_problem,
    publicity_end,
    publicity_over,
    reference_key,
)
from services.voucher.audit import service as audit
from services.voucher.db import Database, PageRequest, is_integrity_error, is_transient
from services.voucher.eligibility import service as eligibility
from services.voucher.enterprises import service as enterprises
from services.voucher.errors import (
    ApplicationAlreadyOpen,
    ApplicationWindowClosed,
    BudgetExhausted,
    ContractAlreadyUsed,
    DomainError,
    ExceedsMaxPerVoucher,
    Forbidden,
    NotFound,
    ProgrammeNotOpen,
    ValidationFailed,
    field_error,
)
from services.voucher.i18n import Amount, Status, msg
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind, transfer
from services.voucher.programmes import service as programmes
from services.voucher.programmes.rules import ProgrammeStatus, period_key
from services.voucher.providers import service as providers
from services.voucher.redemption.rules import party_ids
from services.voucher.tables import (
    Application,
    ApplicationTransition,
    ContractReference,
    Enterprise,
    Programme,
)
from services.voucher.vouchers import service as vouchers

S = ApplicationStatus
log = logging.getLogger("voucher.applications")
#: The public sees what an enterprise sees of programmes: no drafts.
_PUBLIC = Actor(principal_id=uuid.UUID(int=0), role=Role.ENTERPRISE, key_id=None, scopes=frozenset())


async def _record(
    session: AsyncSession,
    application: Application,
    source: S | None,
    target: S,
    actor: Actor,
    now: datetime,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Move the application to `target` (a legal move only) and keep the step in its history."""
    if source is not None:
        check_transition(source, target)
    application.status = target.value
    application.updated_at = now
    application.version += 1
    if target in RELEASES_CONTRACTS:  # ended without a subsidy: its contracts are free again
        await _release_contracts(session, application, now)
    session.add(ApplicationTransition(
        application_id=application.id, from_status=source.value if source else None, to_status=target.value,
        reason=reason, details=details or {}, principal_id=actor.principal_id, created_at=now,
    ))
    after: dict[str, Any] = {"status": target.value, "reason": reason, "details": details or {},
                             "approved_amount": application.approved_amount}
    if source is None:
        after.update(audit.fields(application, "requested_amount purpose contracts is_eligible"))
    judged = target in (S.SUBMITTED, S.UNDER_REVIEW, S.INELIGIBLE)
    await audit.record(
        session, f"application.{target.value}", "application", application.id, now=now,
        before=None if source is None else {"status": source.value}, after=after,
        programme_id=application.programme_id, enterprise_id=application.enterprise_id,
        voucher_id=application.voucher_id,
        rule_version=application.eligibility_version if judged else None,
    )


# -- submission --------------------------------------------------------------------------------


async def _check_contracts(
    session: AsyncSession, programme: Programme, contracts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Contracts as stored (numbers normalised); 422 for a malformed list. Whether each is free is
    `_check_contracts_free`'s, asked later."""
    if programme.application_requires_contract and not contracts:
        raise ValidationFailed([field_error("contracts", msg("this programme asks for at least one contract"),
                                            "contract_required")])
    problems, seen, stored = [], set(), []
    for i, contract in enumerate(contracts):
        number = normalise_contract_number(contract["number"])
        problem = number_problem(number)
        if problem is not None:
            problems.append(field_error(f"contracts/{i}/number", problem))
            continue
        key = (contract["provider_id"], reference_key(number))
        if key in seen:
            problems.append(field_error(f"contracts/{i}/number", msg("contract {number} is listed twice", number=number)))
        seen.add(key)
        try:
            await providers.get_provider(session, SYSTEM, contract["provider_id"])
        except NotFound:
            problems.append(field_error(f"contracts/{i}/provider_id", msg("no provider with this id")))
        stored.append({**contract, "number": number, "provider_id": str(contract["provider_id"])})
    if problems:
        raise ValidationFailed(problems)
    return stored


async def _check_contracts_free(session: AsyncSession, stored: list[dict[str, Any]]) -> None:
    """409 for a contract already part of another application or claim. Asked only once the
    enterprise could apply at all (no application of its own still open): asked first, an
    enterprise with an open application could probe others' contract numbers at no cost, each
    refusal writing nothing (an independent review, December 2026)."""
    for contract in stored:
        provider_id = uuid.UUID(contract["provider_id"])
        if await repository.live_contract(session, provider_id, reference_key(contract["number"])) is not None:
            raise ContractAlreadyUsed(
                msg("contract {number} with provider {provider_id} is already part of another application or "
                    "claim: one subsidy per contract", number=contract["number"], provider_id=provider_id),
                contract_number=contract["number"], provider_id=str(provider_id),
            )


async def _related_contracts(
    session: AsyncSession, enterprise: Enterprise, contracts: list[dict[str, Any]]
) -> tuple[str, ...]:
    """The numbers of the contracts whose provider is the enterprise itself or shares a legal
    representative or shareholder with it, judged as redemption judges a related party."""
    ours = party_ids(enterprise.related_parties, enterprise.uscc)
    related = []
    for contract in contracts:
        provider = await providers.get_provider(session, SYSTEM, uuid.UUID(contract["provider_id"]))
        if ours.keys() & party_ids(provider.related_parties, provider.uscc).keys():
            related.append(contract["number"])
    return tuple(related)


async def _register_contracts(session: AsyncSession, application: Application, now: datetime) -> None:
    # In one order for every submission (provider, then key): two enterprises listing the same
    # two contracts in opposite orders had each inserted one and then waited on the other's
    # unique key, and PostgreSQL answered one with a deadlock (409 concurrent_update) instead of
    # `contract_already_used` (an independent review, December 2026).
    for contract in sorted(application.contracts,
                           key=lambda c: (str(c["provider_id"]), reference_key(c["number"]))):
        reference = ContractReference(
            provider_id=uuid.UUID(contract["provider_id"]), number=reference_key(contract["number"]),
            enterprise_id=application.enterprise_id, application_id=application.id, created_at=now,
        )
        try:
            async with session.begin_nested():
                await repository.add(session, reference)
        except Exception as exc:  # the partial unique index: a concurrent submission won
            if not is_integrity_error(exc):
                raise
            raise ContractAlreadyUsed(
                msg("contract {number} was just claimed by another application", number=contract["number"]),
                contract_number=contract["number"], provider_id=contract["provider_id"],
            ) from exc


async def _release_contracts(session: AsyncSession, application: Application, now: datetime) -> None:
    for reference in await repository.contracts_of(session, application.id):
        reference.released_at = now


async def preview(
    session: AsyncSession, actor: Actor, programme_id: uuid.UUID, requested_amount: int, now: datetime
) -> eligibility.Verdict:
    """What `submit` would judge now, without submitting: the programme's current rule version on
    the calling enterprise's facts and its remaining cap. Nothing is stored or recorded."""
    if actor.enterprise_id is None:
        raise Forbidden(msg("only an enterprise applies, with its own key"))
    programme = await programmes.get_programme(session, actor, programme_id)
    _within_maximum(programme, requested_amount)  # as `submit` refuses it, before any rule
    enterprise = await enterprises.get_enterprise(session, actor, actor.enterprise_id)
    remaining = (await vouchers.remaining_cap(session, programme, enterprise.id, now))[1]
    return eligibility.judge_request(programme, enterprise, requested_amount, remaining, now)


def _within_maximum(programme: Programme, requested: int) -> None:
    if requested > programme.max_per_voucher:
        raise ValidationFailed([field_error(
            "requested_amount", msg("at most the programme's maximum per voucher, {max_per_voucher}",
                                    max_per_voucher=Amount(programme.max_per_voucher, programme.unit)))])


async def submit(
    session: AsyncSession, actor: Actor, programme_id: uuid.UUID, data: dict[str, Any], now: datetime
) -> Application:
    """An enterprise applies: judged at once by the programme's current rule version, ending
    `ineligible` (with every failed rule) or `under_review`. One open application per
    enterprise and programme; one subsidy per contract."""
    if actor.enterprise_id is None:
        raise Forbidden(msg("only an enterprise applies, with its own key"))
    # Held shared until the application is written: the programme cannot close (and then be
    # archived as having no open application) while it is being submitted.
    programme = await programmes.get_programme(session, actor, programme_id, for_share=True)
    if programme.status != ProgrammeStatus.OPEN.value or not in_window(
        programme.application_opens_at, programme.application_closes_at, now
    ):
        opens, closes = programme.application_opens_at, programme.application_closes_at
        opens_at = opens.isoformat() if opens else None
        closes_at = closes.isoformat() if closes else None
        if opens and closes:
            window = msg("programme {code} takes applications only while open, from {opens_at} until {closes_at}",
                         code=programme.code, opens_at=opens, closes_at=closes)
        elif opens:
            window = msg("programme {code} takes applications only while open, from {opens_at}",
                         code=programme.code, opens_at=opens)
        elif closes:
            window = msg("programme {code} takes applications only while open until {closes_at}",
                         code=programme.code, closes_at=closes)
        else:
            window = msg("programme {code} takes applications only while open", code=programme.code)
        raise ApplicationWindowClosed(window, current_status=programme.status, opens_at=opens_at, closes_at=closes_at)
    requested = data["requested_amount"]
    _within_maximum(programme, requested)
    enterprise = await enterprises.get_enterprise(session, actor, actor.enterprise_id)
    contracts = await _check_contracts(session, programme, data.get("contracts") or [])
    # An earlier application whose publicity has ended is issued, not open: write that first,
    # so it neither blocks nor miscounts. This period's usage row is locked with its own, before
    # its issue takes the committed budget (the lock order of the accounts, docs/decisions.md).
    period = period_key(programme.cap_period, programme.cap_timezone, now)
    earlier = await repository.open_application(session, programme.id, enterprise.id)
    if earlier is not None and is_due(earlier, now):
        await complete_publicity(session, earlier.id, now, also_period=period)
    # The usage row's lock serialises this enterprise's submissions, approvals and issuance.
    usage = await vouchers.lock_cap(session, programme, enterprise.id, period)
    existing = await repository.open_application(session, programme.id, enterprise.id)
    if existing is not None:
        raise ApplicationAlreadyOpen(
            msg("application {application_id} to this programme is still {status}; withdraw it or wait for its "
                "decision", application_id=existing.id, status=Status(existing.status)),
            application_id=str(existing.id), current_status=existing.status,
        )
    await _check_contracts_free(session, contracts)
    remaining = max(programme.enterprise_cap - usage.granted - usage.committed, 0)
    verdict = eligibility.judge_request(programme, enterprise, requested, remaining, now,
                                        related_contracts=await _related_contracts(session, enterprise, contracts))
    application = Application(
        programme_id=programme.id, enterprise_id=enterprise.id, status=S.SUBMITTED.value, unit=programme.unit,
        requested_amount=requested, purpose=data["purpose"], contracts=contracts,
        eligibility_version=programme.eligibility_version, is_eligible=verdict.passed,
        eligibility_result=verdict.stored(), submitted_at=now, updated_at=now,
    )
    try:
        async with session.begin_nested():
            await repository.add(session, application)
    except Exception as exc:  # the partial unique index: a submission in another cap period won
        if not is_integrity_error(exc):
            raise
        raise ApplicationAlreadyOpen(
            msg("another application of this enterprise to this programme was just submitted"),
            current_status=S.SUBMITTED.value,
        ) from exc
    await _record(session, application, None, S.SUBMITTED, actor, now)
    if verdict.passed:
        await _record(session, application, S.SUBMITTED, S.UNDER_REVIEW, actor, now)
        await _register_contracts(session, application, now)
    else:
        failed = [leaf.rule_id for leaf in verdict.outcome.failed_leaves()]
        await _record(session, application, S.SUBMITTED, S.INELIGIBLE, actor, now,
                      reason="eligibility rules not met", details={"failed_rules": failed})
        application.decided_at = now
    await session.flush()
    return application


# -- reads ---------------------------------------------------------------------------------------


async def get_application(
    session: AsyncSession, actor: Actor, application_id: uuid.UUID, *, for_update: bool = False
) -> Application:
    application = await repository.get(session, actor, application_id, for_update=for_update)
    if application is None:
        raise NotFound(msg("no application with id {application_id}", application_id=application_id))
    return application


async def list_applications(
    session: AsyncSession,
    actor: Actor,
    page: PageRequest,
    *,
    programme_id: uuid.UUID | None = None,
    enterprise_id: uuid.UUID | None = None,
    status: str | None = None,
    now: datetime,
) -> tuple[list[Application], str | None]:
    return await repository.list_page(
        session, actor, page, programme_id=programme_id, enterprise_id=enterprise_id, status=status, now=now
    )


async def history(session: AsyncSession, actor: Actor, application_id: uuid.UUID) -> list[ApplicationTransition]:
    await get_application(session, actor, application_id)
    return await repository.history(session, application_id)


def is_due(application: Application, now: datetime) -> bool:
    return publicity_over(S(application.status), application.publicity_ends_at, now)


def status_seen(application: Application, now: datetime) -> S:
    """The status a reader sees: a publicity that has ended is an issued voucher, whether or
    not the issuance has been written yet. Every transition is judged from this status."""
    return S.ISSUED if is_due(application, now) else S(application.status)


# -- review --------------------------------------------------------------------------------------


async def _programme(session: AsyncSession, programme_id: uuid.UUID) -> Programme:
    return await vouchers.programme_for_change(session, programme_id)


async def _commit(
    session: AsyncSession, programme: Programme, enterprise_id: uuid.UUID, period: str, amount: int, memo: str,
    now: datetime,
) -> None:
    """Reserve `amount` of the enterprise's cap in `period` and of the programme's budget."""
    usage = await vouchers.lock_cap(session, programme, enterprise_id, period)
    vouchers.check_cap(programme.enterprise_cap, usage.granted, usage.committed, amount, period, programme.unit)
    await _take_budget(session, programme, amount, memo, now)
    usage.committed += amount


async def _recommit(
    session: AsyncSession, programme: Programme, application: Application, held: int, amount: int, period: str,
    now: datetime,
) -> None:
    """Approved again for more than it holds, in a later cap period than its first approval:
    the whole approval counts against this period's cap (the earlier period's gets what it held
    back), and the budget moves only the difference. Keeping the approval in the earlier
    period had let the increase, decided now, escape this period's cap (a review). The two
    usage rows are locked in ascending period order, both before the pool, as every path that
    locks several of an enterprise's usage rows locks them (a hold's counters, a submission
    that first issues a due application)."""
    earlier = application.period_key
    assert earlier is not None
    rows = {key: await vouchers.lock_cap(session, programme, application.enterprise_id, key)
            for key in sorted({earlier, period})}
    now_row = rows[period]
    vouchers.check_cap(programme.enterprise_cap, now_row.granted, now_row.committed, amount, period, programme.unit)
    await _take_budget(session, programme, amount - held,
                       f"application {application.id} approved again for more, in {period}", now)
    rows[earlier].committed -= held
    now_row.committed += amount
    application.period_key = period


async def _take_budget(session: AsyncSession, programme: Programme, amount: int, memo: str, now: datetime) -> None:
    """Move `amount` of the programme's budget from available to committed, checked under the
    pool's lock."""
    accounts = await ledger.programme_accounts(session, programme.id)
    available = accounts[AccountKind.PROGRAMME_AVAILABLE]
    budget = (await ledger.balances(session, [available], lock=True))[available]
    if budget < amount:
        raise BudgetExhausted(msg("the programme has {budget} uncommitted; cannot commit {amount}",
                                  budget=Amount(budget, programme.unit), amount=Amount(amount, programme.unit)),
                              remaining=budget)
    await ledger.post(
        session, kind="budget_committed",
        legs=transfer(available, accounts[AccountKind.PROGRAMME_COMMITTED], amount, programme.unit),
        now=now, programme_id=programme.id, memo=memo,
    )


async def _uncommit(
    session: AsyncSession, programme: Programme, enterprise_id: uuid.UUID, period: str, amount: int, memo: str,
    now: datetime,
) -> None:
    """Give `amount` back to the enterprise's cap in `period` and to the programme's budget."""
    usage = await vouchers.lock_cap(session, programme, enterprise_id, period)
    accounts = await ledger.programme_accounts(session, programme.id)
    # The pool first, as an approval locks it (`_commit`): the post's own updates take the
    # committed account and the pool in the merged write's order, committed first, which
    # against an approval holding the pool and waiting for committed was a deadlock.
    await ledger.balances(session, [accounts[AccountKind.PROGRAMME_AVAILABLE]], lock=True)
    await ledger.post(
        session, kind="commitment_released",
        legs=transfer(accounts[AccountKind.PROGRAMME_COMMITTED], accounts[AccountKind.PROGRAMME_AVAILABLE],
                      amount, programme.unit),
        now=now, programme_id=programme.id, memo=memo,
    )
    usage.committed -= amount


async def _release(session: AsyncSession, application: Application, now: datetime, why: str) -> int | None:
    """Return exactly what the application's approval holds, budget and cap (an application
    an objection returned to review holds it); what was released, or None when nothing was."""
    amount, period = application.approved_amount, application.period_key
    if amount is None:
        return None
    assert period is not None
    programme = await _programme(session, application.programme_id)
    await _uncommit(session, programme, application.enterprise_id, period, amount,
                    f"application {application.id}: {why}", now)
    application.approved_amount = None
    application.period_key = None
    application.approved_at = None
    application.publicity_ends_at = None
    return amount


async def approve(
    session: AsyncSession, actor: Actor, application_id: uuid.UUID, amount: int, note: str | None, now: datetime
) -> Application:
    """Approve `amount` (≤ requested, ≤ the cap and budget left): the commitment is made in
    this transaction, and publicity starts (or, with none, the voucher is issued at once).

    An application an objection returned to review still holds its first approval: approving
    it again (the objection dismissed) keeps that commitment, in the cap period it was made in,
    and moves only the difference to the new amount; for more in a later cap period, the whole
    approval moves to this one's cap (`_recommit`). No more than it holds may be approved
    once the programme is closed: a closed programme honours its approvals, and an objection
    found baseless must not end one (an independent review)."""
    application = await get_application(session, actor, application_id, for_update=True)
    check_transition(status_seen(application, now), S.APPROVED)
    if amount > application.requested_amount:
        raise ValidationFailed([field_error(
            "amount", msg("at most the {requested_amount} requested",
                          requested_amount=Amount(application.requested_amount, application.unit)),
            "exceeds_request")])
    programme = await _programme(session, application.programme_id)
    held = application.approved_amount
    if programme.status != ProgrammeStatus.OPEN.value and (held is None or amount > held):
        raise ProgrammeNotOpen(msg("programme {code} is {status}", code=programme.code, status=Status(programme.status)),
                               current_status=programme.status)
    if amount > programme.max_per_voucher:
        raise ExceedsMaxPerVoucher(
            msg("{amount} exceeds the programme's maximum per voucher of {max_per_voucher}",
                amount=Amount(amount, programme.unit),
                max_per_voucher=Amount(programme.max_per_voucher, programme.unit)),
            max_per_voucher=programme.max_per_voucher,
        )
    details: dict[str, Any] = {"approved_amount": amount}
    period = period_key(programme.cap_period, programme.cap_timezone, now)
    if held is None:
        await _commit(session, programme, application.enterprise_id, period, amount,
                      f"application {application.id} approved", now)
        application.period_key = period
    elif amount > held and period != application.period_key:
        details["held_amount"], details["period_key"] = held, period
        await _recommit(session, programme, application, held, amount, period, now)
    else:
        details["held_amount"] = held
        assert application.period_key is not None
        if amount > held:
            await _commit(session, programme, application.enterprise_id, application.period_key, amount - held,
                          f"application {application.id} approved again for more", now)
        elif amount < held:
            await _uncommit(session, programme, application.enterprise_id, application.period_key, held - amount,
                            f"application {application.id} approved again for less", now)
    application.approved_amount = amount
    application.approved_at = now
    application.decided_at = now
    application.status_reason = note
    await _record(session, application, S.UNDER_REVIEW, S.APPROVED, actor, now, reason=note, details=details)
    ends = publicity_end(now, programme.publicity_days)
    if ends is None:
        await _issue(session, application, actor, programme, now, valid_from=now)
    else:
        application.publicity_ends_at = ends
        await _record(session, application, S.APPROVED, S.PUBLICITY, actor, now,
                      details={"publicity_ends_at": ends.isoformat()})
    await session.flush()
    return application


async def reject(
    session: AsyncSession, actor: Actor, application_id: uuid.UUID, reason: str, now: datetime
) -> Application:
    """Refuse an application under review, with the reason the enterprise will read. One an
    objection returned to review (the objection upheld) gives back the commitment it held."""
    application = await get_application(session, actor, application_id, for_update=True)
    check_transition(status_seen(application, now), S.REJECTED)
    released = await _release(session, application, now, "rejected")
    await _record(session, application, S(application.status), S.REJECTED, actor, now, reason=reason,
                  details=None if released is None else {"released_amount": released})
    application.status_reason = reason
    application.decided_at = now
    await session.flush()
    return application


async def lodge_objection(
    session: AsyncSession,
    actor: Actor,
    application_id: uuid.UUID,
    statement: str,
    objector: str | None,
    now: datetime,
) -> Application:
    """An objection during publicity stops it and returns the application to review, its
    commitment held while the office examines the objection: approving again keeps it,
    rejecting releases it. Lodged, an objection is not yet upheld (DESIGN: "objection upheld"
    releases): releasing at once had let other approvals take the budget meanwhile, so a
    baseless objection cost the applicant its award (an independent review). After the period
    it is too late: the voucher is issued (409 naming `issued`; revocation is the remedy then)."""
    application = await get_application(session, actor, application_id, for_update=True)
    check_transition(status_seen(application, now), S.UNDER_REVIEW)
    application.publicity_ends_at = None
    await _record(session, application, S.PUBLICITY, S.UNDER_REVIEW, actor, now, reason=statement,
                  details={"objector": objector, "held_amount": application.approved_amount})
    # The statement as received: its history step says it was an objection. An English prefix
    # had pushed a statement of the 2,000 characters allowed past the column's 2,000, and
    # PostgreSQL refused the objection (an independent review, December 2026).
    application.status_reason = statement
    application.decided_at = None
    await session.flush()
    return application


async def withdraw(
    session: AsyncSession, actor: Actor, application_id: uuid.UUID, reason: str | None, now: datetime
) -> Application:
    """The enterprise takes its application back while it is submitted or under review,
    freeing its contracts, and the commitment one returned to review by an objection held."""
    if actor.enterprise_id is None:
        raise Forbidden(msg("only the enterprise that applied can withdraw"))
    application = await get_application(session, actor, application_id, for_update=True)
    source = status_seen(application, now)
    check_transition(source, S.WITHDRAWN)
    released = await _release(session, application, now, "withdrawn")
    await _record(session, application, source, S.WITHDRAWN, actor, now, reason=reason,
                  details=None if released is None else {"released_amount": released})
    application.status_reason = reason
    application.decided_at = now
    await session.flush()
    return application


# -- issuance --------------------------------------------------------------------------------------


async def _issue(
    session: AsyncSession, application: Application, actor: Actor, programme: Programme, now: datetime,
    *, valid_from: datetime,
) -> None:
    amount, period = application.approved_amount, application.period_key
    assert amount is not None and period is not None
    voucher = await vouchers.issue_voucher(
        session, programme_id=programme.id, enterprise_id=application.enterprise_id, face_value=amount,
        now=now, valid_from=valid_from, application_id=application.id,
        reference=f"application {application.id}", commitment_period=period,
    )
    application.voucher_id = voucher.id
    application.issued_at = now
    await _record(session, application, S(application.status), S.ISSUED, actor, now,
                  details={"voucher_id": str(voucher.id), "voucher_code": voucher.code})


async def _complete(session: AsyncSession, application: Application, now: datetime,
                    also_period: str | None = None) -> None:
    programme = await _programme(session, application.programme_id)
    assert application.publicity_ends_at is not None and application.period_key is not None
    # Usage rows in ascending period order, all before the issue's budget lock.
    for key in sorted({application.period_key, also_period or application.period_key}):
        await vouchers.lock_cap(session, programme, application.enterprise_id, key)
    # Validity runs from the end of publicity, however late this runs.
    await _issue(session, application, SYSTEM, programme, now, valid_from=application.publicity_ends_at)


async def complete_publicity(session: AsyncSession, application_id: uuid.UUID, now: datetime,
                             also_period: str | None = None) -> int:
    """Issue the voucher of an application whose publicity ended without objection; 1 if this
    call issued it, 0 if it was not due or already issued. Idempotent under its row lock.
    `also_period`: the caller goes on to lock the enterprise's usage row of that period, so it
    is locked here, in its place in the lock order."""
    application = await repository.get(session, SYSTEM, application_id, for_update=True)
    if application is None or not is_due(application, now):
        return 0
    with audit.as_system():  # the period's end issues the voucher, whoever's read noticed it
        await _complete(session, application, now, also_period)
    await session.flush()
    return 1


async def due_publicity(session: AsyncSession, now: datetime, limit: int = 500) -> list[uuid.UUID]:
    return await repository.due_publicity(session, now, limit)


#: How many due vouchers one read writes before answering (the job takes the rest).
SETTLE_ON_READ = 50


async def settle_due(database: Database, actor: Actor, now: datetime, ids: list[uuid.UUID] | None = None) -> int:
    """Issue the vouchers of ended publicity periods the reader can see (or of `ids`), each in
    a transaction of its own, before a read answers: what a reader sees never depends on the
    job having run. A refused or lost item is left to the job and the reader sees it as
    issued-pending through `status_seen`; the read itself never fails for it."""
    if ids is None:
        async with database.unit_of_work(write=False) as session:
            ids = await repository.due_publicity(session, now, SETTLE_ON_READ, actor)
    done = 0
    for application_id in ids:
        try:
            async with database.unit_of_work() as session:
                done += await complete_publicity(session, application_id, now)
        except DomainError as exc:
            log.error("issuing application %s on read refused (%s); the job retries it", application_id, exc.code)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("issuing application %s on read lost a race; the winner issues it", application_id)
    return done


async def publicity_notice(
    session: AsyncSession, programme_id: uuid.UUID, now: datetime, page: PageRequest
) -> tuple[Programme, list[tuple[Application, Any]], str | None]:
    """The public 公示 list: applications of a published programme whose publicity runs now."""
    programme = await programmes.get_programme(session, _PUBLIC, programme_id)
    rows, cursor = await repository.publicity_page(session, programme.id, now, page)
    return programme, rows, cursor

