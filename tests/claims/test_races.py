"""One invoice, one claim, under real concurrency: enterprises racing to claim the same
provider invoice (or the same document) through a real server get exactly one claim, and
exactly one hold stays on any voucher."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from services.voucher.clock import system_clock
from tests.claims.test_routes import claim_body
from tests.live_server import LiveServer
from tests.support import auth, create, enterprise_payload, make_key
from tests.world import build_world

pytestmark = pytest.mark.timeout(120)
PARALLEL = 8


@pytest.fixture
def clock():  # the live server runs on the real clock; so does this test's app
    return system_clock


async def test_racing_claims_of_one_invoice_make_one_claim(app, client: httpx.AsyncClient, database_url: str) -> None:
    world = await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000},
                              tiers=[])
    requests = []
    vouchers = []
    for i in range(PARALLEL):
        firm = await create(client, world.operator, "/v1/enterprises", enterprise_payload())
        voucher = await create(client, world.operator, "/v1/vouchers", {
            "programme_id": world.programme["id"], "enterprise_id": firm["id"], "face_value": 5_000_000})
        key = await make_key(app, "enterprise", enterprise_id=uuid.UUID(firm["id"]))
        # Same invoice and document for all; distinct contracts, so only the invoice rule decides.
        requests.append((claim_body(world, voucher, contract=f"C-{i}"),
                         auth(key, **{"Idempotency-Key": str(uuid.uuid4())})))
        vouchers.append(voucher)
    with LiveServer(database_url) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            responses = await asyncio.gather(*(http.post("/v1/claims", json=b, headers=h) for b, h in requests))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1, [r.text for r in responses]
    refused = {r.json()["code"] for r in responses if r.status_code != 201}
    # Another enterprise's claim: seen before filing (one answer, not saying which), or lost in the race.
    assert refused <= {"already_filed_elsewhere", "invoice_already_claimed", "concurrent_update"}, refused
    held = [(await world.voucher(v["id"]))["balances"]["held"] for v in vouchers]
    assert sorted(held) == [0] * (PARALLEL - 1) + [600_000]
    claims = (await client.get("/v1/claims", headers=auth(world.operator))).json()["items"]
    assert len(claims) == 1
    assert (await world.reconciliation())["is_clean"]
