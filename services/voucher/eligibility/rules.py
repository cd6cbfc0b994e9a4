"""Eligibility rules: a small declarative language, parsed and checked when a programme is
saved, evaluated with no `eval` of any kind. Pure: stdlib only.

A rule set is JSON. Combinators: `{"all": [...]}`, `{"any": [...]}`, `{"not": rule}`.
Comparisons over facts: `{"fact": "enterprise.headcount", "op": "<=", "value": 300}` with
ops `== != < <= > >= in not_in`; a date value may be relative to the application date:
`{"years_before_application": 1}`. Built-in checks real programmes use:

    {"check": "region_in", "regions": ["330110"]}
    {"check": "headcount_at_most", "value": 300}
    {"check": "revenue_at_most", "value": 200000000000}
    {"check": "founded_at_least_years", "years": 1}
    {"check": "no_blacklist_within_years", "years": 3}
    {"check": "not_blacklisted"}
    {"check": "no_related_party_contracts"}
    {"check": "has_certifications", "certifications": ["high_tech"]}
    {"check": "requested_within_remaining_cap"}

Any rule may carry an `id` (stable name for reports). Every evaluation returns, for every
rule, pass or fail with a reason: a catalogue message (i18n.msg) that reads in zh-CN and in
English, naming each fact by its label (FACT_LABELS: 年营业收入, "annual revenue"), never by its
id. Amounts in a reason are written as people read them (¥12,000,000.00): revenue is in CNY fen,
the request's amounts in the programme's unit (`Facts.unit`), or counted in minor units when no
programme says. Validation problems are catalogue messages too.

Pure: the standard library, services.voucher.money and services.voucher.i18n only.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from services.voucher.i18n import Amount, Message, msg
from services.voucher.money import Unit

OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in")
FACTS: dict[str, type] = {
    "enterprise.uscc": str,
    "enterprise.region_code": str,
    "enterprise.headcount": int,
    "enterprise.annual_revenue": int,
    "enterprise.founded_on": date,
    "enterprise.industry_code": str,
    "enterprise.certifications": list,
    "request.requested_amount": int,
    "request.remaining_cap": int,
}
CHECKS: dict[str, dict[str, type]] = {
    "region_in": {"regions": list},
    "headcount_at_most": {"value": int},
    "revenue_at_most": {"value": int},
    "founded_at_least_years": {"years": int},
    "no_blacklist_within_years": {"years": int},
    "not_blacklisted": {},
    "no_related_party_contracts": {},
    "has_certifications": {"certifications": list},
    "requested_within_remaining_cap": {},
}
MAX_DEPTH = 16
MAX_YEARS = 200
MAX_LIST = 500
#: Facts that are amounts in minor units, and their unit; None: the programme's (`Facts.unit`).
AMOUNT_FACTS: dict[str, str | None] = {
    "enterprise.annual_revenue": Unit.CNY.value,  # revenue is in CNY whatever a programme's unit
    "request.requested_amount": None,
    "request.remaining_cap": None,
}

#: What each fact is called in a reason, in both languages.
FACT_LABELS: dict[str, Message] = {
    "enterprise.uscc": msg("unified social credit code"),
    "enterprise.region_code": msg("region"),
    "enterprise.headcount": msg("headcount"),
    "enterprise.annual_revenue": msg("annual revenue"),
    "enterprise.founded_on": msg("founding date"),
    "enterprise.industry_code": msg("industry code"),
    "enterprise.certifications": msg("certifications"),
    "request.requested_amount": msg("requested amount"),
    "request.remaining_cap": msg("remaining cap"),
}


class RuleError(ValueError):
    """A rule set that cannot be used; `errors` point into the rule (JSON pointers)."""

    def __init__(self, errors: list[tuple[str, Message]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{p}: {m}" for p, m in errors))


@dataclass(frozen=True)
class Facts:
    """What a rule can see: the enterprise's attributes, the request, the application date."""

    application_date: date
    enterprise: dict[str, Any]
    requested_amount: int = 0
    remaining_cap: int | None = 0
    blacklist_dates: tuple[date, ...] = ()
    #: The days of the 失信 records not lifted by the application date (`not_blacklisted`).
    standing_blacklist_dates: tuple[date, ...] = ()
    #: The numbers of the request's contracts whose provider is the enterprise itself or shares a
    #: legal representative or shareholder with it (`no_related_party_contracts`).
    related_contracts: tuple[str, ...] = ()
    #: The programme's unit, which `requested_amount` and `remaining_cap` are counted in; None
    #: when no programme says (a dry run of given rules against given facts).
    unit: str | None = None

    def get(self, name: str) -> Any:
        scope, _, key = name.partition(".")
        if scope == "enterprise":
            return self.enterprise.get(key)
        return {"requested_amount": self.requested_amount, "remaining_cap": self.remaining_cap}[key]


@dataclass
class Outcome:
    rule_id: str
    passed: bool
    #: Why, as a catalogue message; `reason_en` and `reason_zh` are its two renderings.
    reason: Message
    children: list[Outcome] = field(default_factory=list)
    #: Failed because a fact it needs is missing (not because the fact is wrong).
    unknown: bool = False

    @property
    def reason_en(self) -> str:
        return self.reason.render("en")

    @property
    def reason_zh(self) -> str:
        return self.reason.render("zh")

    def failed_leaves(self) -> list[Outcome]:
        """The innermost rules that explain a failure (a failing `not` explains itself)."""
        if self.passed:
            return []
        failing = [leaf for child in self.children for leaf in child.failed_leaves()]
        return failing or [self]

    def as_dict(self, language: str = "en") -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "passed": self.passed,
            "reason": self.reason_zh if language.lower().startswith("zh") else self.reason_en,
            **({"rules": [c.as_dict(language) for c in self.children]} if self.children else {}),
        }


# -- parsing -----------------------------------------------------------------------------------


def validate(rule: Any, *, saving: bool = False) -> None:
    """Raise RuleError listing every problem, each with a JSON pointer into the rule. `saving`: a
    rule set being saved (or tried) also names each rule once; a stored one is judged without
    that check, which it predates."""
    errors: list[tuple[str, Message]] = []
    _check(rule, "", 0, errors)
    if saving and not errors:
        _check_ids(rule, errors)
    if errors:
        raise RuleError(errors)


def _check_ids(rule: dict[str, Any], errors: list[tuple[str, Message]]) -> None:
    """A verdict names each rule by its id (else its pointer): two rules of one set under one
    name would make a refusal that names it ambiguous (a review had two `id: "size"` accepted)."""
    seen: dict[str, str] = {}

    def walk(node: dict[str, Any], at: str) -> None:  # in document order; depth is bounded by _check
        name = node.get("id") or at or "/"
        if name in seen:
            errors.append((f"{at}/id" if "id" in node else at or "/",
                           msg("the rule at {pointer} is already named {name}", pointer=seen[name] or "/", name=name)))
        else:
            seen[name] = at
        for kind in ("all", "any"):
            for i, child in enumerate(node.get(kind) or ()):
                walk(child, f"{at}/{kind}/{i}")
        if "not" in node:
            walk(node["not"], f"{at}/not")

    walk(rule, "")


def _check(rule: Any, at: str, depth: int, errors: list[tuple[str, Message]]) -> None:
    if depth > MAX_DEPTH:
        errors.append((at or "/", msg("rules nest at most {depth} deep", depth=MAX_DEPTH)))
        return
    if not isinstance(rule, dict):
        errors.append((at or "/", msg("a rule is a JSON object")))
        return
    if "id" in rule and not (isinstance(rule["id"], str) and 0 < len(rule["id"]) <= 64):
        errors.append((f"{at}/id", msg("an id is a string of 1 to 64 characters")))
    kinds = [k for k in ("all", "any", "not", "fact", "check") if k in rule]
    if len(kinds) != 1:
        errors.append((at or "/", msg("a rule has exactly one of all, any, not, fact, check")))
        return
    kind = kinds[0]
    check = rule.get("check")
    params = set(CHECKS.get(check, {})) if isinstance(check, str) else set()
    allowed = {"id", kind} | ({"op", "value"} if kind == "fact" else params)
    for key in sorted(set(rule) - allowed, key=str):
        errors.append((f"{at}/{key}", msg("unknown key")))
    if kind in ("all", "any"):
        items = rule[kind]
        if not isinstance(items, list) or not items:
            errors.append((f"{at}/{kind}", msg("a non-empty list of rules")))
            return
        for i, item in enumerate(items):
            _check(item, f"{at}/{kind}/{i}", depth + 1, errors)
    elif kind == "not":
        _check(rule["not"], f"{at}/not", depth + 1, errors)
    elif kind == "fact":
        _check_comparison(rule, at, errors)
    else:
        _check_builtin(rule, at, errors)


def _check_comparison(rule: dict[str, Any], at: str, errors: list[tuple[str, Message]]) -> None:
    fact, op = rule.get("fact"), rule.get("op")
    if not isinstance(fact, str) or fact not in FACTS:
        errors.append((f"{at}/fact", msg("unknown fact; known: {facts}", facts=sorted(FACTS))))
        return
    if not isinstance(op, str) or op not in OPS:
        errors.append((f"{at}/op", msg("unknown operator; one of {operators}", operators=" ".join(OPS))))
        return
    if "value" not in rule:
        errors.append((f"{at}/value", msg("a comparison needs a value")))
        return
    value, expected = rule["value"], FACTS[fact]
    if op in ("in", "not_in") or expected is list:
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            errors.append((f"{at}/value", msg("a non-empty list of at most {count} values", count=MAX_LIST)))
            return
        element = str if expected is list else expected
        for i, item in enumerate(value):
            _check_scalar(item, element, f"{at}/value/{i}", errors, relative=False)
        if expected is list and op not in ("in", "not_in", "==", "!="):
            errors.append((f"{at}/op", msg("{fact} is a list: use in (shares one), not_in (shares none), == or !=",
                                           fact=fact)))
        return
    _check_scalar(value, expected, f"{at}/value", errors, relative=True)


def _check_scalar(value: Any, expected: type, at: str, errors: list[tuple[str, Message]], *, relative: bool) -> None:
    if expected is date:
        if not ((relative and _is_relative(value)) or _parse_date(value) is not None):
            errors.append((at, msg('a date "YYYY-MM-DD" or {{"years_before_application": N}}') if relative
                           else msg('a date "YYYY-MM-DD"')))
    elif expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append((at, msg("an integer")))
    elif not isinstance(value, str):
        errors.append((at, msg("a string")))


def _check_builtin(rule: dict[str, Any], at: str, errors: list[tuple[str, Message]]) -> None:
    name = rule.get("check")
    if not isinstance(name, str) or name not in CHECKS:
        errors.append((f"{at}/check", msg("unknown check; known: {checks}", checks=sorted(CHECKS))))
        return
    for param, kind in CHECKS[name].items():
        value = rule.get(param)
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            errors.append((f"{at}/{param}", msg("a non-negative integer")))
        elif param == "years" and isinstance(value, int) and value > MAX_YEARS:
            errors.append((f"{at}/{param}", msg("at most {years} years", years=MAX_YEARS)))
        if kind is list and (not isinstance(value, list) or not value or len(value) > MAX_LIST
                             or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value)):
            errors.append((f"{at}/{param}", msg("a non-empty list of at most {count} strings", count=MAX_LIST)))
        elif param == "regions" and isinstance(value, list) and not all(
                len(v) == 6 and v.isascii() and v.isdigit() for v in value):
            errors.append((f"{at}/{param}", msg("6-digit administrative division codes, e.g. 330110")))


def _is_relative(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"years_before_application"}
        and isinstance(value["years_before_application"], int)
        and not isinstance(value["years_before_application"], bool)
        and 0 <= value["years_before_application"] <= MAX_YEARS
    )


def _parse_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def years_before(day: date, years: int) -> date:
    """The same calendar day `years` earlier (29 February becomes 28 February); the first
    representable day if that is before year 1."""
    if day.year - years < 1:
        return date.min
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


# -- evaluation --------------------------------------------------------------------------------


def evaluate(rule: dict[str, Any], facts: Facts, at: str = "") -> Outcome:
    """Evaluate a validated rule. A missing fact makes its rule *unknown*: it fails, and stays
    failed under `not` (a firm with no industry code on file does not pass "not in finance")."""
    rule_id = rule.get("id") or at or "/"
    if "all" in rule or "any" in rule:
        kind = "all" if "all" in rule else "any"
        children = [evaluate(r, facts, f"{at}/{kind}/{i}") for i, r in enumerate(rule[kind])]
        known_fail = any(not c.passed and not c.unknown for c in children)
        some_unknown = any(c.unknown for c in children)
        if kind == "all":
            passed, unknown = all(c.passed for c in children), not known_fail and some_unknown
            failed = sum(not c.passed for c in children)
            reason = msg("all conditions met") if passed else \
                msg("{failed} of {total} conditions not met", failed=failed, total=len(children))
        else:
            passed = any(c.passed for c in children)
            unknown = not passed and some_unknown
            reason = msg("at least one condition met") if passed else msg("no condition met")
        return Outcome(rule_id, passed, reason, children, unknown=unknown)
    if "not" in rule:
        inner = evaluate(rule["not"], facts, f"{at}/not")
        if inner.unknown:
            return Outcome(rule_id, False, msg("cannot tell: {reason}", reason=inner.reason), [inner], unknown=True)
        if inner.passed:
            return Outcome(rule_id, False, msg("excluded ({reason})", reason=inner.reason), [inner])
        return Outcome(rule_id, True, msg("not excluded ({reason})", reason=inner.reason), [inner])
    if "fact" in rule:
        return _comparison(rule, facts, rule_id)
    return _builtin(rule, facts, rule_id)


#: A comparison's condition with its value: "at most 300" / 不超过 300.
_CONDITIONS: dict[str, Callable[[Any], Message]] = {
    "==": lambda value: msg("equal to {value}", value=value),
    "!=": lambda value: msg("other than {value}", value=value),
    "<": lambda value: msg("below {value}", value=value),
    "<=": lambda value: msg("at most {value}", value=value),
    ">": lambda value: msg("above {value}", value=value),
    ">=": lambda value: msg("at least {value}", value=value),
    "in": lambda value: msg("one of {value}", value=value),
    "not_in": lambda value: msg("none of {value}", value=value),
}
#: The same over dates, which come before or after one another.
_DATE_CONDITIONS: dict[str, Callable[[Any], Message]] = {
    **_CONDITIONS,
    "<": lambda value: msg("before {value}", value=value),
    "<=": lambda value: msg("on or before {value}", value=value),
    ">": lambda value: msg("after {value}", value=value),
    ">=": lambda value: msg("on or after {value}", value=value),
}
#: A condition on a list fact (the certifications held), compared as sets.
_LIST_CONDITIONS: dict[str, Callable[[Any], Message]] = {
    "==": lambda value: msg("are exactly {value}", value=value),
    "!=": lambda value: msg("are not exactly {value}", value=value),
    "in": lambda value: msg("include at least one of {value}", value=value),
    "not_in": lambda value: msg("include none of {value}", value=value),
}


def certification_key(name: str) -> str:
    """What two names of one certification share: "High_Tech", "high_tech " and the full-width
    "ｈｉｇｈ_ｔｅｃｈ" are one certification to the rules and to an enterprise's list (December
    2026: a rule naming "high_tech" had refused an enterprise that sent "High_Tech")."""
    return unicodedata.normalize("NFKC", name).strip().casefold()


def _unknown(rule_id: str, label: Message) -> Outcome:
    return Outcome(rule_id, False, msg("{fact} is not known", fact=label), unknown=True)


def _figure(amount: int, unit: str | None) -> Amount | Message:
    """An amount in minor units as people read it (¥12,000,000.00); with no unit known (no
    programme), the figure says it is counted in minor units rather than pass for yuan."""
    if unit is None:
        return msg("{figure} minor units", figure=format(amount, ","))
    return Amount(amount, unit)


def _shown(value: Any, *, amount: bool = False, unit: str | None = None) -> Any:
    """A fact or a rule's value as a message parameter: dates ISO, lists as lists (joined when
    rendered), amounts as money."""
    if isinstance(value, list):
        return [_shown(v, amount=amount, unit=unit) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    if amount and isinstance(value, int) and not isinstance(value, bool):
        return _figure(value, unit)
    return value


def _as_date(value: Any, facts: Facts) -> date | None:
    if _is_relative(value):
        return years_before(facts.application_date, value["years_before_application"])
    return value if isinstance(value, date) else _parse_date(value)


def _comparison(rule: dict[str, Any], facts: Facts, rule_id: str) -> Outcome:
    fact, op, value = rule["fact"], rule["op"], rule["value"]
    kind, actual, label = FACTS[fact], facts.get(fact), FACT_LABELS[fact]
    if kind is date:
        actual = _as_date(actual, facts) if actual is not None else None
        value = [_as_date(v, facts) for v in value] if isinstance(value, list) else _as_date(value, facts)
    if actual is None:
        return _unknown(rule_id, label)
    is_amount, unit = fact in AMOUNT_FACTS, AMOUNT_FACTS.get(fact) or facts.unit
    if kind is list:
        held, listed = {certification_key(c) for c in actual}, {certification_key(c) for c in value}
        passed = {"in": bool(held & listed), "not_in": not held & listed,
                  "==": held == listed, "!=": held != listed}[op]
        holding, condition = sorted(set(actual)) or msg("none"), _LIST_CONDITIONS[op](_shown(value))
        return Outcome(rule_id, passed, msg("the {fact} held ({actual}) {condition}", fact=label, actual=holding,
                                            condition=condition) if passed
                       else msg("the {fact} held ({actual}) do not meet the condition that they {condition}", fact=label,
                                actual=holding, condition=condition))
    comparisons: dict[str, Callable[[], bool]] = {
        "==": lambda: actual == value, "!=": lambda: actual != value,
        "<": lambda: actual < value, "<=": lambda: actual <= value,
        ">": lambda: actual > value, ">=": lambda: actual >= value,
        "in": lambda: actual in value, "not_in": lambda: actual not in value,
    }
    try:
        passed = comparisons[op]()
    except TypeError:  # a fact of the wrong type (inline facts): it cannot be judged
        return _unknown(rule_id, label)
    actual = _shown(actual, amount=is_amount, unit=unit)
    condition = (_DATE_CONDITIONS if kind is date else _CONDITIONS)[op](_shown(value, amount=is_amount, unit=unit))
    return Outcome(rule_id, passed, msg("{fact} is {actual}, which is {condition}", fact=label, actual=actual,
                                        condition=condition) if passed
                   else msg("{fact} is {actual}, which does not meet the condition: {condition}", fact=label,
                            actual=actual, condition=condition))


def _builtin(rule: dict[str, Any], facts: Facts, rule_id: str) -> Outcome:
    e, name = facts.enterprise, rule["check"]
    if name == "region_in":
        region = e.get("region_code")
        if region is None:
            return _unknown(rule_id, FACT_LABELS["enterprise.region_code"])
        ok = region in rule["regions"]
        return Outcome(rule_id, ok, msg("region {region} is in {regions}", region=region, regions=rule["regions"])
                       if ok else msg("region {region} is not in {regions}", region=region, regions=rule["regions"]))
    if name in ("headcount_at_most", "revenue_at_most"):
        fact = "enterprise.annual_revenue" if name == "revenue_at_most" else "enterprise.headcount"
        actual, limit = e.get(fact.partition(".")[2]), rule["value"]
        if actual is None:
            return _unknown(rule_id, FACT_LABELS[fact])
        ok, label, unit = actual <= limit, FACT_LABELS[fact], AMOUNT_FACTS.get(fact)
        actual, limit = (_shown(n, amount=fact in AMOUNT_FACTS, unit=unit) for n in (actual, limit))
        return Outcome(rule_id, ok, msg("{fact} {actual} ≤ {limit}", fact=label, actual=actual, limit=limit) if ok
                       else msg("{fact} {actual} > {limit}", fact=label, actual=actual, limit=limit))
    if name == "founded_at_least_years":
        founded = e.get("founded_on")
        founded = _parse_date(founded) if isinstance(founded, str) else founded
        if founded is None:
            return _unknown(rule_id, FACT_LABELS["enterprise.founded_on"])
        # Before year 1 nothing can have been founded that long ago (`years_before` gives the first day).
        ok = facts.application_date.year - rule["years"] >= 1 and founded <= years_before(
            facts.application_date, rule["years"])
        return Outcome(rule_id, ok, msg("founded {day}, at least {years} year(s) before the application",
                                        day=founded, years=rule["years"]) if ok
                       else msg("founded {day}, less than {years} year(s) before the application",
                                day=founded, years=rule["years"]))
    if name == "no_blacklist_within_years":
        since = years_before(facts.application_date, rule["years"])
        # Records of the window up to the day judged: a dry run dated in the past had counted
        # records made after it (an independent review, December 2026).
        recent = sorted(d for d in facts.blacklist_dates if since <= d <= facts.application_date)
        return Outcome(rule_id, not recent,
                       msg("dishonesty (失信) record on {day}", day=recent[-1]) if recent
                       else msg("no dishonesty (失信) record in the last {years} year(s)", years=rule["years"]))
    if name == "not_blacklisted":
        standing = sorted(facts.standing_blacklist_dates)
        return Outcome(rule_id, not standing,
                       msg("on the dishonesty (失信) list since {day}, not lifted", day=standing[0]) if standing
                       else msg("not on the dishonesty (失信) list"))
    if name == "no_related_party_contracts":
        related = sorted(facts.related_contracts)
        return Outcome(rule_id, not related,
                       msg("contract {contracts} is with a related party of the enterprise (itself, or a shared legal "
                           "representative or shareholder)", contracts=related) if related
                       else msg("no contract is with a related party of the enterprise"))
    if name == "has_certifications":
        held = {certification_key(c) for c in e.get("certifications") or []}
        missing = [c for c in rule["certifications"] if certification_key(c) not in held]
        return Outcome(rule_id, not missing, msg("lacks {certifications}", certifications=missing) if missing
                       else msg("holds {certifications}", certifications=rule["certifications"]))
    if facts.remaining_cap is None:  # requested_within_remaining_cap, judged with no programme
        return Outcome(rule_id, False, msg("the remaining cap is not known without a programme"), unknown=True)
    ok = facts.requested_amount <= facts.remaining_cap  # requested_within_remaining_cap
    requested, limit = _figure(facts.requested_amount, facts.unit), _figure(facts.remaining_cap, facts.unit)
    return Outcome(rule_id, ok, msg("requested {requested} within the remaining cap {limit}",
                                    requested=requested, limit=limit) if ok
                   else msg("requested {requested} exceeds the remaining cap {limit}", requested=requested, limit=limit))
