"""Mutation-testing review: a usage reconciliation's period end is exclusive
(2026-03-02 in Shanghai is [2026-03-01T16:00Z, 2026-03-02T16:00Z))."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from tests.support import auth, fresh_key
from tests.world import build_world


async def test_a_capture_at_the_instant_the_period_ends_is_not_in_it(app, client: httpx.AsyncClient, clock) -> None:
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])
    voucher = await world.issue(10_000_000)
    clock.current = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    assert (await world.hold(voucher, 1_000_000, order="PO-IN", path="/v1/redemptions")).status_code == 201
    clock.current = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # 03-03 00:00 in Shanghai
    assert (await world.hold(voucher, 500_000, order="PO-EDGE", path="/v1/redemptions")).status_code == 201
    clock.current = datetime(2026, 3, 4, 1, 0, tzinfo=UTC)
    body = {"programme_id": world.programme["id"], "period_start": "2026-03-02", "period_end": "2026-03-02",
            "records": [{"order_reference": "PO-IN", "amount": 1_000_000, "subsidy": 300_000}]}
    response = await client.post("/v1/usage-reconciliations", json=body, headers=auth(world.provider_key, **fresh_key()))
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["summary"] == {"matched": 1, "mismatched": 0, "missing_ours": 0, "missing_theirs": 0,
                                 "their_subsidy": 300_000, "our_subsidy": 300_000}
