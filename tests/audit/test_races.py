"""The chain under real concurrency: redemptions of many vouchers through a real server while
checkpoints seal and sign at the same time. No event may be lost, sealed twice, or sealed out
of its chain; every redemption keeps all its events."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from services.voucher.clock import system_clock
from services.voucher.tables import AuditEvent
from tests.live_server import LiveServer
from tests.support import auth, create, enterprise_payload
from tests.world import build_world, hold_body

pytestmark = pytest.mark.timeout(180)
VOUCHERS = 12
ROUNDS = 3


@pytest.fixture
def clock():  # the live server runs on the real clock; so does this test's app
    return system_clock


async def test_sealing_while_redeeming_keeps_one_intact_chain(app, client: httpx.AsyncClient, database_url: str) -> None:
    world = await build_world(app, client)
    targets = []
    for _ in range(VOUCHERS):
        firm = await create(client, world.operator, "/v1/enterprises", enterprise_payload())
        voucher = await create(client, world.operator, "/v1/vouchers", {
            "programme_id": world.programme["id"], "enterprise_id": firm["id"], "face_value": 5_000_000})
        targets.append((voucher["code"], firm["uscc"]))
    with LiveServer(database_url, workers=2) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            async def redeem(code: str, uscc: str, n: int) -> int:
                order = f"PO-{n}-{uuid.uuid4().hex[:6]}"
                response = await http.post("/v1/redemptions", json=hold_body(
                    code, uscc, order, [("accelerator:domestic", 100_000)]),
                    headers=auth(world.provider_key, **{"Idempotency-Key": order}))
                return response.status_code

            async def seal(n: int) -> int:
                response = await http.post("/v1/audit/checkpoints", headers=auth(world.auditor))
                return response.status_code

            work = [redeem(code, uscc, r * VOUCHERS + i) for r in range(ROUNDS) for i, (code, uscc) in enumerate(targets)]
            work += [seal(n) for n in range(6)]
            codes = await asyncio.gather(*work)
    assert codes.count(201) == len(codes), codes
    async with app.state.database.unit_of_work(write=False) as session:
        captured = (await session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "redemption.captured"))).scalar_one()
        placed = (await session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "hold.placed"))).scalar_one()
    assert (captured, placed) == (VOUCHERS * ROUNDS, 0)  # a one-step redeem places no hold of its own
    response = await client.post("/v1/audit/verifications", json={}, headers=auth(world.auditor))
    result = response.json()
    assert result["is_intact"], result["problems"]
    assert result["events_checked"] == result["to_seq"]
    assert (await world.reconciliation())["is_clean"]


async def test_two_sealers_at_once_seal_each_event_once(app, client: httpx.AsyncClient) -> None:
    """Sealers serialise on their lock: racing ones never give two events one place."""
    from services.voucher.audit import service as audit

    world = await build_world(app, client)
    for _ in range(3):
        await world.issue(1_000_000)
    database = app.state.database
    counts = await asyncio.gather(*(audit.seal_pending(database) for _ in range(4)))
    async with database.unit_of_work(write=False) as session:
        head = await audit.head(session)
        total = (await session.execute(select(func.count()).select_from(AuditEvent))).scalar_one()
    assert sum(counts) == head.seq == total and head.unsealed == 0
