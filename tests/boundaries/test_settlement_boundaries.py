"""Mutation-testing review: a settlement period's end instant is exclusive for refunds too
(Period 2026-03-02 in Shanghai is [2026-03-01T16:00Z, 2026-03-02T16:00Z))."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from tests.support import auth
from tests.world import World, build_world

START = datetime(2026, 2, 20, 2, 0, tzinfo=UTC)


def utc(text_: str) -> datetime:
    return datetime.fromisoformat(text_).astimezone(UTC)


@pytest.fixture
async def world(app, client: httpx.AsyncClient, clock) -> World:
    clock.current = START
    return await build_world(app, client, rate_table={"accelerator:domestic": 3000})


async def test_a_refund_made_at_the_instant_the_period_ends_is_not_in_it(world: World, clock) -> None:
    v = await world.issue(100_000_000)
    clock.current = utc("2026-03-02T01:00:00+00:00")
    redeemed = (await world.hold(v, 1_000_000, order="PO-A", path="/v1/redemptions")).json()
    assert redeemed["captured_amount"] == 300_000
    clock.current = utc("2026-03-02T16:00:00+00:00")  # 03-03 00:00 CST: the next period's first instant
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 100_000, "reason": "t"})
    assert refund.status_code == 201, refund.text
    clock.current = utc("2026-03-03T01:00:00+00:00")  # 03-02 is over
    created = await world.post("/v1/settlements", {"provider_id": world.provider["id"],
                                                   "programme_id": world.programme["id"],
                                                   "period_start": "2026-03-02", "period_end": "2026-03-02"},
                               key=world.operator)
    assert created.status_code == 201, created.text
    first = created.json()
    assert (first["captured_total"], first["refunded_total"], first["total"]) == (300_000, 0, 300_000)
    doc = (await world.client.get(f"/v1/settlements/{first['id']}/statement", headers=auth(world.operator))).json()
    assert [(li["kind"], li["amount"]) for li in doc["lines"]] == [("capture", 300_000)]
    # The refund is the next day's: an adjustment there.
    clock.current = utc("2026-03-04T01:00:00+00:00")
    second = await world.post("/v1/settlements", {"provider_id": world.provider["id"],
                                                  "programme_id": world.programme["id"],
                                                  "period_start": "2026-03-03", "period_end": "2026-03-03"},
                              key=world.operator)
    assert second.status_code == 201, second.text
    assert (second.json()["refunded_total"], second.json()["total"]) == (100_000, -100_000)
