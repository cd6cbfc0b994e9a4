"""Mutation-testing review: an approval may grant at most the held subsidy — one unit more is a
validation failure (422 `validation_failed`, field `amount`), and moves nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.claims.test_routes import _file, _step, claim_body
from tests.support import assert_problem
from tests.world import World, build_world


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000},
                             tiers=[])


async def test_an_approval_one_unit_over_the_hold_is_refused(world: World) -> None:
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    assert claim["subsidy"] == 600_000
    assert (await _step(world, claim, "review")).status_code == 200
    problem = assert_problem(await _step(world, claim, "approve", {"amount": 600_001}), 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/amount"]
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 9_400_000, "held": 600_000, "used": 0}
    approved = await _step(world, claim, "approve", {"amount": 600_000})
    assert approved.status_code == 200 and approved.json()["approved_amount"] == 600_000
