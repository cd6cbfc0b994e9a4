"""Programme use cases: create, read, update (money terms freeze on opening), transitions,
provider enrolment."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.audit import service as audit
from services.voucher.db import PageRequest
from services.voucher.errors import (
    AlreadyExists,
    EnrolmentClosed,
    InvalidTransition,
    NotFound,
    ProviderKindMismatch,
    ValidationFailed,
    field_error,
)
from services.voucher.i18n import Amount, Message, Status, msg
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind
from services.voucher.programmes import repository
from services.voucher.programmes.rules import (
    ProgrammeStatus,
    check_editable,
    check_transition,
    term_problems,
)
from services.voucher.providers import service as providers
from services.voucher.tables import EligibilityRuleVersion, Programme, ProgrammeEnrolment

_TERM_FIELDS = (
    "name description kind unit mode budget_total rate_table tiers stacking_ceiling_bps "
    "enterprise_cap cap_period cap_timezone max_per_voucher application_opens_at "
    "application_closes_at voucher_validity_days publicity_days hold_ttl_seconds "
    "expiry_disposition eligibility_rules application_requires_contract"
).split()


def _validate(terms: dict[str, Any], *, new_rules: bool = True, forgiven: frozenset[tuple[str, str, str]] = frozenset()) -> None:
    problems = [(f, m) for f, m in term_problems(terms, new_rules=new_rules) if _problem_key(f, m) not in forgiven]
    if problems:
        raise ValidationFailed([field_error(f, m, "programme_terms") for f, m in problems])


def _problem_key(field: str, message: Message) -> tuple[str, str, str]:
    return field, message.template, repr(sorted(message.params.items()))


def _validate_change(stored: dict[str, Any], changed: dict[str, Any]) -> None:
    """Refuse the problems a change brings, not those its programme was saved with before a
    check was tightened: an open programme's money terms cannot change, so one saved with a
    tier of no categories (read as written) had every edit refused, a new closing date or its
    description too, with nothing the office could do (an independent review, December 2026)."""
    new_rules = "eligibility_rules" in changed
    # Only a problem of a field the change leaves as it is: one the change rewrites is judged
    # afresh (a new rule set, or new tiers, with the old fault again is refused).
    forgiven = frozenset(_problem_key(f, m) for f, m in term_problems(stored, new_rules=new_rules)
                         if f.split("/")[0] not in changed)
    _validate({**stored, **changed}, new_rules=new_rules, forgiven=forgiven)


def _terms(programme: Programme) -> dict[str, Any]:
    return {f: getattr(programme, f) for f in _TERM_FIELDS}


async def create_programme(session: AsyncSession, data: dict[str, Any], now: datetime) -> Programme:
    """A new programme, in draft; its terms must be complete and consistent."""
    _validate(data)
    if await repository.code_taken(session, data["code"]):
        raise AlreadyExists(msg("a programme with code {code} already exists", code=repr(data["code"])))
    programme = Programme(**data, status=ProgrammeStatus.DRAFT.value, created_at=now, updated_at=now)
    await repository.add(session, programme)
    await repository.add(session, _rule_version(programme, now))
    await audit.record(session, "programme.created", "programme", programme.id, now=now,
                       after={**_terms(programme), "code": programme.code, "status": programme.status},
                       programme_id=programme.id, rule_version=programme.eligibility_version)
    return programme


def _rule_version(programme: Programme, now: datetime) -> EligibilityRuleVersion:
    return EligibilityRuleVersion(
        programme_id=programme.id, version=programme.eligibility_version,
        rules=programme.eligibility_rules, published_at=now,
    )


async def get_programme(
    session: AsyncSession, actor: Actor, programme_id: uuid.UUID, *, for_update: bool = False,
    for_share: bool = False,
) -> Programme:
    """`for_share`: a change under the programme's terms holds it shared, so that closing it
    (an exclusive lock) waits for the change to commit."""
    programme = await repository.get(session, actor, programme_id, for_update=for_update, for_share=for_share)
    if programme is None:
        raise NotFound(msg("no programme with id {programme_id}", programme_id=programme_id))
    return programme


async def list_programmes(
    session: AsyncSession,
    actor: Actor,
    page: PageRequest,
    *,
    status: str | None = None,
    kind: str | None = None,
) -> tuple[list[Programme], str | None]:
    rows, cursor = await repository.list_page(session, actor, page, status=status, kind=kind)
    return list(rows), cursor


async def update_programme(
    session: AsyncSession,
    actor: Actor,
    programme_id: uuid.UUID,
    changes: dict[str, Any],
    *,
    check_version: Any,
    now: datetime,
) -> Programme:
    """Apply a partial update under a row lock, after the caller's ETag check.

    Fields sent with their current value count as unchanged, so re-sending a whole document
    does not trip the freeze on money terms.
    """
    programme = await get_programme(session, actor, programme_id, for_update=True)
    check_version(programme.version)
    changed = {k: v for k, v in changes.items() if getattr(programme, k) != v}
    check_editable(ProgrammeStatus(programme.status), set(changed))
    if not changed:
        return programme
    if "kind" in changed:
        # Its enrolled providers must offer the new kind, as at enrolment (the same review): their
        # rows are read under a shared lock, so none drops the kind meanwhile.
        kind = str(changed["kind"])  # a StrEnum member is its value
        lacking = await repository.enrolled_providers_lacking(session, programme.id, kind)
        if lacking:
            raise ProviderKindMismatch(
                msg("providers enrolled in this programme do not offer {kind}: {providers}; withdraw them first",
                    kind=kind, providers=[name for _, name in lacking]),
                provider_ids=[str(provider_id) for provider_id, _ in lacking])
    _validate_change(_terms(programme), changed)
    before = {k: getattr(programme, k) for k in changed}
    for field, value in changed.items():
        setattr(programme, field, value)
    if "eligibility_rules" in changed:
        # A new version; applications keep the version (and the verdict) they were judged by.
        programme.eligibility_version += 1
        await repository.add(session, _rule_version(programme, now))
    programme.version += 1
    programme.updated_at = now
    await session.flush()
    await audit.record(session, "programme.updated", "programme", programme.id, now=now, before=before,
                       after=changed, programme_id=programme.id,
                       rule_version=programme.eligibility_version if "eligibility_rules" in changed else None)
    return programme


async def rule_versions(
    session: AsyncSession, actor: Actor, programme_id: uuid.UUID, page: PageRequest
) -> tuple[list[EligibilityRuleVersion], str | None]:
    """Every rule set the programme has published, oldest first."""
    await get_programme(session, actor, programme_id)
    return await repository.rule_versions_page(session, programme_id, page)


async def rule_version(
    session: AsyncSession, actor: Actor, programme_id: uuid.UUID, version: int
) -> EligibilityRuleVersion:
    await get_programme(session, actor, programme_id)
    found = await repository.rule_version(session, programme_id, version)
    if found is None:
        raise NotFound(msg("programme {programme_id} has no eligibility rule version {version}",
                           programme_id=programme_id, version=version))
    return found


async def transition(
    session: AsyncSession,
    actor: Actor,
    programme_id: uuid.UUID,
    target: ProgrammeStatus,
    now: datetime,
    *,
    reason: str | None = None,
) -> Programme:
    """draft → open → closed → archived, nothing else; the office's `reason`, if it gave one, is
    kept in the audit event."""
    programme = await get_programme(session, actor, programme_id, for_update=True)
    check_transition(ProgrammeStatus(programme.status), target)
    if target is ProgrammeStatus.ARCHIVED:
        # Approvals still in publicity are honoured after closing; archiving waits for them.
        accounts = await ledger.programme_accounts(session, programme.id)
        committed_id = accounts[AccountKind.PROGRAMME_COMMITTED]
        committed = (await ledger.balances(session, [committed_id]))[committed_id]
        pending = await repository.open_applications(session, programme.id)
        if committed or pending:
            raise InvalidTransition(
                msg("{pending} application(s) are still open ({committed} committed to their approvals); "
                    "archive the programme once every application is decided and every voucher issued",
                    pending=pending, committed=Amount(committed, programme.unit)),
                current_status=programme.status, committed=committed, open_applications=pending,
            )
        # An archived programme is a closed book: nothing left to spend, nothing left to pay.
        live, due = await repository.live_vouchers(session, programme.id, now)
        # payee by payee: one owed and one owing back (a refund after payment) both count
        owed = await ledger.open_balance(
            session, programme.id, [AccountKind.PROVIDER_PAYABLE, AccountKind.ENTERPRISE_PAYABLE])
        if live or owed:
            detail = msg("{live} voucher(s) are neither expired nor revoked, and {owed} is still to be settled with "
                         "providers or enterprises; archive the programme once every voucher has expired or been "
                         "revoked and every settlement and claim is paid",
                         live=live, owed=Amount(owed, programme.unit))
            if due:
                detail = msg("{refusal} ({due} of the vouchers are past their validity and read as expired, but the "
                             "worker has not yet posted their expiry; it does so on its next round, or run "
                             "`voucher jobs run-once expire-vouchers`)", refusal=detail, due=due)
            raise InvalidTransition(detail, current_status=programme.status, live_vouchers=live, unpaid=owed,
                                    expiry_not_posted=due)
        settlements = await repository.open_settlements(session, programme.id)
        claims = await repository.open_claims(session, programme.id)
        captures, refunds = await repository.unsettled(session, programme.id)
        if settlements or claims or captures or refunds:
            # An approved settlement can still be paid after its lines' refunds brought the payable
            # to nothing, and a capture refunded in full before any settlement nets it to nothing
            # while a settlement of the capture's day would still pay it: two reviews archived
            # such programmes and then paid 300,000 out of them.
            raise InvalidTransition(
                msg("{settlements} settlement(s) and {claims} claim(s) are neither paid nor ended, and {n_captures} "
                    "capture(s) and {n_refunds} refund(s) are in no settlement, though they may net to nothing; archive "
                    "the programme once each settlement is paid or cancelled, each claim paid or rejected and every "
                    "capture and refund settled (the monthly job drafts months no settlement covered; the period of a cancelled "
                    "settlement is the office's to settle again, and the reconciliation lists its captures)",
                    settlements=settlements, claims=claims, n_captures=captures, n_refunds=refunds),
                current_status=programme.status, open_settlements=settlements, open_claims=claims,
                unsettled_captures=captures, unsettled_refunds=refunds,
            )
    before = programme.status
    programme.status = target.value
    if target is ProgrammeStatus.OPEN:
        # The budget becomes spendable only now, as one funding movement in the ledger.
        await ledger.open_programme_accounts(
            session, programme.id, programme.unit, programme.budget_total, now
        )
    stamp = {ProgrammeStatus.OPEN: "opened_at", ProgrammeStatus.CLOSED: "closed_at",
             ProgrammeStatus.ARCHIVED: "archived_at"}[target]
    setattr(programme, stamp, now)
    programme.version += 1
    programme.updated_at = now
    await session.flush()
    await audit.record(session, f"programme.{target.value}", "programme", programme.id, now=now,
                       before={"status": before},
                       after={"status": programme.status, **({"reason": reason} if reason else {})},
                       programme_id=programme.id)
    return programme


async def enrol_provider(
    session: AsyncSession, actor: Actor, programme_id: uuid.UUID, provider_id: uuid.UUID, now: datetime
) -> tuple[ProgrammeEnrolment, bool]:
    """Enrol a provider (again) in a draft or open programme; (enrolment, newly enrolled)."""
    programme = await get_programme(session, actor, programme_id, for_update=True)
    if programme.status not in (ProgrammeStatus.DRAFT.value, ProgrammeStatus.OPEN.value):
        raise EnrolmentClosed(
            msg("programme is {status}: providers can no longer be enrolled", status=Status(programme.status)),
            current_status=programme.status,
        )
    # The provider's row is held (shared) to the commit, and read after: a change of its kinds
    # waits, and then finds this enrolment.
    await repository.hold_provider(session, provider_id)
    provider = await providers.get_provider(session, actor, provider_id)
    if programme.kind not in provider.kinds:
        raise ProviderKindMismatch(
            msg("provider offers {kinds}, not {kind}; it cannot serve this programme",
                kinds=[Status(k) for k in provider.kinds] or msg("nothing"), kind=Status(programme.kind))
        )
    enrolment = await repository.enrolment(session, programme_id, provider_id, for_update=True)
    if enrolment is None:
        enrolment = ProgrammeEnrolment(programme_id=programme_id, provider_id=provider_id, enrolled_at=now)
        await repository.add(session, enrolment)
        await _enrolment_event(session, "programme.provider_enrolled", enrolment, None, now)
        return enrolment, True
    if enrolment.withdrawn_at is not None:
        before = {"enrolled_at": enrolment.enrolled_at, "withdrawn_at": enrolment.withdrawn_at}
        enrolment.enrolled_at = now
        enrolment.withdrawn_at = None
        await session.flush()
        await _enrolment_event(session, "programme.provider_enrolled", enrolment, before, now)
        return enrolment, True
    return enrolment, False


async def _enrolment_event(
    session: AsyncSession, action: str, enrolment: ProgrammeEnrolment, before: dict[str, Any] | None,
    now: datetime,
) -> None:
    await audit.record(session, action, "enrolment", enrolment.id, now=now, before=before,
                       after={"enrolled_at": enrolment.enrolled_at, "withdrawn_at": enrolment.withdrawn_at},
                       programme_id=enrolment.programme_id, provider_id=enrolment.provider_id)


async def withdraw_provider(
    session: AsyncSession, actor: Actor, programme_id: uuid.UUID, provider_id: uuid.UUID, now: datetime
) -> ProgrammeEnrolment:
    """End an enrolment; the row stays as history. An archived programme is a closed book: its
    enrolments are not changed (a review found a withdrawal recorded on one)."""
    # Read without a lock: the programme's row is not held against every redeem's foreign-key
    # check for a withdrawal (a review of this check); one racing the archiving is harmless.
    programme = await get_programme(session, actor, programme_id)
    if programme.status == ProgrammeStatus.ARCHIVED.value:
        raise EnrolmentClosed(msg("programme is {status}: its enrolments are history", status=Status(programme.status)),
                              current_status=programme.status)
    enrolment = await repository.enrolment(session, programme_id, provider_id, for_update=True)
    if enrolment is None or enrolment.withdrawn_at is not None:
        raise NotFound(msg("provider {provider_id} is not enrolled in programme {programme_id}",
                           provider_id=provider_id, programme_id=programme_id))
    before = {"enrolled_at": enrolment.enrolled_at, "withdrawn_at": None}
    enrolment.withdrawn_at = now
    await session.flush()
    await _enrolment_event(session, "programme.provider_withdrawn", enrolment, before, now)
    return enrolment


async def list_enrolments(
    session: AsyncSession, actor: Actor, programme_id: uuid.UUID, page: PageRequest, *, active_only: bool
) -> tuple[list[tuple[ProgrammeEnrolment, str]], str | None]:
    await get_programme(session, actor, programme_id)
    return await repository.enrolments_page(session, programme_id, page, active_only=active_only)
