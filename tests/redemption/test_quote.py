"""A subsidy quote (POST /v1/redemptions/quote): what a hold for the order would grant now,
decided by the hold's own code, with its refusals — and nothing written, held or announced."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.voucher.tables import (
    AuditEvent,
    IdempotencyRecord,
    LedgerPosting,
    OrderSubsidy,
    OutboxEvent,
    Redemption,
)
from tests.support import assert_problem, auth, make_key
from tests.world import World, build_world, hold_body


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=200_000_000,
                             max_per_voucher=100_000_000,
                             rate_table={"accelerator:domestic": 3000, "storage:block": 0})


async def quote(world: World, voucher: dict[str, Any], amount: int, *, order: str = "PO-Q",
                category: str = "accelerator:domestic", key: str | None = None) -> httpx.Response:
    return await world.client.post(
        "/v1/redemptions/quote", json=hold_body(voucher["code"], world.enterprise["uscc"], order, [(category, amount)]),
        headers=auth(key or world.provider_key))


async def counts(app) -> dict[str, int]:
    async with app.state.database.unit_of_work(write=False) as session:
        return {t.__name__: (await session.execute(select(func.count()).select_from(t))).scalar_one()
                for t in (Redemption, OrderSubsidy, LedgerPosting, AuditEvent, OutboxEvent, IdempotencyRecord)}


async def test_a_quote_is_what_the_hold_then_grants_and_writes_nothing(app, world: World) -> None:
    voucher = await world.issue(10_000_000)
    before, balances = await counts(app), (await world.voucher(voucher["id"]))["balances"]
    quoted = await quote(world, voucher, 10_000_000)
    assert quoted.status_code == 200, quoted.text
    body = quoted.json()
    assert body["subsidy"] == 3_000_000 and body["limited_by"] == "rates"
    assert body["order_amount"] == 10_000_000 and body["unit"] == "CNY" and body["order_reference"] == "PO-Q"
    assert body["computation"]["items"][0]["parts"][0]["rate_bps"] == 3000
    again = (await quote(world, voucher, 10_000_000)).json()
    assert {**again, "quoted_at": None} == {**body, "quoted_at": None}  # asking twice: the same answer
    # nothing held, written or announced; the order is still free
    assert await counts(app) == before
    assert (await world.voucher(voucher["id"]))["balances"] == balances
    held = await world.client.post("/v1/redemptions/holds", json={
        **hold_body(voucher["code"], world.enterprise["uscc"], "PO-Q", [("accelerator:domestic", 10_000_000)]),
        "expected_subsidy": body["subsidy"]}, headers=auth(world.provider_key, **{"Idempotency-Key": "h-q"}))
    assert held.status_code == 201, held.text
    assert held.json()["held_amount"] == body["subsidy"]


async def test_a_quote_says_which_limit_bound(world: World) -> None:
    voucher = await world.issue(1_000_000)
    body = (await quote(world, voucher, 90_000_000)).json()  # 30 % of ¥900,000 is more than the ¥10,000 left
    assert body["subsidy"] == 1_000_000 and body["limited_by"] != "rates"


async def test_a_quote_is_refused_as_the_hold_would_be_and_changes_nothing(app, world: World) -> None:
    voucher = await world.issue(10_000_000)
    assert (await world.hold(voucher, 1_000_000, order="DUP")).status_code == 201
    before = await counts(app)
    assert_problem(await quote(world, voucher, 1_000_000, order="DUP"), 409, "order_already_subsidised")
    assert_problem(await quote(world, voucher, 1_000, category="storage:block"), 409, "nothing_to_subsidise")
    other = dict(voucher, code=voucher["code"][:-1] + ("A" if voucher["code"][-1] != "A" else "B"))
    assert (await quote(world, other, 1_000)).status_code in (404, 422)
    assert await counts(app) == before


async def test_only_a_provider_key_quotes(app, world: World) -> None:
    voucher = await world.issue(10_000_000)
    assert_problem(await quote(world, voucher, 1_000, key=world.enterprise_key), 403, "insufficient_scope")
    assert_problem(await quote(world, voucher, 1_000, key=world.operator), 403, "insufficient_scope")
    assert_problem(await quote(world, voucher, 1_000, key="vk_nope"), 401, "invalid_api_key")
    auditor = await make_key(app, "auditor")
    assert (await quote(world, voucher, 1_000, key=auditor)).status_code == 403


async def test_an_order_over_the_maximum_is_refused_as_the_hold_refuses_it(world: World) -> None:
    voucher = await world.issue(10_000_000)
    body = hold_body(voucher["code"], world.enterprise["uscc"], "PO-BIG",
                     [("accelerator:domestic", 10**15), ("accelerator:domestic", 10**15)])
    quoted = await world.client.post("/v1/redemptions/quote", json=body, headers=auth(world.provider_key))
    held = await world.client.post("/v1/redemptions/holds", json=body,
                                   headers=auth(world.provider_key, **{"Idempotency-Key": "big"}))
    assert_problem(held, 422, "validation_failed")
    assert_problem(quoted, 422, "validation_failed")
    assert quoted.json()["errors"] == held.json()["errors"]
