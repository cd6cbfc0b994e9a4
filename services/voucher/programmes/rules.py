"""Programme rules: kinds, modes, the status machine and which terms freeze when it opens. Pure."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from services.voucher.eligibility import rules as eligibility
from services.voucher.errors import InvalidTransition, TermsFrozen
from services.voucher.i18n import Message, Status, msg
from services.voucher.money import Unit


class ProgrammeKind(StrEnum):
    COMPUTE = "compute"
    MODEL = "model"


class PayoutMode(StrEnum):
    PROVIDER_REDEMPTION = "provider_redemption"
    ENTERPRISE_CLAIM = "enterprise_claim"


class ProgrammeStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"
    ARCHIVED = "archived"


class CapPeriod(StrEnum):
    CALENDAR_YEAR = "calendar_year"
    CALENDAR_QUARTER = "calendar_quarter"
    CALENDAR_MONTH = "calendar_month"
    PROGRAMME = "programme"  # one cap over the programme's whole life


class ExpiryDisposition(StrEnum):
    """Where a voucher's unused value goes when it expires."""

    POOL = "pool"  # back to the programme's budget
    BREAKAGE = "breakage"  # recognised as breakage, not reusable


#: The units a programme of each kind may grant.
UNITS_BY_KIND: dict[ProgrammeKind, frozenset[Unit]] = {
    ProgrammeKind.COMPUTE: frozenset({Unit.CNY, Unit.GPU_HOUR}),
    ProgrammeKind.MODEL: frozenset({Unit.CNY, Unit.TOKEN}),
}

#: Line-item category groups ("group:name") a programme of each kind may subsidise.
CATEGORY_GROUPS_BY_KIND: dict[ProgrammeKind, frozenset[str]] = {
    ProgrammeKind.COMPUTE: frozenset({"accelerator", "storage", "network"}),
    ProgrammeKind.MODEL: frozenset({"model"}),
}

TRANSITIONS: dict[ProgrammeStatus, frozenset[ProgrammeStatus]] = {
    ProgrammeStatus.DRAFT: frozenset({ProgrammeStatus.OPEN}),
    ProgrammeStatus.OPEN: frozenset({ProgrammeStatus.CLOSED}),
    ProgrammeStatus.CLOSED: frozenset({ProgrammeStatus.ARCHIVED}),
    ProgrammeStatus.ARCHIVED: frozenset(),
}

#: The money terms: fixed from the moment a programme opens, because vouchers, holds and
#: settlements are computed from them and must stay explainable afterwards.
MONEY_TERMS: frozenset[str] = frozenset(
    {
        "kind",
        "unit",
        "mode",
        "budget_total",
        "rate_table",
        "tiers",
        "stacking_ceiling_bps",
        "enterprise_cap",
        "cap_period",
        "cap_timezone",
        "max_per_voucher",
        "voucher_validity_days",
        "expiry_disposition",
    }
)

#: What may still change once open; once closed only the description; archived: nothing.
EDITABLE_WHEN: dict[ProgrammeStatus, frozenset[str] | None] = {
    ProgrammeStatus.DRAFT: None,  # everything
    ProgrammeStatus.OPEN: frozenset(
        {"name", "description", "application_closes_at", "publicity_days", "hold_ttl_seconds",
         "eligibility_rules", "application_requires_contract"}
    ),
    ProgrammeStatus.CLOSED: frozenset({"name", "description"}),
    ProgrammeStatus.ARCHIVED: frozenset(),
}


def check_transition(current: ProgrammeStatus, target: ProgrammeStatus) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(
            msg("a programme cannot go from {current} to {target}",
                current=Status(current.value), target=Status(target.value)),
            current_status=current.value,
            allowed=sorted(s.value for s in TRANSITIONS[current]),
        )


def check_editable(status: ProgrammeStatus, fields: set[str]) -> None:
    allowed = EDITABLE_WHEN[status]
    if allowed is None:
        return
    frozen = sorted(fields - allowed)
    if frozen:
        raise TermsFrozen(
            msg("programme is {status}: {fields} can no longer be changed", status=Status(status),
                fields=frozen),
            current_status=status.value,
            fields=frozen,
        )


def category_group(category: str) -> str:
    return category.split(":", 1)[0]


def term_problems(terms: dict[str, object], *, new_rules: bool = True) -> list[tuple[str, Message]]:
    """Cross-field checks on a programme's complete terms: (field, message) per problem.

    Run on create and on every update (against the merged result), so a programme can never
    be saved in a state that later computations would have to guess about. `new_rules`: the
    eligibility rules are being saved, so each rule must also be named once (rules saved before
    that check are left as they are by an update of other terms).
    """
    problems: list[tuple[str, Message]] = []
    kind = ProgrammeKind(str(terms["kind"]))
    unit = Unit(str(terms["unit"]))
    if unit not in UNITS_BY_KIND[kind]:
        allowed = sorted(u.value for u in UNITS_BY_KIND[kind])
        problems.append(("unit", msg("a {kind} programme grants {allowed}, not {unit}",
                                     kind=Status(kind.value), allowed=allowed, unit=unit)))
    if terms.get("mode") == PayoutMode.ENTERPRISE_CLAIM.value and unit is not Unit.CNY:
        # The enterprise paid the provider in money, and is paid back in money: a claim's amount
        # paid, its subsidy and the bank payment recorded against it would be counted in hours or
        # tokens (an independent review, December 2026).
        problems.append(("unit", msg("a programme that pays enterprises' claims grants CNY, not {unit}: the "
                                     "enterprise paid the provider in money and is paid back in money", unit=unit)))
    rate_table = terms["rate_table"]
    assert isinstance(rate_table, dict)
    groups = CATEGORY_GROUPS_BY_KIND[kind]
    for category in rate_table:
        if category_group(category) not in groups:
            problems.append(
                ("rate_table", msg("category {category} is outside a {kind} programme's scope (groups: {groups})",
                                   category=repr(category), kind=kind, groups=sorted(groups)))
            )
    tiers = terms.get("tiers") or []
    assert isinstance(tiers, list)
    previous = -1
    for i, tier in enumerate(tiers):
        if tier.get("categories") == []:
            problems.append((f"tiers/{i}/categories", msg("a tier names at least one category, or null for all of "
                                                          "them")))
        for category in tier.get("categories") or []:
            if category not in rate_table:
                problems.append((f"tiers/{i}/categories", msg("{category} is not in the rate table",
                                                              category=repr(category))))
        if tier["spend_up_to"] <= previous:
            problems.append((f"tiers/{i}/spend_up_to", msg("tiers must be in increasing spend_up_to")))
        previous = tier["spend_up_to"]
    budget, cap, per_voucher = terms["budget_total"], terms["enterprise_cap"], terms["max_per_voucher"]
    assert isinstance(budget, int) and isinstance(cap, int) and isinstance(per_voucher, int)
    if cap > budget:
        problems.append(("enterprise_cap", msg("an enterprise's cap cannot exceed the whole budget")))
    if per_voucher > cap:
        problems.append(("max_per_voucher", msg("one voucher cannot exceed the enterprise's cap")))
    opens, closes = terms.get("application_opens_at"), terms.get("application_closes_at")
    if opens is not None and closes is not None and closes <= opens:  # type: ignore[operator]
        problems.append(("application_closes_at", msg("the window must close after it opens")))
    rule_set = terms.get("eligibility_rules")
    if rule_set is not None:
        try:
            eligibility.validate(rule_set, saving=new_rules)
        except eligibility.RuleError as exc:
            problems.extend((f"eligibility_rules{pointer.rstrip('/')}", message) for pointer, message in exc.errors)
    return problems


def period_key(cap_period: CapPeriod | str, timezone: str, at: datetime) -> str:
    """The cap period `at` falls in, counted in the programme's time zone (Asia/Shanghai by
    default: a redemption at 23:30 UTC on 31 December belongs to the next year there)."""
    local = at.astimezone(ZoneInfo(timezone))
    match CapPeriod(cap_period):
        case CapPeriod.CALENDAR_YEAR:
            return f"{local.year:04d}"
        case CapPeriod.CALENDAR_QUARTER:
            return f"{local.year:04d}-Q{(local.month - 1) // 3 + 1}"
        case CapPeriod.CALENDAR_MONTH:
            return f"{local.year:04d}-{local.month:02d}"
        case CapPeriod.PROGRAMME:
            return "all"
