"""Eligibility over HTTP: operators dry-run rule sets; everyone who reads a programme reads
every rule version it published."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.eligibility import service
from services.voucher.eligibility.schemas import DryRun, Eligibility, RuleVersionPublic
from services.voucher.http.auth import require
from services.voucher.http.deps import Now, Session
from services.voucher.http.language import Language
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.programmes import service as programmes
from services.voucher.tables import EligibilityRuleVersion

router = APIRouter(tags=["eligibility"])
Reviewer = Annotated[Actor, Depends(require(Scope.APPLICATIONS_REVIEW))]
Reader = Annotated[Actor, Depends(require(Scope.PROGRAMMES_READ))]


def _version(row: EligibilityRuleVersion) -> RuleVersionPublic:
    return RuleVersionPublic(programme_id=row.programme_id, version=row.version, rules=row.rules,
                             published_at=row.published_at)


@router.post(
    "/v1/eligibility/dry-run",
    operation_id="dry_run_eligibility",
    summary="Evaluate a rule set against an enterprise, or against facts given inline; nothing is stored",
    description="The programme office (`applications:review`) tries a rule set before publishing it (or a "
    "programme's current one) against a registered enterprise or facts given inline, for an amount and a day. "
    "Answers the verdict rule by rule, reasons in the Accept-Language; it stores and records nothing. Refused with "
    "`not_found` (programme or enterprise), `eligibility_rules_invalid` (the rule set cannot be evaluated) or "
    "`validation_failed`.",
    response_model=Eligibility,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.EligibilityRulesInvalid, errors.ValidationFailed),
)
async def dry_run(body: DryRun, session: Session, now: Now, actor: Reviewer, language: Language,
                  response: Response) -> Eligibility:
    facts = body.facts.model_dump(mode="python") if body.facts else None
    verdict = await service.dry_run(
        session, actor, now=now, rules=body.rules, programme_id=body.programme_id,
        enterprise_id=body.enterprise_id, facts=facts, requested_amount=body.requested_amount,
        on=body.application_date,
    )
    response.headers["Content-Language"] = "zh-CN" if language == "zh" else "en"
    return Eligibility.from_record(verdict.stored(), language)


@router.get(
    "/v1/programmes/{programme_id}/eligibility-rules",
    operation_id="list_eligibility_rule_versions",
    summary="Every eligibility rule version a programme has published, oldest first",
    description="Any key with `programmes:read`, for a programme it may see: version 1 from its creation and one "
    "more for each change of its rules, oldest first. Changes nothing. Answers `not_found` for a programme you "
    "cannot see and `invalid_cursor` for a cursor this service did not issue.",
    response_model=Page[RuleVersionPublic],
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidCursor),
)
async def list_rule_versions(programme_id: uuid.UUID, session: Session, actor: Reader,
                             page: Paging) -> Page[RuleVersionPublic]:
    rows, cursor = await programmes.rule_versions(session, actor, programme_id, page)
    return Page(items=[_version(r) for r in rows], next_cursor=cursor)


@router.get(
    "/v1/programmes/{programme_id}/eligibility-rules/{version}",
    operation_id="get_eligibility_rule_version",
    summary="One published eligibility rule version (what an application was judged by)",
    description="Any key with `programmes:read`, for a programme it may see: the rule set an application's verdict "
    "names. Changes nothing. Answers `not_found` for an unknown programme or version.",
    response_model=RuleVersionPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_rule_version(programme_id: uuid.UUID,
                           version: Annotated[int, Path(ge=-(2**31), le=2**31 - 1, description="The rule set's version.")],
                           session: Session, actor: Reader) -> RuleVersionPublic:
    return _version(await programmes.rule_version(session, actor, programme_id, version))
