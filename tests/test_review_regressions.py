"""Regressions for an independent review's findings: inputs that once gave a 500, a key that
could widen its own reach, and idempotency records written before the scope check."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from services.voucher.money import MAX_AMOUNT
from services.voucher.tables import IdempotencyRecord
from tests.support import assert_problem, auth, fresh_key
from tests.world import World, build_world, hold_body


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client)


async def test_an_order_total_beyond_the_maximum_is_a_422(world: World) -> None:
    voucher = await world.issue(1_000_000)
    body = hold_body(voucher["code"], world.enterprise["uscc"], "BIG",
                     [("accelerator:domestic", MAX_AMOUNT), ("accelerator:domestic", MAX_AMOUNT)])
    response = await world.client.post("/v1/redemptions/holds", json=body,
                                       headers=auth(world.provider_key, **fresh_key()))
    assert_problem(response, 422, "validation_failed")


@pytest.mark.parametrize("days", [-3, 400, 3_000_000])
async def test_valid_from_out_of_bounds_is_a_422(world: World, clock, days: int) -> None:
    start = (clock() + timedelta(days=days)).isoformat() if abs(days) < 1_000_000 else "9999-12-31T00:00:00Z"
    response = await world.client.post("/v1/vouchers", json={
        "programme_id": world.programme["id"], "enterprise_id": world.enterprise["id"], "face_value": 1,
        "valid_from": start}, headers=auth(world.operator, **fresh_key()))
    assert_problem(response, 422, "validation_failed")


@pytest.mark.parametrize("cursor", ["\u00b2", "9" * 30, "-1"])
async def test_odd_history_cursors_are_a_422(world: World, cursor: str) -> None:
    voucher = await world.issue(1_000)
    response = await world.client.get(f"/v1/vouchers/{voucher['id']}/history", params={"cursor": cursor},
                                      headers=auth(world.operator))
    assert_problem(response, 422, "invalid_cursor")


async def test_booleans_are_not_amounts(world: World) -> None:
    response = await world.client.post("/v1/vouchers", json={
        "programme_id": world.programme["id"], "enterprise_id": world.enterprise["id"], "face_value": True},
        headers=auth(world.operator, **fresh_key()))
    assert_problem(response, 422, "validation_failed")


async def test_a_nul_character_is_refused_alike_on_every_engine_never_a_500(world: World) -> None:
    """PostgreSQL text cannot hold NUL and SQLite's can: neither stores it (http/gate.py)."""
    response = await world.client.post("/v1/vouchers", json={
        "programme_id": world.programme["id"], "enterprise_id": world.enterprise["id"], "face_value": 1,
        "reference": "row\u00001"}, headers=auth(world.operator, **fresh_key()))
    problem = assert_problem(response, 422, "validation_failed")
    assert [(e["pointer"], e["type"]) for e in problem["errors"]] == [("/reference", "unstorable_text")]


async def test_issuing_a_voucher_requires_an_idempotency_key(world: World) -> None:
    response = await world.client.post("/v1/vouchers", json={
        "programme_id": world.programme["id"], "enterprise_id": world.enterprise["id"], "face_value": 1},
        headers=auth(world.operator))
    assert_problem(response, 428, "idempotency_key_required")


async def test_a_refused_caller_leaves_no_idempotency_record(app, world: World) -> None:
    voucher = await world.issue(1_000)
    for key in (world.auditor, world.enterprise_key):
        response = await world.client.post(
            "/v1/redemptions/holds",
            json=hold_body(voucher["code"], world.enterprise["uscc"], "X", [("accelerator:domestic", 1000)]),
            headers=auth(key, **{"Idempotency-Key": "probe"}))
        assert_problem(response, 403, "insufficient_scope")
    async with app.state.database.unit_of_work(write=False) as session:
        count = (await session.execute(select(func.count()).select_from(IdempotencyRecord)
                                       .where(IdempotencyRecord.key == "probe"))).scalar_one()
    assert count == 0


async def test_a_narrow_key_cannot_rotate_a_wider_sibling(world: World) -> None:
    narrow = await world.client.post("/v1/api-keys", json={
        "role": "enterprise", "name": "narrow", "enterprise_id": world.enterprise["id"], "scopes": ["keys:self"]},
        headers=auth(world.operator))
    me = (await world.client.get("/v1/me", headers=auth(world.enterprise_key))).json()
    refused = await world.client.post(f"/v1/api-keys/{me['key_id']}/rotate", json={},
                                      headers=auth(narrow.json()["key"]))
    assert_problem(refused, 403, "scope_escalation")
    own = await world.client.post(f"/v1/api-keys/{narrow.json()['id']}/rotate", json={},
                                  headers=auth(narrow.json()["key"]))
    assert own.status_code == 201


async def test_the_job_runner_posts_each_expiry_once(app, world: World, clock) -> None:
    from services.voucher import jobs

    voucher = await world.issue(1_000_000)
    hold = await world.hold(voucher, 1_000_000, order="J1")
    assert hold.status_code == 201
    clock.advance(seconds=1801)
    assert await jobs.run_once(app.state.database, "expire-holds", clock()) == 1
    assert await jobs.run_once(app.state.database, "expire-holds", clock()) == 0
    clock.advance(days=366)
    assert await jobs.run_once(app.state.database, "expire-vouchers", clock()) == 1
    assert await jobs.run_once(app.state.database, "expire-vouchers", clock()) == 0
    after = await world.voucher(voucher["id"])
    assert after["status"] == "expired" and after["balances"] == {"available": 0, "held": 0, "used": 0}
