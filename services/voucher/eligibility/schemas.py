"""Request and response models of eligibility: verdicts, dry runs, published rule versions."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.voucher.i18n import msg
from services.voucher.instants import Day
from services.voucher.money import MAX_AMOUNT
from services.voucher.registry_schemas import Certification


class RuleResult(BaseModel):
    """One rule's verdict; combinators carry their children's."""

    rule: str = Field(description="The rule's id, or its JSON pointer in the rule set.")
    passed: bool
    reason: str = Field(description="In the language chosen by Accept-Language (zh-CN or English).")
    rules: list[RuleResult] | None = None


class Eligibility(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "version": 2, "passed": False,
        "result": {"rule": "/", "passed": False, "reason": "1 of 2 conditions not met", "rules": [
            {"rule": "region", "passed": True, "reason": "region 330110 is in 330110", "rules": None},
            {"rule": "no-blacklist", "passed": False, "reason": "dishonesty (失信) record on 2024-11-20",
             "rules": None}]},
        "failed": [{"rule": "no-blacklist", "passed": False, "reason": "dishonesty (失信) record on 2024-11-20",
                    "rules": None}],
    }]})

    version: int | None = Field(description="The programme's rule version that judged it; null in a dry run of given rules.")
    passed: bool
    result: RuleResult
    failed: list[RuleResult] = Field(description="The innermost failed rules, which explain a refusal.")

    @classmethod
    def from_record(cls, stored: dict[str, Any], language: str) -> Eligibility:
        """A stored verdict (both languages) in the one language the caller asked for."""
        outcome = stored["outcome"]
        return cls(
            version=stored["version"], passed=stored["passed"], result=_result(outcome, language),
            failed=[_result(leaf, language) for leaf in _failed_leaves(outcome)],
        )


def _result(record: dict[str, Any], language: str) -> RuleResult:
    children = record.get("rules")
    return RuleResult(
        rule=record["rule"], passed=record["passed"],
        reason=record["reason_zh"] if language == "zh" else record["reason_en"],
        rules=[_result(c, language) for c in children] if children else None,
    )


def _failed_leaves(record: dict[str, Any]) -> list[dict[str, Any]]:
    if record["passed"]:
        return []
    found = [leaf for child in record.get("rules") or [] for leaf in _failed_leaves(child)]
    return found or [record]


class EnterpriseFacts(BaseModel):
    """An enterprise's attributes as rules see them; any may be left out (a rule on a missing
    fact fails and says so)."""

    model_config = ConfigDict(extra="forbid")

    uscc: str | None = Field(default=None, max_length=18)
    region_code: str | None = Field(default=None, max_length=6)
    headcount: int | None = Field(default=None, ge=0, strict=True)
    annual_revenue: int | None = Field(default=None, ge=0, le=MAX_AMOUNT, strict=True)
    founded_on: Day | None = None
    industry_code: str | None = Field(default=None, max_length=16)
    certifications: list[Certification] = Field(default_factory=list, max_length=50)


class InlineFacts(BaseModel):
    """Facts to judge instead of an enterprise on file."""

    model_config = ConfigDict(extra="forbid")

    enterprise: EnterpriseFacts = Field(default_factory=lambda: EnterpriseFacts())
    blacklist_dates: list[date] = Field(default_factory=list, max_length=100)
    standing_blacklist_dates: list[date] = Field(
        default_factory=list, max_length=100,
        description="The days of the 失信 records not lifted by the day judged (`not_blacklisted`).")
    related_contracts: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=20,
        description="The numbers of the request's contracts with a related party of the enterprise "
                    "(`no_related_party_contracts`).")
    remaining_cap: int | None = Field(default=None, ge=0, le=MAX_AMOUNT, strict=True)


class DryRun(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "rules": {"all": [{"check": "region_in", "regions": ["330110"]},
                          {"check": "no_blacklist_within_years", "years": 3}]},
        "facts": {"enterprise": {"region_code": "330106"}, "blacklist_dates": ["2024-05-01"]},
        "requested_amount": 30_000_000,
    }]})

    rules: dict[str, Any] | None = Field(default=None, description="A rule set to try; else the programme's current one.")
    programme_id: uuid.UUID | None = None
    enterprise_id: uuid.UUID | None = None
    facts: InlineFacts | None = None
    requested_amount: int = Field(default=0, ge=0, le=MAX_AMOUNT, strict=True)
    application_date: Day | None = Field(default=None, description=(
        "Judge as of this day (default: today); an enterprise on file is judged by the cap left in that "
        "day's cap period."))

    @model_validator(mode="after")
    def _sources(self) -> DryRun:
        if self.rules is None and self.programme_id is None:
            raise ValueError(msg("give rules, or a programme_id whose current rules to run"))
        if (self.enterprise_id is None) == (self.facts is None):
            raise ValueError(msg("give exactly one of enterprise_id and facts"))
        return self


class RuleVersionPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "programme_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20", "version": 2,
        "rules": {"all": [{"id": "region", "check": "region_in", "regions": ["330110"]}]},
        "published_at": "2026-03-01T02:00:00Z",
    }]})

    programme_id: uuid.UUID
    version: int
    rules: dict[str, Any] | None
    published_at: datetime
