"""A crash in the middle of a burst (issue 8): one server process is killed with SIGKILL while
redemptions are in flight; after a restart, the clients retry what they never heard back about
with the same Idempotency-Key, and the books are clean — every order charged once, every
success in the ledger, reconciliation and the audit chain intact (the `app` fixture verifies
both after the test)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.voucher.clock import system_clock
from services.voucher.tables import Redemption
from tests.live_server import LiveServer
from tests.support import auth
from tests.world import World, build_world, hold_body

pytestmark = pytest.mark.timeout(240)
ORDERS = 48
KILL_AFTER = 12


@pytest.fixture
def clock():  # the live server runs on the real clock; so does this test's app
    return system_clock


async def test_sigkill_mid_burst_then_retries_charge_each_order_once(
    app: Any, client: httpx.AsyncClient, database_url: str
) -> None:
    world: World = await build_world(app, client, rate_table={"accelerator:domestic": 3000})
    voucher = await world.issue(50_000_000)
    requests = [(f"CRASH-{n}", str(uuid.uuid4())) for n in range(ORDERS)]
    answers: dict[str, httpx.Response] = {}
    in_doubt: list[tuple[str, str]] = []

    def send(http: httpx.AsyncClient, order: str, key: str) -> Any:
        body = hold_body(voucher["code"], world.enterprise["uscc"], order, [("accelerator:domestic", 100_000)])
        return http.post("/v1/redemptions", json=body, headers=auth(world.provider_key, **{"Idempotency-Key": key}))

    first = LiveServer(database_url, workers=1).start()
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
            gate = asyncio.Semaphore(8)

            async def one(order: str, key: str) -> None:
                async with gate:
                    try:
                        answers[order] = await send(http, order, key)
                    except httpx.TransportError:  # the server died under it: did it commit?
                        in_doubt.append((order, key))
                    if len(answers) == KILL_AFTER:
                        first.kill()

            await asyncio.gather(*(one(order, key) for order, key in requests))
    finally:
        first.stop()
    assert len(answers) >= KILL_AFTER and in_doubt, (len(answers), len(in_doubt))
    print(f"crash: {len(answers)} answered before the kill, {len(in_doubt)} in doubt")
    assert all(r.status_code == 201 for r in answers.values()), [r.text for r in answers.values() if r.status_code != 201]

    # A request the crash interrupted kept nothing under its Idempotency-Key (the key's record
    # commits with the change or not at all), so the retries need not wait for anything.
    with LiveServer(database_url, workers=1) as second:
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
            for order, key in in_doubt:  # the same key and body: applied at most once
                retried = await send(http, order, key)
                assert retried.status_code == 201, retried.text
                answers[order] = retried
                again = await send(http, order, key)
                assert again.status_code == 201 and again.json()["id"] == retried.json()["id"]
            reconciliation = (await http.get("/v1/ledger/reconciliation", headers=auth(world.auditor))).json()

    assert len(answers) == ORDERS
    async with app.state.database.unit_of_work(write=False) as session:
        per_order = dict((await session.execute(
            select(Redemption.order_reference, func.count()).where(Redemption.voucher_id == uuid.UUID(voucher["id"]))
            .group_by(Redemption.order_reference)
        )).all())
    assert per_order == {order: 1 for order, _ in requests}  # every order charged exactly once
    assert len({r.json()["id"] for r in answers.values()}) == ORDERS  # one redemption per order, each answered
    view = await world.voucher(voucher["id"])
    charged = sum(r.json()["captured_amount"] for r in answers.values())
    assert view["balances"]["used"] == charged and view["balances"]["held"] == 0
    assert view["balances"]["available"] == 50_000_000 - charged
    assert reconciliation["is_clean"], reconciliation
