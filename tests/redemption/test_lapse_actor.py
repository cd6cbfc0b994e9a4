"""A hold that lapsed is released by the next hold on its voucher; the audit must not name the
other provider (whose request merely triggered the posting) as the actor of that release."""
from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from services.voucher.tables import AuditEvent
from tests.support import auth, create, make_key, provider_payload
from tests.world import World, build_world


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=200_000_000,
                             max_per_voucher=100_000_000, rate_table={"accelerator:domestic": 3000})


async def _second_provider(app, client: httpx.AsyncClient, world: World) -> str:
    other = await create(client, world.operator, "/v1/providers", provider_payload())
    ok = await client.post(f"/v1/providers/{other['id']}/approve", json={"reason": "ok"}, headers=auth(world.operator))
    assert ok.status_code == 200, ok.text
    enrolled = await client.put(f"/v1/programmes/{world.programme['id']}/enrolments/{other['id']}",
                                headers=auth(world.operator))
    assert enrolled.status_code == 201, enrolled.text
    return await make_key(app, "provider", provider_id=uuid.UUID(other["id"]))


async def test_release_of_a_lapsed_hold_is_not_attributed_to_another_provider(
    app, client: httpx.AsyncClient, world: World, clock
) -> None:
    other_key = await _second_provider(app, client, world)
    voucher = await world.issue(10_000_000)
    mine = (await world.hold(voucher, 1_000_000, order="PO-P")).json()
    clock.advance(seconds=1801)  # the hold's TTL (30 min) has passed; no job has run
    theirs = await world.hold(voucher, 1_000_000, order="PO-Q", provider_key=other_key, key="q-hold-1")
    assert theirs.status_code == 201, theirs.text
    async with app.state.database.unit_of_work(write=False) as session:
        event = (await session.execute(select(AuditEvent).where(
            AuditEvent.action == "hold.expired", AuditEvent.resource_id == uuid.UUID(mine["id"])))).scalar_one()
        placed_by_q = (await session.execute(select(AuditEvent).where(
            AuditEvent.action == "hold.placed", AuditEvent.resource_id == uuid.UUID(theirs.json()["id"])))).scalar_one()
    # The expiry of provider P's hold is nobody's act: it must not carry provider Q's principal,
    # key or Idempotency-Key (Q's retry would not redo it).
    assert event.actor_principal_id != placed_by_q.actor_principal_id, (
        f"P's hold.expired attributed to provider Q: role={event.actor_role} principal={event.actor_principal_id} "
        f"key={event.actor_key_id} idempotency_key={event.idempotency_key}")
    assert event.idempotency_key != "q-hold-1"


async def test_a_providers_own_void_of_its_lapsed_hold_stays_the_providers(app, world: World, clock) -> None:
    """Voiding that very hold is the provider's act, and its retry replays it: the event names
    the provider and its Idempotency-Key, with its words, though the hold had lapsed (a review
    of the change above found it recorded as the system's)."""
    voucher = await world.issue(10_000_000)
    hold = (await world.hold(voucher, 1_000_000, order="PO-L")).json()
    clock.advance(seconds=1801)  # the TTL has passed; no job ran
    voided = await world.post(f"/v1/redemptions/{hold['id']}/void", {"reason": "customer cancelled"}, idem="void-PO-L")
    assert voided.status_code == 200, voided.text
    async with app.state.database.unit_of_work(write=False) as session:
        placed = (await session.execute(select(AuditEvent).where(
            AuditEvent.action == "hold.placed", AuditEvent.resource_id == uuid.UUID(hold["id"])))).scalar_one()
        event = (await session.execute(select(AuditEvent).where(
            AuditEvent.resource_id == uuid.UUID(hold["id"]),
            col(AuditEvent.action).in_(["hold.expired", "hold.voided"])))).scalar_one()
    assert event.action == "hold.expired" and event.after["note"] == "customer cancelled", event.after
    assert event.actor_principal_id == placed.actor_principal_id and event.idempotency_key == "void-PO-L"
