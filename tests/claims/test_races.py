"""One invoice, one claim, under real concurrency: enterprises racing to claim the same
provider invoice (or the same document) through a real server get exactly one claim, and
exactly one hold stays on any voucher."""

from __future__ import annotations

import asyncio
import uuid
from zoneinfo import ZoneInfo

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


async def test_racing_decisions_on_one_claim_take_effect_once(app, client: httpx.AsyncClient, database_url: str) -> None:
    """Operators deciding one claim at once, each request with a key of its own (a retry with
    another Idempotency-Key is such a second request): approvals of different amounts race, then
    payments and rejections of the approved claim (both final). One approval and one final
    decision take effect; the others are refused, nothing is posted twice, and the enterprise
    is paid once or the value goes back once (DESIGN §3; nothing had raced these, an
    independent review, December 2026)."""
    world = await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000},
                              tiers=[])
    voucher = await world.issue(10_000_000)
    filed = await client.post("/v1/claims", json=claim_body(world, voucher),
                               headers=auth(world.enterprise_key, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert filed.status_code == 201, filed.text
    path = f"/v1/claims/{filed.json()['id']}"

    def fresh() -> dict[str, str]:
        return auth(world.operator, **{"Idempotency-Key": str(uuid.uuid4())})

    assert (await client.post(f"{path}/review", headers=fresh())).status_code == 200

    def refused(responses: list[httpx.Response]) -> set[str]:
        return {r.json()["code"] for r in responses if r.status_code != 200}

    with LiveServer(database_url) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            approvals = await asyncio.gather(*(
                http.post(f"{path}/approve", json={"amount": 50_000 * (i + 1)}, headers=fresh())
                for i in range(PARALLEL)))
            [approved] = [r for r in approvals if r.status_code == 200]
            assert refused(approvals) <= {"invalid_transition", "concurrent_update"}, [r.text for r in approvals]
            amount = approved.json()["approved_amount"]
            today = system_clock().astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()  # paid since approval
            finals = await asyncio.gather(*(
                http.post(f"{path}/pay", json={"reference": f"ICBC-{i}", "paid_on": today}, headers=fresh())
                if i % 2 == 0 else http.post(f"{path}/reject", json={"reason": "not eligible"}, headers=fresh())
                for i in range(PARALLEL)))
            [final] = [r for r in finals if r.status_code == 200]
            assert refused(finals) <= {"invalid_transition", "concurrent_update"}, [r.text for r in finals]
    claim = (await client.get(path, headers=auth(world.operator))).json()
    assert claim["status"] == final.json()["status"] and claim["approved_amount"] == amount
    balances = (await world.voucher(voucher["id"]))["balances"]
    if claim["status"] == "paid":
        assert balances == {"available": 10_000_000 - amount, "held": 0, "used": amount}
        assert claim["payment_reference"] == final.json()["payment_reference"]
    else:
        assert claim["status"] == "rejected" and balances == {"available": 10_000_000, "held": 0, "used": 0}
    assert (await world.reconciliation())["is_clean"]
