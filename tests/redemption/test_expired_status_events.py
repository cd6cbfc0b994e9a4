"""A voucher past its expiry whose expiry no job has posted yet keeps its stored status
(`active` or `exhausted`) until the job runs. A void or a refund on it must not flip that
stored status, nor record a `voucher.active` or `voucher.exhausted` event: the next event
of such a voucher is its `voucher.expired`, once (a review suspected a stray event here)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from services.voucher import jobs
from services.voucher.tables import AuditEvent, Voucher
from tests.world import World, build_world


async def _voucher_events(app: Any, voucher_id: str) -> list[str]:
    async with app.state.database.unit_of_work(write=False) as session:
        rows = (await session.execute(
            select(AuditEvent.action).where(AuditEvent.voucher_id == uuid.UUID(voucher_id),
                                            AuditEvent.action.like("voucher.%"))  # type: ignore[attr-defined]
            .order_by(AuditEvent.occurred_at, AuditEvent.id))).scalars().all()
    return list(rows)


async def _stored_status(app: Any, voucher_id: str) -> str:
    async with app.state.database.unit_of_work(write=False) as session:
        return (await session.execute(select(Voucher.status).where(
            Voucher.id == uuid.UUID(voucher_id)))).scalar_one()  # type: ignore[arg-type]


async def _expired_from(app: Any, voucher_id: str) -> str:
    """The stored status the expiry job found: its `voucher.expired` event's `before`."""
    async with app.state.database.unit_of_work(write=False) as session:
        event = (await session.execute(select(AuditEvent).where(
            AuditEvent.voucher_id == uuid.UUID(voucher_id), AuditEvent.action == "voucher.expired"))).scalar_one()
    return str(event.before["status"])


async def _past_expiry(world: World, voucher: dict[str, Any], clock: Any, *, before: int = 0) -> None:
    expires_at = datetime.fromisoformat(voucher["expires_at"])
    clock.advance(seconds=(expires_at - clock()).total_seconds() + before)


async def test_refund_on_an_exhausted_voucher_past_expiry_records_no_status_event(app, client: httpx.AsyncClient,
                                                                                   clock) -> None:
    world = await build_world(app, client, rate_table={"accelerator:domestic": 10_000})
    voucher = await world.issue(1_000_000)
    redeemed = await world.hold(voucher, 1_000_000, order="PO-X1", path="/v1/redemptions")
    assert redeemed.status_code == 201, redeemed.text
    assert (await world.voucher(voucher["id"]))["status"] == "exhausted"
    await _past_expiry(world, voucher, clock, before=60)
    refunded = await world.post(f"/v1/redemptions/{redeemed.json()['id']}/refunds",
                                {"amount": 400_000, "reason": "returned"}, idem="refund-X1")
    assert refunded.status_code == 201, refunded.text
    assert refunded.json()["destination"] == "pool"
    assert await _voucher_events(app, voucher["id"]) == ["voucher.issued", "voucher.exhausted"]
    assert await _stored_status(app, voucher["id"]) == "exhausted"
    assert await jobs.run_once(app.state.database, "expire-vouchers", clock()) == 1
    assert await _expired_from(app, voucher["id"]) == "exhausted"
    assert await _voucher_events(app, voucher["id"]) == ["voucher.issued", "voucher.exhausted", "voucher.expired"]
    seen = await world.voucher(voucher["id"])
    assert (seen["status"], seen["balances"]) == ("expired", {"available": 0, "held": 0, "used": 600_000})
    assert (await world.reconciliation())["is_clean"]


async def test_void_and_refund_on_an_active_voucher_past_expiry_record_no_status_event(
        app, client: httpx.AsyncClient, clock) -> None:
    """A capture and a hold of the rest, then past the expiry: the void returns the hold to the
    voucher's available balance (the job moves it to the pool later) and the refund goes to the
    pool, so the stored `active` stays; only the job's `voucher.expired` follows. (No void or
    refund can make the balances say otherwise here; this pins the events and the stored
    status, and that neither posts the expiry itself.)"""
    world = await build_world(app, client, rate_table={"accelerator:domestic": 10_000})
    voucher = await world.issue(1_000_000)
    captured = await world.hold(voucher, 300_000, order="PO-C", path="/v1/redemptions")
    assert captured.status_code == 201, captured.text
    await _past_expiry(world, voucher, clock, before=-600)
    held = await world.hold(voucher, 700_000, order="PO-H")
    assert held.status_code == 201 and held.json()["held_amount"] == 700_000, held.text
    clock.advance(seconds=660)  # the voucher expired a minute ago; the hold's TTL has not passed
    voided = await world.post(f"/v1/redemptions/{held.json()['id']}/void", {"reason": "cancelled"}, idem="void-H")
    assert voided.status_code == 200, voided.text
    assert voided.json()["void_reason"] == "voucher_expired"
    refunded = await world.post(f"/v1/redemptions/{captured.json()['id']}/refunds",
                                {"amount": 300_000, "reason": "returned"}, idem="refund-C")
    assert refunded.status_code == 201 and refunded.json()["destination"] == "pool", refunded.text
    assert await _voucher_events(app, voucher["id"]) == ["voucher.issued"]
    assert await _stored_status(app, voucher["id"]) == "active"
    assert await jobs.run_once(app.state.database, "expire-vouchers", clock()) == 1
    assert await _expired_from(app, voucher["id"]) == "active"
    assert await _voucher_events(app, voucher["id"]) == ["voucher.issued", "voucher.expired"]
    seen = await world.voucher(voucher["id"])
    assert (seen["status"], seen["balances"]) == ("expired", {"available": 0, "held": 0, "used": 0})
    assert (await world.reconciliation())["is_clean"]
