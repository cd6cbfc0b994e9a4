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
    {"check": "has_certifications", "certifications": ["high_tech"]}
    {"check": "requested_within_remaining_cap"}

Any rule may carry an `id` (stable name for reports). Every evaluation returns, for every
rule, pass or fail with a reason in zh-CN and in English; amounts in a reason are written as
people read them (¥12,000,000.00): revenue is in CNY fen, the request's amounts in the
programme's unit (`Facts.unit`). Validation problems are catalogue messages (i18n.msg).

Pure: the standard library, services.voucher.money and services.voucher.i18n only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from services.voucher.i18n import Message, msg
from services.voucher.money import Unit, format_for_people

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
    reason_en: str
    reason_zh: str
    children: list[Outcome] = field(default_factory=list)
    #: Failed because a fact it needs is missing (not because the fact is wrong).
    unknown: bool = False

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


def validate(rule: Any) -> None:
    """Raise RuleError listing every problem, each with a JSON pointer into the rule."""
    errors: list[tuple[str, Message]] = []
    _check(rule, "", 0, errors)
    if errors:
        raise RuleError(errors)


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
        else:
            passed = any(c.passed for c in children)
            unknown = not passed and some_unknown
        failed = sum(not c.passed for c in children)
        en = ("all conditions met" if passed else f"{failed} of {len(children)} conditions not met") if kind == "all" \
            else ("at least one condition met" if passed else "no condition met")
        zh = ("全部条件满足" if passed else f"{len(children)} 项条件中有 {failed} 项不满足") if kind == "all" \
            else ("至少一项条件满足" if passed else "没有任何条件满足")
        return Outcome(rule_id, passed, en, zh, children, unknown=unknown)
    if "not" in rule:
        inner = evaluate(rule["not"], facts, f"{at}/not")
        if inner.unknown:
            return Outcome(rule_id, False, f"cannot tell: {inner.reason_en}", f"无法判断：{inner.reason_zh}",
                           [inner], unknown=True)
        return Outcome(rule_id, not inner.passed, f"not ({inner.reason_en})", f"非（{inner.reason_zh}）", [inner])
    if "fact" in rule:
        return _comparison(rule, facts, rule_id)
    return _builtin(rule, facts, rule_id)


def _unknown(rule_id: str, en: str, zh: str) -> Outcome:
    return Outcome(rule_id, False, f"{en} is not known", f"缺少信息：{zh}", unknown=True)


_OP_TEXT = {"==": ("equals", "等于"), "!=": ("differs from", "不等于"), "<": ("is below", "小于"),
            "<=": ("is at most", "不超过"), ">": ("is above", "大于"), ">=": ("is at least", "不少于"),
            "in": ("is one of", "属于"), "not_in": ("is none of", "不属于")}
_LIST_OP_TEXT = {"==": ("are exactly", "恰为"), "!=": ("are not exactly", "不恰为"),
                 "in": ("include one of", "包含其一"), "not_in": ("include none of", "均不包含")}


def _figure(amount: int, unit: str | None, language: str) -> str:
    """An amount in minor units as people read it (¥12,000,000.00); with no unit known (no
    programme), the figure says it is counted in minor units rather than pass for yuan."""
    if unit is None:
        return f"{amount:,}（最小单位）" if language == "zh" else f"{amount:,} minor units"
    return format_for_people(amount, unit, language)


def _shown(value: Any, language: str, *, amount: bool = False, unit: str | None = None) -> str:
    """A fact or a rule's value as text in `language`: dates ISO, lists joined, amounts as money."""
    if isinstance(value, list):
        return ("、" if language == "zh" else ", ").join(_shown(v, language, amount=amount, unit=unit) for v in value)
    if isinstance(value, date):
        return value.isoformat()
    if amount and isinstance(value, int) and not isinstance(value, bool):
        return _figure(value, unit, language)
    return str(value)


def _as_date(value: Any, facts: Facts) -> date | None:
    if _is_relative(value):
        return years_before(facts.application_date, value["years_before_application"])
    return value if isinstance(value, date) else _parse_date(value)


def _comparison(rule: dict[str, Any], facts: Facts, rule_id: str) -> Outcome:
    fact, op, value = rule["fact"], rule["op"], rule["value"]
    kind, actual = FACTS[fact], facts.get(fact)
    if kind is date:
        actual = _as_date(actual, facts) if actual is not None else None
        value = [_as_date(v, facts) for v in value] if isinstance(value, list) else _as_date(value, facts)
    if actual is None:
        return _unknown(rule_id, fact, fact)
    is_amount, unit = fact in AMOUNT_FACTS, AMOUNT_FACTS.get(fact) or facts.unit
    if kind is list:
        held, listed = set(actual), set(value)
        passed = {"in": bool(held & listed), "not_in": not held & listed,
                  "==": held == listed, "!=": held != listed}[op]
        en_op, zh_op = _LIST_OP_TEXT[op]
        actual_en = _shown(sorted(held), "en") or "none"
        actual_zh = _shown(sorted(held), "zh") or "无"
    else:
        comparisons: dict[str, Callable[[], bool]] = {
            "==": lambda: actual == value, "!=": lambda: actual != value,
            "<": lambda: actual < value, "<=": lambda: actual <= value,
            ">": lambda: actual > value, ">=": lambda: actual >= value,
            "in": lambda: actual in value, "not_in": lambda: actual not in value,
        }
        try:
            passed = comparisons[op]()
        except TypeError:  # a fact of the wrong type (inline facts): it cannot be judged
            return _unknown(rule_id, fact, fact)
        en_op, zh_op = _OP_TEXT[op]
        actual_en = _shown(actual, "en", amount=is_amount, unit=unit)
        actual_zh = _shown(actual, "zh", amount=is_amount, unit=unit)
    value_en = _shown(value, "en", amount=is_amount, unit=unit)
    value_zh = _shown(value, "zh", amount=is_amount, unit=unit)
    if passed:
        return Outcome(rule_id, True, f"{fact} ({actual_en}) {en_op} {value_en}",
                       f"{fact}（{actual_zh}）满足：{zh_op} {value_zh}")
    return Outcome(rule_id, False, f"{fact} ({actual_en}) fails: {en_op} {value_en}",
                   f"{fact}（{actual_zh}）不满足：{zh_op} {value_zh}")


def _builtin(rule: dict[str, Any], facts: Facts, rule_id: str) -> Outcome:
    e, name = facts.enterprise, rule["check"]
    if name == "region_in":
        region = e.get("region_code")
        if region is None:
            return _unknown(rule_id, "region", "注册地")
        ok = region in rule["regions"]
        return Outcome(rule_id, ok, f"region {region} {'is' if ok else 'is not'} in {_shown(rule['regions'], 'en')}",
                       f"注册地 {region} {'属于' if ok else '不属于'} {_shown(rule['regions'], 'zh')}")
    if name in ("headcount_at_most", "revenue_at_most"):
        revenue = name == "revenue_at_most"
        key, en, zh = ("annual_revenue", "annual revenue", "年营业收入") if revenue \
            else ("headcount", "headcount", "员工人数")
        actual = e.get(key)
        if actual is None:
            return _unknown(rule_id, en, zh)
        ok = actual <= rule["value"]
        unit = AMOUNT_FACTS["enterprise.annual_revenue"]
        shown = {language: (_shown(actual, language, amount=revenue, unit=unit),
                            _shown(rule["value"], language, amount=revenue, unit=unit)) for language in ("en", "zh")}
        return Outcome(rule_id, ok, f"{en} {shown['en'][0]} {'≤' if ok else '>'} {shown['en'][1]}",
                       f"{zh} {shown['zh'][0]} {'不超过' if ok else '超过'} {shown['zh'][1]}")
    if name == "founded_at_least_years":
        founded = e.get("founded_on")
        founded = _parse_date(founded) if isinstance(founded, str) else founded
        if founded is None:
            return _unknown(rule_id, "founding date", "成立日期")
        latest = years_before(facts.application_date, rule["years"])
        ok = founded <= latest
        return Outcome(rule_id, ok, f"founded {founded.isoformat()}, {'at least' if ok else 'less than'} "
                       f"{rule['years']} year(s) before the application",
                       f"成立于 {founded.isoformat()}，{'已满' if ok else '不满'} {rule['years']} 年")
    if name == "no_blacklist_within_years":
        since = years_before(facts.application_date, rule["years"])
        recent = sorted(d for d in facts.blacklist_dates if d >= since)
        ok = not recent
        return Outcome(rule_id, ok, "no dishonesty (失信) record in the last "
                       f"{rule['years']} year(s)" if ok else f"dishonesty (失信) record on {recent[-1].isoformat()}",
                       f"近 {rule['years']} 年无失信记录" if ok else f"{recent[-1].isoformat()} 有失信记录")
    if name == "has_certifications":
        held = set(e.get("certifications") or [])
        missing = [c for c in rule["certifications"] if c not in held]
        ok = not missing
        return Outcome(rule_id, ok, "holds " + ", ".join(rule["certifications"]) if ok
                       else "lacks " + ", ".join(missing),
                       "具备资质：" + "、".join(rule["certifications"]) if ok else "缺少资质：" + "、".join(missing))
    if facts.remaining_cap is None:  # requested_within_remaining_cap, judged with no programme
        return _unknown(rule_id, "the remaining cap (no programme)", "剩余额度")
    ok = facts.requested_amount <= facts.remaining_cap  # requested_within_remaining_cap
    requested = {language: _figure(facts.requested_amount, facts.unit, language) for language in ("en", "zh")}
    remaining = {language: _figure(facts.remaining_cap, facts.unit, language) for language in ("en", "zh")}
    return Outcome(rule_id, ok, f"requested {requested['en']} {'within' if ok else 'exceeds'} the remaining "
                   f"cap {remaining['en']}",
                   f"申请金额 {requested['zh']} {'未超过' if ok else '超过'}剩余额度 {remaining['zh']}".replace("） ", "）"))
