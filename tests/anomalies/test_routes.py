"""Anomaly reports over HTTP: every detector flags its scenario — built through the API, with
the clock moved by hand — and stays silent on the near miss; who may read the report; the
explanation's language; parameters echoed and refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support import (
    assert_problem,
    auth,
    create,
    enterprise_payload,
    fresh_key,
    make_key,
    provider_payload,
)
from tests.world import World, build_world

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
PATH = "/v1/audit/anomalies"
PARTY = "sha256:0a1b2c3d4e5f6a7b8c9d"


@pytest.fixture
async def world(app, client: httpx.AsyncClient, clock) -> World:
    clock.current = START
    return await build_world(app, client, rate_table={"accelerator:domestic": 3000})


# -- helpers --------------------------------------------------------------------------------------


async def redeem(world: World, clock, at: datetime, voucher: dict[str, Any], spend: int, order: str, *,
                 provider_key: str | None = None, uscc: str | None = None, one_step: bool = True) -> dict[str, Any]:
    """A redemption at `at` of 30 % of `spend` (captured, or only held)."""
    clock.current = at
    response = await world.hold(voucher, spend, order=order, path="/v1/redemptions" if one_step else
                                "/v1/redemptions/holds", provider_key=provider_key, uscc=uscc,
                                key=f"{order}-{at.isoformat()}")
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def report(world: World, *, key: str | None = None, language: str | None = None,
                 **params: Any) -> dict[str, Any]:
    response = await fetch(world, key=key, language=language, **params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def fetch(world: World, *, key: str | None = None, language: str | None = None, **params: Any) -> httpx.Response:
    headers = auth(key or world.auditor, **({"Accept-Language": language} if language else {}))
    return await world.client.get(PATH, params=params, headers=headers)


def of(document: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [f for f in document["findings"] if f["rule"] == rule]


async def patch_parties(world: World, kind: str, party_id: str, role: str) -> None:
    target = world.provider if kind == "providers" else world.enterprise
    current = await world.client.get(f"/v1/{kind}/{target['id']}", headers=auth(world.operator))
    response = await world.client.patch(f"/v1/{kind}/{target['id']}",
                                        json={"related_parties": [{"role": role, "party_id": party_id}]},
                                        headers=auth(world.operator, **{"If-Match": current.headers["etag"]}))
    assert response.status_code == 200, response.text


async def another_enterprise(app, world: World) -> tuple[dict[str, Any], str]:
    enterprise = await create(world.client, world.operator, "/v1/enterprises", enterprise_payload())
    return enterprise, await make_key(app, "enterprise", enterprise_id=enterprise["id"])


async def another_provider(app, world: World, **payload: Any) -> tuple[dict[str, Any], str]:
    """A provider registered (with `payload`'s fields), approved and enrolled, and its key."""
    provider = await create(world.client, world.operator, "/v1/providers", provider_payload(**payload))
    approved = await world.client.post(f"/v1/providers/{provider['id']}/approve", json={"reason": "ok"},
                                       headers=auth(world.operator))
    assert approved.status_code == 200, approved.text
    enrolled = await world.client.put(f"/v1/programmes/{world.programme['id']}/enrolments/{provider['id']}",
                                      headers=auth(world.operator))
    assert enrolled.status_code == 201, enrolled.text
    return provider, await make_key(app, "provider", provider_id=provider["id"])


# -- 1. related parties ---------------------------------------------------------------------------


async def test_related_party_recorded_after_the_redemption_is_reported(world: World, clock) -> None:
    await patch_parties(world, "enterprises", PARTY, "legal_representative")
    voucher = await world.issue(10_000_000)
    captured = await redeem(world, clock, START + timedelta(hours=1), voucher, 1_000_000, "PO-1")
    held = await redeem(world, clock, START + timedelta(hours=2), voucher, 2_000_000, "PO-2", one_step=False)
    voided = await redeem(world, clock, START + timedelta(hours=2), voucher, 500_000, "PO-3", one_step=False)
    assert (await world.post(f"/v1/redemptions/{voided['id']}/void", {})).status_code == 200

    before = await report(world, rule="related_party")
    assert of(before, "related_party") == [] and before["counts"] == {"related_party": 0}

    await patch_parties(world, "providers", PARTY, "shareholder")
    found = of(await report(world, rule="related_party"), "related_party")
    assert len(found) == 1
    finding = found[0]
    assert finding["enterprise_ids"] == [world.enterprise["id"]] and finding["provider_ids"] == [world.provider["id"]]
    assert finding["voucher_ids"] == [voucher["id"]]
    evidence = finding["evidence"]
    assert evidence["redemption_ids"] == [captured["id"], held["id"]]  # the voided hold carries nothing
    assert evidence["order_references"] == ["PO-1", "PO-2"]
    assert evidence["amounts"] == [300_000, 600_000] and evidence["total_amount"] == 900_000
    assert evidence["shared_parties"] == [{"party_id": PARTY, "enterprise_roles": ["legal_representative"],
                                           "provider_roles": ["shareholder"]}]
    assert PARTY in finding["explanation"] and "¥9,000.00" in finding["explanation"]

    # A hold whose TTL has passed is void when read, even before the job posts it.
    clock.current = START + timedelta(hours=3)
    later = of(await report(world, rule="related_party"), "related_party")
    assert later[0]["evidence"]["redemption_ids"] == [captured["id"]]


async def test_a_hold_on_a_voucher_that_has_expired_carries_nothing(world: World, clock) -> None:
    """An expiring voucher's holds are voided first: from its expiry, before any job runs, a hold
    on it whose own TTL has not passed is no longer value a report counts."""
    await patch_parties(world, "enterprises", PARTY, "legal_representative")
    voucher = await world.issue(10_000_000)
    expires_at = datetime.fromisoformat(voucher["expires_at"])
    held = await redeem(world, clock, expires_at - timedelta(minutes=10), voucher, 1_000_000, "PO-1", one_step=False)
    await patch_parties(world, "providers", PARTY, "shareholder")
    found = of(await report(world, rule="related_party"), "related_party")
    assert found[0]["evidence"]["redemption_ids"] == [held["id"]]
    clock.current = expires_at + timedelta(minutes=1)
    assert of(await report(world, rule="related_party"), "related_party") == []


async def test_related_pairs_are_read_a_few_hundred_at_a_time(app, world: World, clock, monkeypatch) -> None:
    """Each query names at most PAIRS_PER_QUERY pairs, a number SQLite reads (1,000 pairs in one
    query had been a 500 there); the findings are the same whatever the chunk."""
    import uuid

    from services.voucher.anomalies import repository
    from services.voucher.anomalies import service as anomalies
    from services.voucher.anomalies.repository import Scope

    pairs = [(uuid.uuid4(), uuid.uuid4()) for _ in range(anomalies.PAIRS_PER_QUERY)]
    async with app.state.database.unit_of_work(write=False) as session:
        assert [r async for r in repository.rows_of_pairs(session, Scope(now=START), pairs)] == []
    await patch_parties(world, "enterprises", PARTY, "legal_representative")
    voucher = await world.issue(10_000_000)
    others = [await another_provider(app, world) for _ in range(2)]
    for n, (_, key) in enumerate([(world.provider, world.provider_key), *others]):
        await redeem(world, clock, START + timedelta(hours=1 + n), voucher, 1_000_000, f"PO-{n}", provider_key=key)
    for provider in (world.provider, *(p for p, _ in others)):
        changed = await world.client.patch(f"/v1/providers/{provider['id']}", json={
            "related_parties": [{"role": "shareholder", "party_id": PARTY}]},
            headers=auth(world.operator, **{"If-Match": (await world.client.get(
                f"/v1/providers/{provider['id']}", headers=auth(world.operator))).headers["etag"]}))
        assert changed.status_code == 200, changed.text
    whole = of(await report(world, rule="related_party"), "related_party")
    assert len(whole) == 3
    monkeypatch.setattr(anomalies, "PAIRS_PER_QUERY", 1)
    assert of(await report(world, rule="related_party"), "related_party") == whole
    monkeypatch.undo()
    # 1,200 related pairs more, with no redemption between them: one query naming every pair
    # was past SQLite's expression depth (a 500); read a few hundred at a time, the report is
    # the same three findings.
    real = repository.pairs_with_parties
    ours, theirs = ([{"role": "legal_representative", "party_id": PARTY}], [{"role": "shareholder", "party_id": PARTY}])

    async def many(session: Any, scope: Any) -> list[Any]:
        return [*await real(session, scope),
                *((uuid.uuid4(), uuid.uuid4(), ours, theirs, "91330100MA2XXXXXXA", "91330100MA2YYYYYYB")
                  for _ in range(1_200))]

    monkeypatch.setattr(repository, "pairs_with_parties", many)
    assert of(await report(world, rule="related_party"), "related_party") == whole


async def test_unrelated_parties_are_not_reported(world: World, clock) -> None:
    await patch_parties(world, "enterprises", PARTY, "legal_representative")
    await patch_parties(world, "providers", "sha256:ffffffffffffffffffff", "legal_representative")
    voucher = await world.issue(10_000_000)
    await redeem(world, clock, START + timedelta(hours=1), voucher, 1_000_000, "PO-1")
    assert of(await report(world), "related_party") == []


# -- 2. order splitting ---------------------------------------------------------------------------------


async def test_orders_just_under_the_programmes_maximum_within_a_week_are_a_split(app, client, clock) -> None:
    clock.current = START
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, max_per_voucher=1_000_000)
    voucher = await world.issue(1_000_000)
    for day, spend in ((0, 950_000), (2, 999_999), (5, 900_000)):
        await redeem(world, clock, START + timedelta(days=day, hours=1), voucher, spend, f"PO-{day}")
    found = of(await report(world, rule="order_splitting"), "order_splitting")
    assert len(found) == 1
    evidence = found[0]["evidence"]
    assert evidence["order_references"] == ["PO-0", "PO-2", "PO-5"]
    assert evidence["order_amounts"] == [950_000, 999_999, 900_000]
    assert evidence["figures"]["threshold"] == 1_000_000 and evidence["figures"]["lower_bound"] == 900_000
    assert "maximum per voucher" in found[0]["explanation"]
    # Only two of them within three days: no split.
    assert of(await report(world, rule="order_splitting", split_window_days=3), "order_splitting") == []


async def test_orders_not_just_under_the_threshold_are_not_a_split(world: World, clock) -> None:
    voucher = await world.issue(10_000_000)
    for day, spend in ((0, 950_000), (1, 1_000_000), (2, 899_999), (3, 990_000)):
        await redeem(world, clock, START + timedelta(days=day, hours=1), voucher, spend, f"PO-{day}")
    params = {"rule": "order_splitting", "split_threshold": 1_000_000}
    assert of(await report(world, **params), "order_splitting") == []
    found = of(await report(world, **params, split_min_orders=2), "order_splitting")
    assert [f["evidence"]["order_references"] for f in found] == [["PO-0", "PO-3"]]
    # 899,999 is just over 10 % below; an 11 % margin takes it in.
    wide = of(await report(world, **params, split_margin_bps=1100), "order_splitting")
    assert [f["evidence"]["order_references"] for f in wide] == [["PO-0", "PO-2", "PO-3"]]


# -- 3. velocity ------------------------------------------------------------------------------------------


async def test_a_week_far_above_the_pairs_history_is_a_spike(world: World, clock) -> None:
    voucher = await world.issue(10_000_000)
    for day, spend in ((0, 100_000), (8, 100_000), (15, 100_000)):
        await redeem(world, clock, START + timedelta(days=day), voucher, spend, f"PO-{day}")
    spike = await redeem(world, clock, START + timedelta(days=22), voucher, 1_000_000, "PO-22")
    until = START + timedelta(days=23)
    found = of(await report(world, rule="velocity_spike", until=until.isoformat()), "velocity_spike")
    assert len(found) == 1
    evidence = found[0]["evidence"]
    assert evidence["redemption_ids"] == [spike["id"]]
    assert evidence["figures"]["recent_amount"] == 300_000
    assert evidence["figures"]["average_per_window"] == 30_000 and evidence["figures"]["earlier_windows"] == 3
    assert datetime.fromisoformat(evidence["window_end"]) == until
    assert "¥3,000.00" in found[0]["explanation"] and "¥300.00" in found[0]["explanation"]
    # With the clock as the end (no `until`), the same week is judged.
    clock.current = until
    assert len(of(await report(world, rule="velocity_spike"), "velocity_spike")) == 1
    # A larger factor is not exceeded.
    assert of(await report(world, rule="velocity_spike", velocity_factor=10), "velocity_spike") == []


async def test_steady_use_or_short_history_is_not_a_spike(world: World, clock) -> None:
    voucher = await world.issue(10_000_000)
    for day, spend in ((0, 100_000), (8, 100_000), (15, 100_000), (22, 300_000)):
        await redeem(world, clock, START + timedelta(days=day), voucher, spend, f"PO-{day}")
    clock.current = START + timedelta(days=23)
    assert of(await report(world, rule="velocity_spike"), "velocity_spike") == []  # 3× exactly is not more
    # Only one earlier week inside the range: too little history to judge.
    since = (START + timedelta(days=10)).isoformat()
    assert of(await report(world, rule="velocity_spike", since=since, velocity_factor=1), "velocity_spike") == []


# -- 4. expiry burst ----------------------------------------------------------------------------------------


async def test_a_voucher_used_up_just_before_expiry_is_a_burst(app, client, clock) -> None:
    clock.current = START
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, voucher_validity_days=30)
    rushed, steady = await world.issue(10_000_000), await world.issue(10_000_000)
    expires = datetime.fromisoformat(rushed["expires_at"])
    await redeem(world, clock, START + timedelta(days=1), rushed, 100_000, "PO-R1")
    await redeem(world, clock, START + timedelta(days=1), steady, 1_000_000, "PO-S1")
    late = await redeem(world, clock, expires - timedelta(days=2), rushed, 1_000_000, "PO-R2")
    await redeem(world, clock, expires - timedelta(days=2), steady, 300_000, "PO-S2")  # 23 % of its total
    found = of(await report(world, rule="expiry_burst"), "expiry_burst")
    assert [f["voucher_ids"] for f in found] == [[rushed["id"]]]
    evidence = found[0]["evidence"]
    assert evidence["redemption_ids"] == [late["id"]]
    assert evidence["figures"]["burst_amount"] == 300_000 and evidence["figures"]["total_redeemed"] == 330_000
    assert evidence["figures"]["share_bps"] == 9090
    assert datetime.fromisoformat(evidence["window_end"]) == expires
    assert "90.9%" in found[0]["explanation"]
    # Below the minimum amount: not a burst.
    assert of(await report(world, rule="expiry_burst", expiry_min_amount=300_001), "expiry_burst") == []
    # Only the last day counted: nothing was redeemed in it.
    assert of(await report(world, rule="expiry_burst", expiry_days=1), "expiry_burst") == []
    # A report of the last week: the share is still of all the voucher redeemed. The steady
    # voucher had been flagged at 100 %, its earlier use outside the report.
    week = (expires - timedelta(days=7)).isoformat()
    found = of(await report(world, rule="expiry_burst", since=week), "expiry_burst")
    assert [(f["voucher_ids"], f["evidence"]["figures"]["total_redeemed"]) for f in found] == [([rushed["id"]], 330_000)]
    # Nor is a burst before the report's start counted in it.
    after = (expires - timedelta(days=1)).isoformat()
    assert of(await report(world, rule="expiry_burst", since=after), "expiry_burst") == []


# -- 5. one reference under several enterprises ------------------------------------------------------------


async def test_one_order_reference_under_two_enterprises_is_reported(app, world: World, clock) -> None:
    enterprise, _ = await another_enterprise(app, world)
    provider, provider_key = await another_provider(app, world)
    mine = await world.issue(10_000_000)
    theirs = await create(world.client, world.operator, "/v1/vouchers", {
        "programme_id": world.programme["id"], "enterprise_id": enterprise["id"], "face_value": 10_000_000})
    first = await redeem(world, clock, START + timedelta(hours=1), mine, 1_000_000, "PO-SHARED")
    # typed with a zero for the O (issue 19, finding 5): compared as contract numbers are
    second = await redeem(world, clock, START + timedelta(hours=2), theirs, 2_000_000, "p0-shared",
                          provider_key=provider_key, uscc=enterprise["uscc"])
    # Same enterprise, two providers, one reference: not reported.
    await redeem(world, clock, START + timedelta(hours=3), mine, 1_000_000, "PO-MINE")
    await redeem(world, clock, START + timedelta(hours=4), mine, 1_000_000, "PO-MINE", provider_key=provider_key)
    found = of(await report(world, rule="shared_reference"), "shared_reference")
    assert len(found) == 1
    assert sorted(found[0]["enterprise_ids"]) == sorted([world.enterprise["id"], enterprise["id"]])
    assert sorted(found[0]["provider_ids"]) == sorted([world.provider["id"], provider["id"]])
    assert found[0]["evidence"]["redemption_ids"] == [first["id"], second["id"]]
    assert "PO-SHARED" in found[0]["explanation"]


async def test_one_invoice_cannot_stand_in_two_enterprises_claims(app, client, clock) -> None:
    """Since an invoice is identified nationally (migration 0012), a second standing claim of it is
    refused when filed, whoever files it: the report has no shared invoice to show; numbers that
    are merely alike in another invoice (another code) are other invoices."""
    clock.current = START
    world = await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000})
    enterprise, enterprise_key = await another_enterprise(app, world)
    provider, _ = await another_provider(app, world)
    mine = await world.issue(10_000_000)
    theirs = await create(world.client, world.operator, "/v1/vouchers", {
        "programme_id": world.programme["id"], "enterprise_id": enterprise["id"], "face_value": 10_000_000})

    async def claim(voucher: dict[str, Any], key: str, provider_id: str, invoice: str, n: int,
                    status: int = 201, code: str = "3300231130") -> dict[str, Any]:
        body = {"voucher_id": voucher["id"], "provider_id": provider_id, "contract_number": f"HT-{n}",
                "invoice_number": invoice, "invoice_code": code, "invoice_date": "2026-03-01",
                "amount_paid": 1_000_000,
                "line_items": [{"category": "accelerator:domestic", "amount": 1_000_000,
                                "accelerator": "Ascend 910B", "hours_milli": 1000}],
                "documents": [{"file_name": f"{n}.pdf", "media_type": "application/pdf", "size": 1,
                               "sha256": f"{n:064x}"}]}
        response = await world.client.post("/v1/claims", json=body, headers=auth(key, **fresh_key()))
        assert response.status_code == status, response.text
        return response.json()  # type: ignore[no-any-return]

    await claim(mine, world.enterprise_key, world.provider["id"], "44031234", 1)
    refused = await claim(theirs, enterprise_key, provider["id"], "44O3I234", 2, status=409)  # O and I for 0 and 1
    assert refused["code"] == "already_filed_elsewhere"  # another enterprise's: not saying which
    await claim(theirs, enterprise_key, provider["id"], "44031234", 3, code="330023113011")  # another invoice
    found = of(await report(world, rule="shared_reference"), "shared_reference")
    assert found == []


# -- who may read it, in which language, with which parameters ------------------------------------------------


async def test_operators_and_auditors_read_it_enterprises_and_providers_may_not(world: World) -> None:
    assert (await fetch(world, key=world.auditor)).status_code == 200
    assert (await fetch(world, key=world.operator)).status_code == 200
    assert_problem(await fetch(world, key=world.enterprise_key), 403, "insufficient_scope")
    assert_problem(await fetch(world, key=world.provider_key), 403, "insufficient_scope")
    assert_problem(await world.client.get(PATH), 401, "unauthenticated")


async def test_explanations_follow_accept_language(world: World, clock) -> None:
    await patch_parties(world, "enterprises", PARTY, "legal_representative")
    voucher = await world.issue(10_000_000)
    await redeem(world, clock, START + timedelta(hours=1), voucher, 1_000_000, "PO-1")
    await patch_parties(world, "providers", PARTY, "shareholder")
    zh = await fetch(world, language="zh-CN,zh;q=0.9,en;q=0.5", rule="related_party")
    assert zh.headers["content-language"] == "zh-CN"
    explanation = zh.json()["findings"][0]["explanation"]
    assert "关联方" in explanation and "法定代表人" in explanation and "¥3,000.00" in explanation
    assert "元" not in explanation and "3000.00" not in explanation
    en = await fetch(world, language="en-GB", rule="related_party")
    assert en.headers["content-language"] == "en"
    assert "related part" in en.json()["findings"][0]["explanation"] and "关联" not in en.text
    assert (await fetch(world, rule="related_party")).json()["findings"][0]["explanation"].startswith("The ")


async def test_parameters_are_echoed_with_their_defaults(world: World) -> None:
    document = await report(world)
    assert document["parameters"] | {"as_of": None} == {
        "programme_id": None, "since": None, "until": None, "as_of": None,
        "rules": ["related_party", "order_splitting", "velocity_spike", "expiry_burst", "shared_reference"],
        "split_min_orders": 3, "split_margin_bps": 1000, "split_threshold": None, "split_window_days": 7,
        "velocity_window_days": 7, "velocity_factor": 3, "velocity_min_windows": 2, "expiry_days": 3,
        "expiry_share_bps": 5000, "expiry_min_amount": 100_000, "limit": 500,
    }
    assert datetime.fromisoformat(document["parameters"]["as_of"]) == START
    assert document["findings"] == [] and document["truncated"] is False
    chosen = await report(world, rule=["shared_reference", "related_party", "related_party"],
                          programme_id=world.programme["id"], velocity_factor=5)
    assert chosen["parameters"]["rules"] == ["related_party", "shared_reference"]
    assert chosen["parameters"]["velocity_factor"] == 5 and set(chosen["counts"]) == {"related_party",
                                                                                        "shared_reference"}


async def test_limit_truncates_and_counts_everything(world: World, clock) -> None:
    voucher = await world.issue(10_000_000)
    for day in (0, 1, 2, 10, 11, 12):
        await redeem(world, clock, START + timedelta(days=day), voucher, 950_000, f"PO-{day}")
    params = {"rule": "order_splitting", "split_threshold": 1_000_000}
    assert len((await report(world, **params))["findings"]) == 2
    cut = await report(world, **params, limit=1)
    assert len(cut["findings"]) == 1 and cut["truncated"] is True and cut["counts"] == {"order_splitting": 2}
    assert cut["findings"][0]["evidence"]["order_references"] == ["PO-0", "PO-1", "PO-2"]
    other = await create(world.client, world.operator, "/v1/programmes", {
        "code": "other-programme", "name": "Other", "kind": "compute", "unit": "CNY", "mode": "provider_redemption",
        "budget_total": 1_000_000_000, "rate_table": {"accelerator:domestic": 3000}, "stacking_ceiling_bps": 10_000,
        "enterprise_cap": 100_000_000, "max_per_voucher": 100_000_000, "publicity_days": 5})
    assert (await report(world, **params, programme_id=other["id"]))["findings"] == []
    assert (await report(world, **params, programme_id=world.programme["id"]))["counts"] == {"order_splitting": 2}
    window = {"since": (START + timedelta(days=10)).isoformat(), "until": (START + timedelta(days=13)).isoformat()}
    only_later = await report(world, **params, **window)
    assert [f["evidence"]["order_references"] for f in only_later["findings"]] == [["PO-10", "PO-11", "PO-12"]]


@pytest.mark.parametrize("params", [
    {"split_min_orders": 1}, {"split_min_orders": 1001}, {"split_margin_bps": 0}, {"split_margin_bps": 5001},
    {"split_threshold": 0}, {"split_threshold": 10**15 + 1}, {"split_window_days": 0}, {"split_window_days": 367},
    {"velocity_window_days": 0}, {"velocity_factor": 0}, {"velocity_min_windows": 0}, {"expiry_days": 0},
    {"expiry_share_bps": 0}, {"expiry_share_bps": 10_001}, {"expiry_min_amount": -1}, {"limit": 0},
    {"limit": 5001}, {"rule": "bogus"}, {"velocity_factor": "2.5"}, {"velocity_factor": "1e3"},
    {"programme_id": "not-a-uuid"}, {"since": "2026-03-01T00:00:00"}, {"until": "yesterday"},
    {"since": "2026-03-02T00:00:00Z", "until": "2026-03-02T00:00:00Z"},
    {"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T08:00:00+08:00"},
])
async def test_bad_parameters_are_422_problems(world: World, params: dict[str, Any]) -> None:
    problem = assert_problem(await fetch(world, **params), 422, "validation_failed")
    names = {e["pointer"].split("/")[1] for e in problem["errors"]}
    assert names and names <= set(params) and all(e["location"] == "query" for e in problem["errors"])


async def test_an_unknown_programme_is_404(world: World) -> None:
    assert_problem(await fetch(world, programme_id="0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e99"), 404, "not_found")
