"""Mutation-testing review: instants and balances at their exact boundaries, over HTTP
(DESIGN §2–§4). Each test kills a mutant of the value code that the rest of the suite let live."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from tests.support import assert_problem, auth
from tests.world import World, build_world


async def test_an_expired_hold_on_another_voucher_does_not_use_up_the_tier(app, client: httpx.AsyncClient,
                                                                             clock) -> None:
    """A hold past its TTL is void when read: its order's spend no longer counts toward the
    enterprise's tier position, even before the expiry job posts its release (DESIGN §1, §2)."""
    world = await build_world(app, client, enterprise_cap=100_000_000, max_per_voucher=10_000_000,
                              voucher_validity_days=900, rate_table={"accelerator:domestic": 3000},
                              tiers=[{"spend_up_to": 1_000_000, "rate_bps": 5000, "categories": None}])
    a = await world.issue(10_000_000)
    clock.advance(days=366)  # next period: a second grant, and A still valid
    b = await world.issue(10_000_000)
    assert (await world.hold(a, 1_000_000, order="O1")).json()["held_amount"] == 500_000  # the whole tier
    clock.advance(seconds=1801)  # A's hold is void from now on, though no job has posted it
    second = (await world.hold(b, 1_000_000, order="O2")).json()
    assert (await world.computation(second))["spend_this_period_before"] == 0
    assert second["held_amount"] == 500_000  # the tier again, not the table's 30 %


async def test_a_one_step_redeem_that_takes_what_an_expired_hold_freed_exhausts_the_voucher(
        world: World, clock) -> None:
    """A one-step redeem first releases its voucher's holds past their TTL, then may take all of
    what they freed: the voucher is then exhausted (nothing available, nothing held)."""
    voucher = await world.issue(3_000_000)
    assert (await world.hold(voucher, 10_000_000, order="PO-1")).json()["held_amount"] == 3_000_000
    clock.advance(seconds=1801)
    redeemed = await world.hold(voucher, 10_000_000, order="PO-2", path="/v1/redemptions")
    assert redeemed.status_code == 201 and redeemed.json()["captured_amount"] == 3_000_000
    after = await world.voucher(voucher["id"])
    assert after["balances"] == {"available": 0, "held": 0, "used": 3_000_000}
    assert after["status"] == "exhausted"


async def test_a_refund_to_the_pool_does_not_reactivate_an_exhausted_voucher(app, world: World, clock) -> None:
    """A refund on a voucher past its expiry goes to the programme's pool, not the voucher: its
    available balance stays 0, so an exhausted voucher whose expiry no job has posted yet stays
    exhausted (no `voucher.active` event, no status change)."""
    from sqlalchemy import select
    from sqlmodel import col

    from services.voucher.tables import AuditEvent, Voucher

    voucher, _, _ = await world.refunded_to_the_pool(clock)
    async with app.state.database.unit_of_work(write=False) as session:
        stored = (await session.execute(select(col(Voucher.status)).where(col(Voucher.code) == voucher["code"]))
                  ).scalar_one()
        actions = (await session.execute(select(col(AuditEvent.action)).where(
            col(AuditEvent.resource_type) == "voucher"))).scalars().all()
    assert stored == "exhausted"
    assert "voucher.active" not in actions
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 0, "held": 0, "used": 200_000}


async def test_refund_of_a_voided_hold_is_refused_as_not_captured(world: World) -> None:
    """Only a captured redemption is refundable: a voided hold says so (not a refund amount error)."""
    voucher = await world.issue(3_000_000)
    hold = (await world.hold(voucher, 1_000_000, order="PO-1")).json()
    assert (await world.post(f"/v1/redemptions/{hold['id']}/void", idem="v")).status_code == 200
    refused = await world.post(f"/v1/redemptions/{hold['id']}/refunds", {"amount": 1, "reason": "x"}, idem="r")
    problem = assert_problem(refused, 409, "redemption_not_captured")
    assert problem.get("current_status") == "voided"
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 3_000_000, "held": 0, "used": 0}


async def test_a_hold_whose_ttl_ends_as_its_voucher_expires_lapses_by_its_ttl(world: World, clock) -> None:
    """`lapse`: the voucher's expiry is the reason only when it comes strictly first; a hold
    whose TTL ends at the very instant the voucher expires lapsed by its TTL (`hold_expired`)."""
    voucher = await world.issue(3_000_000)
    expires = datetime.fromisoformat(voucher["expires_at"])
    clock.current = expires - timedelta(seconds=1800)
    hold = (await world.hold(voucher, 1_000_000, order="PO-TIE")).json()
    assert datetime.fromisoformat(hold["hold_expires_at"]) == expires
    clock.current = expires
    read = (await world.client.get(f"/v1/redemptions/{hold['id']}", headers=auth(world.provider_key))).json()
    assert (read["status"], read["void_reason"]) == ("voided", "expired")
    assert_problem(await world.post(f"/v1/redemptions/{hold['id']}/capture", idem="late"), 409, "hold_expired")


async def test_a_refund_on_a_suspended_voucher_goes_back_to_the_voucher(world: World) -> None:
    """A suspended voucher can still be used once resumed: a refund returns its value there,
    not to the programme's pool (DESIGN §2)."""
    voucher = await world.issue(3_000_000)
    redeemed = (await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")).json()
    suspended = await world.post(f"/v1/vouchers/{voucher['id']}/suspend", {"reason": "check"}, key=world.operator)
    assert suspended.status_code == 200, suspended.text
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 100_000, "reason": "r"})
    assert refund.status_code == 201, refund.text
    assert refund.json()["destination"] == "voucher"
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 2_800_000, "held": 0, "used": 200_000}


async def test_a_partial_capture_gives_the_released_rest_back_to_the_cap(app, client: httpx.AsyncClient) -> None:
    """Capturing less than is held releases the rest: off the voucher's held balance and off the
    enterprise's subsidy for the period, so the cap's room comes back (DESIGN §1, §2)."""
    world = await build_world(app, client, enterprise_cap=300_000, max_per_voucher=300_000,
                              rate_table={"accelerator:domestic": 3000})
    voucher = await world.issue(300_000)
    hold = (await world.hold(voucher, 1_000_000, order="O1")).json()
    assert hold["held_amount"] == 300_000
    captured = await world.post(f"/v1/redemptions/{hold['id']}/capture", {"amount": 100_000}, idem="c")
    assert captured.status_code == 200, captured.text
    again = await world.hold(voucher, 1_000_000, order="O2")
    assert again.status_code == 201, again.text
    assert again.json()["held_amount"] == 200_000
    assert (await world.computation(again))["subsidy_this_period_before"] == 100_000


async def test_a_refund_gives_its_subsidy_back_to_the_cap(app, client: httpx.AsyncClient) -> None:
    """A refund takes the refunded subsidy off the enterprise's subsidy for the period (its spend
    stays): the cap's room comes back by that much (DESIGN §1, §2)."""
    world = await build_world(app, client, enterprise_cap=300_000, max_per_voucher=300_000,
                              rate_table={"accelerator:domestic": 3000})
    voucher = await world.issue(300_000)
    redeemed = (await world.hold(voucher, 1_000_000, order="O1", path="/v1/redemptions")).json()
    assert redeemed["captured_amount"] == 300_000
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 100_000, "reason": "r"})
    assert refund.status_code == 201, refund.text
    again = await world.hold(voucher, 1_000_000, order="O2")
    assert again.status_code == 201, again.text
    assert again.json()["held_amount"] == 100_000
    computation = await world.computation(again, key=world.enterprise_key)
    assert computation["subsidy_this_period_before"] == 200_000
    assert computation["spend_this_period_before"] == 1_000_000
