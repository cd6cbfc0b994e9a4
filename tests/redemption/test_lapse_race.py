"""The room a lapsed hold leaves is given once, through a real server (PostgreSQL's row locks).

A capture reads its instant when the request starts, then may wait on locks. While it waits a
hold on another voucher, for the same order, reads a later instant, finds the first hold past its
TTL and takes the order's room. The capture must then be refused: it judges the hold's expiry no
earlier than the instant the hold left on the order's row (`rules.judged_at`). Here the test
holds the locks itself, so the order of events is certain, not left to chance."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from services.voucher.clock import FrozenClock
from tests.conftest import ENGINE
from tests.live_server import LiveServer
from tests.support import assert_problem, auth
from tests.world import World, build_world, hold_body

pytestmark = [pytest.mark.skipif(ENGINE != "postgresql", reason="the lock waits it orders are PostgreSQL's row locks"),
              pytest.mark.timeout(120)]
TTL = timedelta(seconds=1800)  # the programme's default hold TTL


@pytest.fixture
def clock() -> FrozenClock:
    """The in-process app's clock: half an hour behind, so a hold it places lapses in seconds
    of the live server's real time."""
    return FrozenClock(datetime.now(UTC) - TTL - timedelta(minutes=1))


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, stacking_ceiling_bps=6000, rate_table={"accelerator:domestic": 6000})


async def _waiting(conn: AsyncConnection, count: int) -> None:
    """Until `count` other sessions of this database wait on a lock."""
    for _ in range(400):
        found = (await conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"))).scalar_one()
        await conn.commit()  # the statistics views keep one snapshot per transaction
        if found >= count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{count} requests never waited on the test's locks")


async def test_a_capture_that_waited_on_the_order_is_refused_once_another_hold_took_its_room(
        world: World, clock: FrozenClock, database_url: str) -> None:
    a, b = await world.issue(10_000_000), await world.issue(10_000_000)
    body = hold_body(b["code"], world.enterprise["uscc"], "SHARED", [("accelerator:domestic", 1_000_000)])
    engine = create_async_engine(database_url)
    try:
        with LiveServer(database_url) as server:
            # Placed now (in-process, on a clock half an hour behind): it lapses in 5 s of real time.
            clock.current = datetime.now(UTC) - TTL + timedelta(seconds=5)
            first = await world.hold(a, 1_000_000, order="SHARED", key="a")
            assert first.status_code == 201, first.text
            assert first.json()["held_amount"] == 600_000  # the whole 60 % ceiling of the order
            lapses = datetime.fromisoformat(first.json()["hold_expires_at"])
            async with engine.connect() as voucher_lock, engine.connect() as order_lock, \
                    engine.connect() as watcher, httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                # The first hold's voucher (a capture's first lock) and the order's row, each held
                # from a connection of its own, so that they are let go one after the other: the
                # second hold waits on the order (an upsert, which waits on the holder's
                # transaction, not in a queue), and once it has committed, the capture goes on.
                await voucher_lock.begin()
                await voucher_lock.execute(text("SELECT 1 FROM voucher WHERE id = :id FOR UPDATE"),
                                           {"id": uuid.UUID(a["id"])})
                await order_lock.begin()
                await order_lock.execute(text("SELECT 1 FROM order_subsidy WHERE order_reference = 'SHARED' FOR UPDATE"))
                capture = asyncio.create_task(http.post(
                    f"/v1/redemptions/{first.json()['id']}/capture", json={},
                    headers=auth(world.provider_key, **{"Idempotency-Key": "capture-a"})))
                await _waiting(watcher, 1)  # its instant is read, and it waits on the voucher
                assert datetime.now(UTC) < lapses, "the capture did not start before the TTL: the machine is too slow"
                await asyncio.sleep(max(0.0, (lapses - datetime.now(UTC)).total_seconds()) + 0.2)
                second = asyncio.create_task(http.post("/v1/redemptions/holds", json=body, headers=auth(
                    world.provider_key, **{"Idempotency-Key": "hold-b"})))
                await _waiting(watcher, 2)  # after the TTL, on the order's row
                await order_lock.commit()
                held = await second  # the room the lapsed hold left is taken
                await voucher_lock.commit()
                captured = await capture
    finally:
        await engine.dispose()

    assert held.status_code == 201, held.text
    assert held.json()["held_amount"] == 600_000  # the first hold had lapsed: its room was free
    assert_problem(captured, 409, "hold_expired")  # judged at the second hold's instant, not its own
    clock.current = datetime.now(UTC)
    found = (await world.client.get(f"/v1/redemptions/{first.json()['id']}", headers=auth(world.provider_key))).json()
    assert (found["status"], found["void_reason"]) == ("voided", "expired")
    assert (await world.reconciliation())["is_clean"]
