"""Programme request and response models."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, field_validator

from services.voucher.i18n import msg
from services.voucher.instants import Instant
from services.voucher.money import MAX_AMOUNT, MINOR_UNITS, Unit
from services.voucher.programmes.rules import (
    CapPeriod,
    ExpiryDisposition,
    PayoutMode,
    ProgrammeKind,
    ProgrammeStatus,
)
from services.voucher.registry_schemas import NameText, NoteText, PatchModel, WrittenText

CATEGORY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}:[a-z0-9_]{1,32}$")
#: Amounts and rates are JSON integers, strictly: `true` is not 1 fen and 3000.0 is not 3000 bps.
Amount = Field(ge=1, le=MAX_AMOUNT, strict=True)
Bps = Field(ge=0, le=10_000, strict=True)

HANGZHOU_EXAMPLE: dict[str, Any] = {
    "code": "yuhang-2026-compute",
    "name": "Yuhang 2026 compute voucher",
    "description": "30 % of compute on domestic accelerators, 20 % on others.",
    "kind": "compute",
    "unit": "CNY",
    "mode": "provider_redemption",
    "budget_total": 25_000_000_000,
    "rate_table": {"accelerator:domestic": 3000, "accelerator:other": 2000},
    "tiers": [{"spend_up_to": 50_000_000, "rate_bps": 5000, "categories": None}],
    "stacking_ceiling_bps": 6000,
    "enterprise_cap": 800_000_000,
    "cap_period": "calendar_year",
    "cap_timezone": "Asia/Shanghai",
    "max_per_voucher": 800_000_000,
    "application_opens_at": "2026-01-01T00:00:00Z",
    "application_closes_at": "2026-12-31T16:00:00Z",
    "voucher_validity_days": 365,
    "publicity_days": 5,
    "hold_ttl_seconds": 1800,
    "expiry_disposition": "pool",
    "eligibility_rules": {"all": [
        {"id": "region", "check": "region_in", "regions": ["330110"]},
        {"id": "founded", "check": "founded_at_least_years", "years": 1},
        {"id": "no-blacklist", "check": "no_blacklist_within_years", "years": 3},
        {"id": "within-cap", "check": "requested_within_remaining_cap"},
    ]},
    "application_requires_contract": False,
}


class Tier(BaseModel):
    """While the enterprise's subsidised spend this period is at most `spend_up_to`, line items
    of `categories` (all when null) get `rate_bps` instead of the table rate."""

    model_config = ConfigDict(extra="forbid")

    spend_up_to: int = Amount
    rate_bps: int = Bps
    categories: list[str] | None = Field(default=None, description="The line-item categories the tier's rate "
                                         "applies to, at least one; null for every category.")


def _check_rate_table(value: dict[str, StrictInt]) -> dict[str, StrictInt]:
    if not value:
        raise ValueError(msg("at least one line-item category must be subsidised"))
    for category, rate in value.items():
        if not CATEGORY_PATTERN.match(category):
            raise ValueError(
                msg("category {category} must look like 'group:name', e.g. 'accelerator:domestic'",
                    category=repr(category))
            )
        if isinstance(rate, bool) or not 0 <= rate <= 10_000:
            raise ValueError(msg("rate for {category} must be 0..10000 basis points", category=repr(category)))
    return value


_OPENS = "Applications are taken from this instant on (inclusive)."
_CLOSES = ("Applications are taken until this instant (exclusive): midnight that ends the last day, e.g. "
           "2026-12-31T16:00:00Z for the end of 31 December in Beijing.")


class ProgrammeTerms(BaseModel):
    """Fields shared by create and the public view."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    kind: ProgrammeKind
    unit: Unit = Unit.CNY
    mode: PayoutMode = PayoutMode.PROVIDER_REDEMPTION
    budget_total: int = Field(
        ge=1, le=MAX_AMOUNT, strict=True, description=f"In the minor unit of the programme's `unit` ({MINOR_UNITS})."
    )
    rate_table: dict[str, StrictInt] = Field(
        description="Subsidy rate per line-item category, in basis points (3000 = 30 %)."
    )
    tiers: list[Tier] = Field(default_factory=list, max_length=10)
    stacking_ceiling_bps: int = Field(
        default=10_000, ge=0, le=10_000, strict=True,
        description="All vouchers' subsidies on one order never exceed this share of it.",
    )
    enterprise_cap: int = Field(
        ge=1, le=MAX_AMOUNT, strict=True, description="Per enterprise per cap period."
    )
    cap_period: CapPeriod = CapPeriod.CALENDAR_YEAR
    cap_timezone: str = Field(default="Asia/Shanghai", max_length=64)
    max_per_voucher: int = Field(ge=1, le=MAX_AMOUNT, strict=True)
    # As stored: a programme saved before its input was bounded still reads (ProgrammeCreate
    # bounds what is saved now).
    application_opens_at: AwareDatetime | None = Field(default=None, description=_OPENS)
    application_closes_at: AwareDatetime | None = Field(default=None, description=_CLOSES)
    voucher_validity_days: int = Field(default=365, ge=1, le=3650, strict=True)
    publicity_days: int = Field(default=5, ge=0, le=90, strict=True, description="公示期; 0 means none.")
    hold_ttl_seconds: int = Field(default=1800, ge=60, le=7 * 24 * 3600, strict=True)
    expiry_disposition: ExpiryDisposition = ExpiryDisposition.POOL
    eligibility_rules: dict[str, Any] | None = Field(
        default=None,
        description="The eligibility rule set (see the eligibility rule language in the docs); "
        "validated on save, each change publishes a new version. Null: every enterprise is eligible.",
        json_schema_extra={"examples": [{"all": [{"check": "region_in", "regions": ["330110"]},
                                                 {"check": "no_blacklist_within_years", "years": 3}]}]},
    )
    application_requires_contract: bool = Field(
        default=False, description="Applications must name at least one contract with a provider."
    )

    _rate_table = field_validator("rate_table")(_check_rate_table)


#: Names the time-zone database holds that are not a place's time: the host's own setting
#: (`localtime`, a link to /etc/localtime), a placeholder (`Factory`) and leap-second variants.
#: A programme's cap periods must not depend on the machine that serves it (a review had
#: `cap_timezone: "localtime"` accepted).
_NOT_PLACES = frozenset({"localtime", "Factory", "posixrules"})


@cache
def _zone_names() -> frozenset[str]:
    from zoneinfo import available_timezones

    return frozenset(name for name in available_timezones()
                     if name not in _NOT_PLACES and not name.startswith(("posix/", "right/")))


def _known_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(msg("unknown time zone {zone}", zone=repr(value))) from exc
    if value not in _zone_names():
        raise ValueError(msg("unknown time zone {zone}", zone=repr(value)))
    return value


class ProgrammeCreate(ProgrammeTerms):
    # What is saved is checked as input: the window within 1970–9000 and the zone a place's. A
    # stored programme is read as it is (ProgrammePublic checks neither: a programme saved before
    # a check was tightened must still read, never answer 500).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [HANGZHOU_EXAMPLE]})

    name: NameText = Field(min_length=1, max_length=200)
    description: NoteText = Field(default="", max_length=4000)
    application_opens_at: Instant | None = Field(default=None, description=_OPENS)
    application_closes_at: Instant | None = Field(default=None, description=_CLOSES)

    @field_validator("cap_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _known_zone(value)

    code: str = Field(
        min_length=3, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Stable short identifier, e.g. 'yuhang-2026-compute'.",
    )


class ProgrammeUpdate(PatchModel):
    """Only the fields sent are changed. Money terms are frozen once the programme is open."""

    nullable = frozenset({"application_opens_at", "application_closes_at", "eligibility_rules"})
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"description": "Window extended to the end of January.",
                                         "application_closes_at": "2027-01-31T16:00:00Z"}]},
    )

    name: NameText | None = Field(default=None, min_length=1, max_length=200)
    description: NoteText | None = Field(default=None, max_length=4000)
    kind: ProgrammeKind | None = None
    unit: Unit | None = None
    mode: PayoutMode | None = None
    budget_total: int | None = Field(default=None, ge=1, le=MAX_AMOUNT, strict=True)
    rate_table: dict[str, StrictInt] | None = None
    tiers: list[Tier] | None = Field(default=None, max_length=10)
    stacking_ceiling_bps: int | None = Field(default=None, ge=0, le=10_000, strict=True)
    enterprise_cap: int | None = Field(default=None, ge=1, le=MAX_AMOUNT, strict=True)
    cap_period: CapPeriod | None = None
    cap_timezone: str | None = Field(default=None, max_length=64)
    max_per_voucher: int | None = Field(default=None, ge=1, le=MAX_AMOUNT, strict=True)
    application_opens_at: Instant | None = None
    application_closes_at: Instant | None = None
    voucher_validity_days: int | None = Field(default=None, ge=1, le=3650, strict=True)
    publicity_days: int | None = Field(default=None, ge=0, le=90, strict=True)
    hold_ttl_seconds: int | None = Field(default=None, ge=60, le=7 * 24 * 3600, strict=True)
    expiry_disposition: ExpiryDisposition | None = None
    eligibility_rules: dict[str, Any] | None = None
    application_requires_contract: bool | None = None

    @field_validator("rate_table")
    @classmethod
    def _rates(cls, value: dict[str, StrictInt] | None) -> dict[str, StrictInt] | None:
        return None if value is None else _check_rate_table(value)

    @field_validator("cap_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _known_zone(value)


class ProgrammePublic(ProgrammeTerms):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **HANGZHOU_EXAMPLE,
                    "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20",
                    "status": "open",
                    "version": 2,
                    "eligibility_version": 1,
                    "created_at": "2026-11-26T06:00:00Z",
                    "updated_at": "2026-11-26T06:05:00Z",
                    "opened_at": "2026-11-26T06:05:00Z",
                    "closed_at": None,
                    "archived_at": None,
                }
            ]
        }
    )

    id: uuid.UUID
    code: str
    status: ProgrammeStatus
    version: int
    eligibility_version: int
    created_at: datetime
    updated_at: datetime
    opened_at: datetime | None
    closed_at: datetime | None
    archived_at: datetime | None


class Transition(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "budget used up"}]})

    reason: WrittenText | None = Field(default=None, min_length=1, max_length=500)


class EnrolmentPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "programme_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20",
                    "provider_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e13",
                    "provider_name": "Hangzhou Compute Co.",
                    "enrolled_at": "2026-11-26T06:00:00Z",
                    "withdrawn_at": None,
                    "is_active": True,
                }
            ]
        }
    )

    programme_id: uuid.UUID
    provider_id: uuid.UUID
    provider_name: str
    enrolled_at: datetime
    withdrawn_at: datetime | None
    is_active: bool
