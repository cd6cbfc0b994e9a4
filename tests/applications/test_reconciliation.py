"""Reconciliation sees every way commitments could drift from the applications that explain
them, in both directions; and rules stored before validation existed refuse, never crash.
Each tampering is undone before the test ends (the app fixture asserts a clean ledger)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import update

from services.voucher.tables import Application, EnterprisePeriodUsage, Programme
from tests.support import assert_problem, auth, create, fresh_key
from tests.world import World, build_world


async def _world(app: Any, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, budget_total=100_000_000, enterprise_cap=30_000_000,
                             max_per_voucher=20_000_000, publicity_days=5)


async def _approved(world: World, amount: int = 10_000_000) -> dict[str, Any]:
    application = await create(world.client, world.enterprise_key, "/v1/applications", {
        "programme_id": world.programme["id"], "requested_amount": amount, "purpose": "training"})
    response = await world.client.post(f"/v1/applications/{application['id']}/approve", json={"amount": amount},
                                       headers=auth(world.operator, **fresh_key()))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def _execute(app: Any, statement: Any) -> None:
    async with app.state.database.unit_of_work() as session:
        await session.execute(statement)


def _usage(world: World) -> Any:
    return update(EnterprisePeriodUsage).where(
        EnterprisePeriodUsage.programme_id == uuid.UUID(world.programme["id"]),
        EnterprisePeriodUsage.enterprise_id == uuid.UUID(world.enterprise["id"]),
    )


async def test_cap_committed_without_an_approval_is_reported(app, client: httpx.AsyncClient) -> None:
    world = await _world(app, client)
    await _approved(world)
    await _execute(app, _usage(world).values(committed=EnterprisePeriodUsage.committed + 1))
    differences = (await world.reconciliation())["commitment_differences"]
    assert [(d["what"], d["recorded"], d["expected"]) for d in differences] == [
        ("enterprise cap committed", 10_000_001, 10_000_000)]
    await _execute(app, _usage(world).values(committed=EnterprisePeriodUsage.committed - 1))
    assert (await world.reconciliation())["is_clean"]


async def test_budget_committed_for_no_application_is_reported(app, client: httpx.AsyncClient) -> None:
    world = await _world(app, client)
    approved = await _approved(world)
    moved = update(Application).where(Application.id == uuid.UUID(approved["id"]))
    await _execute(app, moved.values(status="rejected"))  # ended, its approved amount still written
    recon = await world.reconciliation()
    assert not recon["is_clean"]
    assert {(d["what"], d.get("committed"), d.get("approved", d.get("expected")))
            for d in recon["commitment_differences"]} == {
        ("programme budget committed", 10_000_000, 0), ("enterprise cap committed", None, 0)}
    await _execute(app, moved.values(status="publicity"))
    assert (await world.reconciliation())["is_clean"]


async def test_an_approval_with_nothing_posted_is_reported(app, client: httpx.AsyncClient) -> None:
    """The direction an inner join would miss: approved applications, no committed postings."""
    world = await _world(app, client)
    approved = await _approved(world)
    other = await build_world(app, client, budget_total=100_000_000, enterprise_cap=30_000_000,
                              max_per_voucher=20_000_000)
    moved = update(Application).where(Application.id == uuid.UUID(approved["id"]))
    await _execute(app, moved.values(programme_id=uuid.UUID(other.programme["id"])))
    whats = {(d["what"], str(d["programme_id"]).replace("-", ""))
             for d in (await world.reconciliation())["commitment_differences"]}
    assert ("programme budget committed", other.programme["id"].replace("-", "")) in whats
    assert ("programme budget committed", world.programme["id"].replace("-", "")) in whats
    await _execute(app, moved.values(programme_id=uuid.UUID(world.programme["id"])))
    assert (await world.reconciliation())["is_clean"]


async def test_granted_cap_that_no_voucher_explains_is_reported(app, client: httpx.AsyncClient) -> None:
    world = await _world(app, client)
    await world.issue(5_000_000)
    await _execute(app, _usage(world).values(granted=EnterprisePeriodUsage.granted - 1))
    differences = (await world.reconciliation())["commitment_differences"]
    assert [(d["what"], d["recorded"], d["expected"]) for d in differences] == [
        ("enterprise cap granted", 4_999_999, 5_000_000)]
    await _execute(app, _usage(world).values(granted=EnterprisePeriodUsage.granted + 1))
    assert (await world.reconciliation())["is_clean"]


async def test_rules_stored_before_validation_refuse_instead_of_crashing(app, client: httpx.AsyncClient) -> None:
    world = await _world(app, client)
    legacy = update(Programme).where(Programme.id == uuid.UUID(world.programme["id"]))
    await _execute(app, legacy.values(eligibility_rules={"region": "330110"}))
    submitted = await client.post("/v1/applications", json={
        "programme_id": world.programme["id"], "requested_amount": 1_000_000, "purpose": "training"},
        headers=auth(world.enterprise_key, **fresh_key()))
    problem = assert_problem(submitted, 409, "eligibility_rules_invalid")
    assert problem["version"] == 1
    dry = await client.post("/v1/eligibility/dry-run", json={
        "programme_id": world.programme["id"], "enterprise_id": world.enterprise["id"]},
        headers=auth(world.operator))
    assert_problem(dry, 409, "eligibility_rules_invalid")
    listed = await client.get("/v1/applications", headers=auth(world.operator))
    assert listed.json()["items"] == []
