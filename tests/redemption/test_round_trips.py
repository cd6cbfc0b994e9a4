"""Round trips per value operation on PostgreSQL (each pipelined batch is one; counted by the
driver and, for what SQLAlchemy sends, by db.py): a redeem or a hold is three — the voucher and
what the decision reads, the order and usage rows, the writes with the COMMIT — and a capture, a
void or a refund of an existing redemption two, its order and usage rows and accounts read and
locked in the same round trip as the redemption. One more is a regression of the value path
(docs/decisions.md, "Value engine")."""

from __future__ import annotations

from collections.abc import Awaitable

import httpx
import pytest

from services.voucher import driver
from tests.conftest import ENGINE
from tests.world import World, build_world

pytestmark = pytest.mark.skipif(ENGINE != "postgresql", reason="the driver's pipelined batches run on PostgreSQL")


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    # The key lookup cached, as in a served process whose listener is connected (the in-process
    # app runs none): what is counted is the operation's own round trips.
    app.state.key_cache.listening = True
    return await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=500_000_000,
                             max_per_voucher=100_000_000, rate_table={"accelerator:domestic": 5000})


async def counted(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    driver.flush_counts()
    before = driver.ROUND_TRIPS._value.get()  # noqa: SLF001
    response = await request
    driver.flush_counts()
    return response, driver.ROUND_TRIPS._value.get() - before  # noqa: SLF001


async def test_each_value_operation_takes_its_round_trips_and_no_more(world: World) -> None:
    voucher = await world.issue(50_000_000)
    first = await world.hold(voucher, 1_000_000, order="PO-0")  # the key's lookup is cached from here on
    await world.post(f"/v1/redemptions/{first.json()['id']}/capture", {})  # the provider's payable opened

    held, trips = await counted(world.hold(voucher, 2_000_000, order="PO-1"))
    assert held.status_code == 201, held.text
    assert trips == 3
    captured, trips = await counted(world.post(f"/v1/redemptions/{held.json()['id']}/capture", {"amount": 600_000}))
    assert captured.status_code == 200, captured.text
    assert captured.json()["captured_amount"] == 600_000
    assert trips == 2

    refunded, trips = await counted(world.post(f"/v1/redemptions/{held.json()['id']}/refunds",
                                               {"amount": 100_000, "reason": "returned"}))
    assert refunded.status_code == 201, refunded.text
    assert trips == 2

    other = await world.hold(voucher, 2_000_000, order="PO-2")
    voided, trips = await counted(world.post(f"/v1/redemptions/{other.json()['id']}/void", {}))
    assert voided.status_code == 200, voided.text
    assert trips == 2

    redeemed, trips = await counted(world.hold(voucher, 2_000_000, order="PO-3", path="/v1/redemptions"))
    assert redeemed.status_code == 201, redeemed.text
    assert trips == 3

    refused = await world.post(f"/v1/redemptions/{held.json()['id']}/capture", {})
    assert refused.status_code == 409, refused.text  # captured already: its counters were locked for nothing
    assert refused.json()["code"] == "hold_not_active"

    # The books balance, and the voucher shows the captures less the refund (which accounts the
    # codes find is tests/redemption/test_engine_record.py's).
    assert (await world.reconciliation())["is_clean"]
    assert (await world.voucher(voucher["id"]))["balances"]["used"] == 500_000 + 500_000 + 1_000_000
