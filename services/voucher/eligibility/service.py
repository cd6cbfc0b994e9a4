"""Judging an enterprise against a programme's rules, and the operators' dry run.

The verdict is stored whole with the application (every rule, pass or fail, both languages),
so publishing a new rule version never changes what an earlier application was told.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.eligibility.rules import Facts, Outcome, RuleError, evaluate, validate
from services.voucher.enterprises import service as enterprises
from services.voucher.errors import EligibilityRulesInvalid, ValidationFailed, field_error
from services.voucher.i18n import msg
from services.voucher.programmes import service as programmes
from services.voucher.tables import Enterprise, Programme
from services.voucher.vouchers import service as vouchers

DEFAULT_ZONE = "Asia/Shanghai"
#: What a programme without rules is judged by: nothing to fail.
NO_RULES = msg("the programme sets no eligibility rules")


@dataclass(frozen=True)
class Verdict:
    version: int | None
    outcome: Outcome

    @property
    def passed(self) -> bool:
        return self.outcome.passed

    def stored(self) -> dict[str, Any]:
        """Both languages, for the record; responses pick one."""
        return {"version": self.version, "passed": self.passed, "outcome": outcome_record(self.outcome)}


def outcome_record(outcome: Outcome) -> dict[str, Any]:
    return {
        "rule": outcome.rule_id,
        "passed": outcome.passed,
        "reason_en": outcome.reason_en,
        "reason_zh": outcome.reason_zh,
        **({"rules": [outcome_record(c) for c in outcome.children]} if outcome.children else {}),
    }


def application_date(programme: Programme, now: datetime) -> date:
    """The day of the application in the programme's own time zone (Asia/Shanghai by default)."""
    return now.astimezone(ZoneInfo(programme.cap_timezone)).date()


def standing_on(enterprise: Enterprise, day: date) -> tuple[date, ...]:
    """The days of the enterprise's 失信 records that stand on `day`: recorded by then and not
    lifted by then (`not_blacklisted`)."""
    standing = []
    for record in enterprise.blacklist_records or []:
        recorded = date.fromisoformat(str(record["recorded_on"]))
        lifted = record.get("lifted_on")
        if recorded <= day and (lifted is None or date.fromisoformat(str(lifted)) > day):
            standing.append(recorded)
    return tuple(standing)


def enterprise_facts(enterprise: Enterprise) -> tuple[dict[str, Any], tuple[date, ...]]:
    attributes = {
        "uscc": enterprise.uscc,
        "region_code": enterprise.region_code,
        "headcount": enterprise.headcount,
        "annual_revenue": enterprise.annual_revenue,
        "founded_on": enterprise.founded_on,
        "industry_code": enterprise.industry_code,
        "certifications": list(enterprise.certifications or []),
    }
    # A record counts from the day it was made, lifted or not: "no record in the last N years".
    dates = tuple(date.fromisoformat(str(r["recorded_on"])) for r in enterprise.blacklist_records or [])
    return attributes, dates


def judge(rule_set: dict[str, Any] | None, version: int | None, facts: Facts) -> Verdict:
    """Rules are validated when saved; rules stored before that check existed are validated
    here too, so a bad one is a clear refusal, never a crash."""
    if rule_set is None:
        return Verdict(version, Outcome("/", True, NO_RULES))
    try:
        validate(rule_set)
    except RuleError as exc:
        problems = [msg("{pointer}: {problem}", pointer=pointer, problem=problem) for pointer, problem in exc.errors]
        raise EligibilityRulesInvalid(
            msg("eligibility rule version {version} cannot be evaluated ({problems}); nobody can be judged until "
                "an operator publishes a corrected version", version=version, problems=problems),
            version=version,
        ) from exc
    return Verdict(version, evaluate(rule_set, facts))


def judge_request(
    programme: Programme,
    enterprise: Enterprise,
    requested_amount: int,
    remaining_cap: int,
    now: datetime,
    related_contracts: tuple[str, ...] = (),
) -> Verdict:
    """The verdict of the programme's current rule version on this request; `related_contracts`
    are the numbers of its contracts with a related party (`no_related_party_contracts`)."""
    attributes, blacklist = enterprise_facts(enterprise)
    day = application_date(programme, now)
    facts = Facts(day, attributes, requested_amount, remaining_cap, blacklist,
                  standing_blacklist_dates=standing_on(enterprise, day), related_contracts=related_contracts,
                  unit=programme.unit)
    return judge(programme.eligibility_rules, programme.eligibility_version, facts)


async def dry_run(
    session: AsyncSession,
    actor: Actor,
    *,
    now: datetime,
    rules: dict[str, Any] | None,
    programme_id: uuid.UUID | None,
    enterprise_id: uuid.UUID | None,
    facts: dict[str, Any] | None,
    requested_amount: int,
    on: date | None,
) -> Verdict:
    """Evaluate a rule set (given, or a programme's current one) against an enterprise on file
    or against facts given inline. Nothing is stored."""
    programme = await programmes.get_programme(session, actor, programme_id) if programme_id else None
    version = None
    if rules is not None:
        try:
            validate(rules, saving=True)
        except RuleError as exc:
            raise ValidationFailed(
                [field_error(f"rules{pointer.rstrip('/')}", message, "eligibility_rule") for pointer, message in exc.errors]
            ) from exc
    elif programme is not None:
        rules, version = programme.eligibility_rules, programme.eligibility_version
    # Without a programme, the day is counted in Asia/Shanghai, every programme's default zone.
    day = on or (application_date(programme, now) if programme else now.astimezone(ZoneInfo(DEFAULT_ZONE)).date())
    remaining_cap: int | None = None
    related: tuple[str, ...] = ()  # an enterprise on file is judged with no contracts
    if enterprise_id is not None:
        enterprise = await enterprises.get_enterprise(session, actor, enterprise_id)
        attributes, blacklist = enterprise_facts(enterprise)
        standing = standing_on(enterprise, day)
        if programme is not None:
            # The cap left in the period of the day judged: as of a day in the next cap year, that
            # year's whole cap, as a submission that day is judged (it had been this period's).
            at = now if on is None else datetime.combine(on, time(), ZoneInfo(programme.cap_timezone))
            remaining_cap = (await vouchers.remaining_cap(session, programme, enterprise.id, at))[1]
    else:
        given = facts or {}
        attributes = dict(given.get("enterprise") or {})
        blacklist = tuple(given.get("blacklist_dates") or ())
        standing = tuple(given.get("standing_blacklist_dates") or ())
        related = tuple(given.get("related_contracts") or ())
        if given.get("remaining_cap") is not None:
            remaining_cap = given["remaining_cap"]
        elif programme is not None:
            remaining_cap = programme.enterprise_cap
    # The request's amounts are in the programme's unit; with no programme, no unit is known.
    unit = programme.unit if programme is not None else None
    return judge(rules, version, Facts(day, attributes, requested_amount, remaining_cap, blacklist,
                                       standing_blacklist_dates=standing, related_contracts=related, unit=unit))
