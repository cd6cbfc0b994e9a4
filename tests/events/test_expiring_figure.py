"""The `voucher.expiring` announcement tells the SME its available balance; like every read it
must count a hold whose TTL has passed as released (DESIGN §2), whether or not a job ran."""
from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from services.voucher import jobs
from services.voucher.tables import OutboxEvent
from tests.world import World, build_world


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=200_000_000,
                             max_per_voucher=100_000_000, rate_table={"accelerator:domestic": 3000},
                             voucher_validity_days=3)


async def test_expiring_announcement_counts_lapsed_holds_as_released(app, world: World, clock) -> None:
    voucher = await world.issue(10_000_000)
    assert (await world.hold(voucher, 1_000_000, order="PO-1")).status_code == 201
    clock.advance(seconds=1801)  # the hold has lapsed; the expire-holds job has not run
    shown = (await world.voucher(voucher["id"]))["balances"]["available"]
    assert shown == 10_000_000
    await jobs.run_once(app.state.database, "announce-expiring", clock())
    async with app.state.database.unit_of_work(write=False) as session:
        event = (await session.execute(select(OutboxEvent).where(OutboxEvent.type == "voucher.expiring"))).scalar_one()
    assert event.data["available"] == shown, event.data
