"""Programme rules: the status machine, which fields freeze when, and cross-field term checks."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from services.voucher.errors import InvalidTransition, TermsFrozen
from services.voucher.programmes.rules import (
    EDITABLE_WHEN,
    MONEY_TERMS,
    ProgrammeStatus,
    check_editable,
    check_transition,
    term_problems,
)

S = ProgrammeStatus
LEGAL = {(S.DRAFT, S.OPEN), (S.OPEN, S.CLOSED), (S.CLOSED, S.ARCHIVED)}
NEXT = {S.DRAFT: ["open"], S.OPEN: ["closed"], S.CLOSED: ["archived"], S.ARCHIVED: []}

#: Every field a programme update may name (ProgrammeUpdate's fields).
ALL_FIELDS = frozenset(
    "name description kind unit mode budget_total rate_table tiers stacking_ceiling_bps "
    "enterprise_cap cap_period cap_timezone max_per_voucher application_opens_at "
    "application_closes_at voucher_validity_days publicity_days hold_ttl_seconds "
    "expiry_disposition eligibility_rules application_requires_contract".split()
)
EDITABLE_OPEN = {
    "name", "description", "application_closes_at", "publicity_days", "hold_ttl_seconds",
    "eligibility_rules", "application_requires_contract",
}
EDITABLE_CLOSED = {"name", "description"}


# -- status machine ---------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_check_transition_every_pair(current: S, target: S) -> None:
    if (current, target) in LEGAL:
        check_transition(current, target)
        return
    with pytest.raises(InvalidTransition) as exc:
        check_transition(current, target)
    assert exc.value.status == 409
    assert exc.value.code == "invalid_transition"
    assert exc.value.extra == {"current_status": current.value, "allowed": NEXT[current]}
    assert f"from {current.value} to {target.value}" in exc.value.detail  # a programme's statuses read as their codes


def test_exactly_three_transitions_are_legal() -> None:
    legal = {(c, t) for c, t in itertools.product(S, S) if _allowed(c, t)}
    assert legal == LEGAL


def _allowed(current: S, target: S) -> bool:
    try:
        check_transition(current, target)
    except InvalidTransition:
        return False
    return True


# -- what may change in each status ------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(ALL_FIELDS))
def test_draft_allows_every_field(field: str) -> None:
    check_editable(S.DRAFT, {field})
    check_editable(S.DRAFT, set(ALL_FIELDS))


@pytest.mark.parametrize(
    ("status", "editable"),
    [(S.OPEN, EDITABLE_OPEN), (S.CLOSED, EDITABLE_CLOSED), (S.ARCHIVED, set())],
)
def test_editable_fields_per_status(status: S, editable: set[str]) -> None:
    for field in sorted(ALL_FIELDS):
        if field in editable:
            check_editable(status, {field})
            continue
        with pytest.raises(TermsFrozen) as exc:
            check_editable(status, {field})
        assert exc.value.status == 409
        assert exc.value.code == "terms_frozen"
        assert exc.value.extra == {"current_status": status.value, "fields": [field]}
    if editable:
        check_editable(status, set(editable))  # all the editable ones at once


def test_frozen_error_lists_only_and_all_the_frozen_fields_sorted() -> None:
    with pytest.raises(TermsFrozen) as exc:
        check_editable(S.OPEN, {"name", "rate_table", "budget_total", "publicity_days", "unit"})
    assert exc.value.extra["fields"] == ["budget_total", "rate_table", "unit"]
    assert "budget_total, rate_table, unit" in exc.value.detail


@pytest.mark.parametrize("status", [S.OPEN, S.CLOSED, S.ARCHIVED])
def test_nothing_changed_is_never_refused(status: S) -> None:
    check_editable(status, set())


def test_every_updatable_field_is_classified_here() -> None:
    from services.voucher.programmes.schemas import ProgrammeUpdate

    assert set(ProgrammeUpdate.model_fields) == ALL_FIELDS


def test_no_money_term_is_editable_once_open() -> None:
    for status in (S.OPEN, S.CLOSED, S.ARCHIVED):
        editable = EDITABLE_WHEN[status]
        assert editable is not None
        assert not (MONEY_TERMS & editable), status
    assert {"budget_total", "rate_table", "tiers", "enterprise_cap", "max_per_voucher",
            "stacking_ceiling_bps", "unit", "kind"} <= MONEY_TERMS


# -- cross-field term checks --------------------------------------------------------------------


def terms(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Yuhang 2026 compute voucher",
        "kind": "compute",
        "unit": "CNY",
        "mode": "provider_redemption",
        "budget_total": 25_000_000_000,
        "rate_table": {"accelerator:domestic": 3000, "accelerator:other": 2000},
        "tiers": [{"spend_up_to": 50_000_000, "rate_bps": 5000, "categories": None}],
        "stacking_ceiling_bps": 6000,
        "enterprise_cap": 800_000_000,
        "max_per_voucher": 800_000_000,
        "application_opens_at": datetime(2026, 1, 1, tzinfo=UTC),
        "application_closes_at": datetime(2026, 12, 31, 15, 59, 59, tzinfo=UTC),
    }
    body.update(overrides)
    return body


def fields(problems: list[tuple[str, Any]]) -> list[str]:
    return [f for f, _ in problems]


def english(problems: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """The problems with their messages rendered in English."""
    return [(f, str(m)) for f, m in problems]


def test_consistent_terms_have_no_problems() -> None:
    assert term_problems(terms()) == []
    model = terms(kind="model", unit="TOKEN", rate_table={"model:registered": 3000}, tiers=[])
    assert term_problems(model) == []


@pytest.mark.parametrize(
    ("kind", "unit", "ok"),
    [
        ("compute", "CNY", True),
        ("compute", "GPU_HOUR", True),
        ("compute", "TOKEN", False),
        ("model", "CNY", True),
        ("model", "TOKEN", True),
        ("model", "GPU_HOUR", False),
    ],
)
def test_unit_must_suit_the_kind(kind: str, unit: str, ok: bool) -> None:
    rates = {"accelerator:domestic": 3000} if kind == "compute" else {"model:registered": 3000}
    problems = term_problems(terms(kind=kind, unit=unit, rate_table=rates, tiers=[]))
    if ok:
        assert problems == []
    else:
        assert fields(problems) == ["unit"]
        assert f"not {unit}" in str(problems[0][1])


@pytest.mark.parametrize(("kind", "unit", "ok"), [("compute", "CNY", True), ("compute", "GPU_HOUR", False),
                                                   ("model", "CNY", True), ("model", "TOKEN", False)])
def test_a_programme_paying_claims_grants_money(kind: str, unit: str, ok: bool) -> None:
    """The enterprise paid the provider in money and is paid back in money: a claim programme in
    hours or tokens had counted the amount paid, the subsidy and the bank payment in them (an
    independent review, December 2026). Providers' redemptions may still be in hours or tokens."""
    rates = {"accelerator:domestic": 3000} if kind == "compute" else {"model:registered": 3000}
    problems = term_problems(terms(kind=kind, unit=unit, rate_table=rates, tiers=[], mode="enterprise_claim"))
    assert fields(problems) == ([] if ok else ["unit"])
    if not ok:
        assert "claims" in str(problems[0][1]) and unit in str(problems[0][1])
    assert term_problems(terms(kind=kind, unit=unit, rate_table=rates, tiers=[], mode="provider_redemption")) == []


def test_model_programme_cannot_subsidise_accelerators() -> None:
    problems = term_problems(
        terms(kind="model", rate_table={"model:registered": 3000, "accelerator:x": 2000}, tiers=[])
    )
    assert fields(problems) == ["rate_table"]
    assert "'accelerator:x'" in str(problems[0][1]) and "model" in str(problems[0][1])


def test_compute_programme_cannot_subsidise_models_but_may_storage_and_network() -> None:
    ok = {"accelerator:domestic": 3000, "storage:object": 1000, "network:egress": 1000}
    assert term_problems(terms(rate_table=ok, tiers=[])) == []
    problems = term_problems(terms(rate_table={**ok, "model:registered": 3000}, tiers=[]))
    assert english(problems) == [
        ("rate_table", "category 'model:registered' is outside a compute programme's scope "
         "(groups: accelerator, network, storage)")
    ]


def test_each_out_of_scope_category_is_reported() -> None:
    problems = term_problems(
        terms(rate_table={"accelerator:a": 1, "model:b": 1, "database:c": 1}, tiers=[])
    )
    assert fields(problems) == ["rate_table", "rate_table"]
    assert "'model:b'" in str(problems[0][1]) and "'database:c'" in str(problems[1][1])


def test_tier_categories_must_be_in_the_rate_table() -> None:
    tiers = [
        {"spend_up_to": 100, "rate_bps": 5000, "categories": ["accelerator:domestic"]},
        {"spend_up_to": 200, "rate_bps": 4000, "categories": ["accelerator:other", "accelerator:gpu"]},
    ]
    problems = term_problems(terms(tiers=tiers))
    assert english(problems) == [("tiers/1/categories", "'accelerator:gpu' is not in the rate table")]


def test_a_tier_names_at_least_one_category_or_null() -> None:
    """`categories: []` reads as "no category" but was applied as "every category": refused."""
    tiers = [{"spend_up_to": 100, "rate_bps": 5000, "categories": []},
             {"spend_up_to": 200, "rate_bps": 4000, "categories": None}]
    assert english(term_problems(terms(tiers=tiers))) == [
        ("tiers/0/categories", "a tier names at least one category, or null for all of them")]


@pytest.mark.parametrize(
    ("limits", "bad"),
    [
        ([100, 200, 300], []),
        ([100], []),
        ([100, 100], ["tiers/1/spend_up_to"]),  # equal is not increasing
        ([200, 100], ["tiers/1/spend_up_to"]),
        ([100, 300, 200, 400], ["tiers/2/spend_up_to"]),
        ([300, 200, 100], ["tiers/1/spend_up_to", "tiers/2/spend_up_to"]),
    ],
)
def test_tiers_must_increase(limits: list[int], bad: list[str]) -> None:
    tiers = [{"spend_up_to": n, "rate_bps": 5000, "categories": None} for n in limits]
    assert fields(term_problems(terms(tiers=tiers))) == bad


@pytest.mark.parametrize(
    ("budget", "cap", "per_voucher", "bad"),
    [
        (1000, 1000, 1000, []),  # all equal is fine
        (1000, 500, 200, []),
        (1000, 1001, 1000, ["enterprise_cap"]),
        (1000, 500, 501, ["max_per_voucher"]),
        (1000, 2000, 3000, ["enterprise_cap", "max_per_voucher"]),
    ],
)
def test_cap_within_budget_and_voucher_within_cap(
    budget: int, cap: int, per_voucher: int, bad: list[str]
) -> None:
    problems = term_problems(
        terms(budget_total=budget, enterprise_cap=cap, max_per_voucher=per_voucher, tiers=[])
    )
    assert fields(problems) == bad


@pytest.mark.parametrize(
    ("opens", "closes", "ok"),
    [
        (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), True),
        (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), False),
        (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), False),
        (None, datetime(2026, 1, 1, tzinfo=UTC), True),
        (datetime(2026, 1, 1, tzinfo=UTC), None, True),
        (None, None, True),
    ],
)
def test_window_must_close_after_it_opens(
    opens: datetime | None, closes: datetime | None, ok: bool
) -> None:
    problems = term_problems(terms(application_opens_at=opens, application_closes_at=closes))
    assert english(problems) == ([] if ok else [("application_closes_at", "the window must close after it opens")])


def test_several_problems_are_all_reported() -> None:
    problems = term_problems(
        terms(
            kind="model",
            unit="GPU_HOUR",
            rate_table={"accelerator:x": 3000},
            tiers=[{"spend_up_to": 10, "rate_bps": 1, "categories": ["model:y"]}],
            enterprise_cap=30_000_000_000,
            application_closes_at=datetime(2025, 1, 1, tzinfo=UTC),
        )
    )
    assert fields(problems) == [
        "unit", "rate_table", "tiers/0/categories", "enterprise_cap", "application_closes_at",
    ]
