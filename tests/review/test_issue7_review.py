"""Regressions from the adversarial review of issue 7 (outbox, webhooks, worker): each test
showed a defect (a URL only httpx refuses stopping every delivery, a delivery sent twice by two
workers, a stale worker cutting a redelivery's lease, a balance mark missed on a suspended
voucher, a downgrade leaving scopes old code refuses, an unbracketed IPv6 Host), failed until it
was fixed, and stays to keep it fixed."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import create_engine, pool, select, text

from services.voucher.cli import alembic_config
from services.voucher.db import Database
from services.voucher.events import service as events
from services.voucher.settings import sync_database_url
from services.voucher.tables import OutboxEvent
from tests.support import auth, fresh_key
from tests.webhooks.receiver import receiver
from tests.world import World, build_world


async def _endpoint(client: httpx.AsyncClient, key: str, url: str, types: list[str] | None = None) -> httpx.Response:
    return await client.post("/v1/webhook-endpoints", headers=auth(key, **fresh_key()),
                             json={"url": url, "event_types": types or ["redemption.captured"]})


async def _redeem(world: World, voucher: dict[str, Any], order: str, amount: int = 1_000_000) -> dict[str, Any]:
    response = await world.hold(voucher, amount, order=order, path="/v1/redemptions")
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _deliveries(client: httpx.AsyncClient, key: str, endpoint_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def _port(url: str) -> int:
    return httpx.URL(url).port  # type: ignore[return-value]


# -- 1. one subscriber's URL crashes every delivery run ----------------------------------------------


@pytest.mark.parametrize("template", [
    "http://127.0.0.1\t:{port}/hooks",  # with a public host too: https://example.com\t/x
    "http://0177.0.0.1:{port}/hooks",  # with a public address too: https://010.010.010.010/x
    "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{port}/hooks",  # full-width "localhost"
])
async def test_a_url_httpx_cannot_parse_does_not_break_delivery_for_everyone(
    app: Any, client: httpx.AsyncClient, template: str
) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as odd, receiver() as good:
        registered = await _endpoint(client, world.provider_key, template.format(port=_port(odd.url)))
        if registered.status_code == 422:  # refused at registration: that is a fix too
            return
        assert registered.status_code == 201, registered.text
        other = await _endpoint(client, world.enterprise_key, good.url)
        assert other.status_code == 201, other.text
        await _redeem(world, voucher, "PO-1")
        database: Database = app.state.database
        await events.publish_pending(database, app.state.clock())
        try:
            await webhooks_deliver(database, app.state.clock())
        finally:
            await asyncio.sleep(0.3)  # let orphaned sends of a crashed batch settle before teardown
        assert len(good.received) == 1  # the other subscriber is served
        [delivery] = await _deliveries(client, world.provider_key, registered.json()["id"])
        assert delivery["attempts"] == 1 and delivery["last_error"]  # the odd one is a logged failure


async def webhooks_deliver(database: Database, now: Any, **kwargs: Any) -> int:
    from services.voucher.webhooks import service as webhooks

    return await webhooks.deliver_due(database, now, **kwargs)


# -- 2. the lease is shorter than a batch can take ------------------------------------------------------


async def test_rows_waiting_for_their_turn_in_a_batch_are_not_taken_by_another_worker(
    app: Any, client: httpx.AsyncClient, clock: Any
) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(50_000_000)
    registered = await _endpoint(client, world.provider_key, "http://127.0.0.1:9/hooks")
    assert registered.status_code == 201, registered.text
    for n in range(10):
        await _redeem(world, voucher, f"PO-{n}")
    await events.publish_pending(app.state.database, clock())
    # 10 due deliveries, one at a time, each answered in 9 s (under the 10 s timeout).
    settings = app.state.settings.model_copy(update={
        "webhook_batch_size": 10, "webhook_concurrency": 1, "webhook_timeout_seconds": 10.0})
    first, second = Database(settings), Database(settings)
    start = clock()
    sent: list[str] = []
    second_ran = False

    async def quick(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["webhook-id"])
        return httpx.Response(200)

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal second_ran
        sent.append(request.headers["webhook-id"])
        clock.advance(seconds=9)  # the receiver takes 9 s: wall time passes for every worker
        if not second_ran and (clock() - start).total_seconds() > 2 * 10 + 30:
            second_ran = True  # another worker's round starts now
            async with httpx.AsyncClient(transport=httpx.MockTransport(quick)) as other:
                await webhooks_deliver(second, clock(), client=other, clock=clock)
        return httpx.Response(200)

    try:
        async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as mine:
            await webhooks_deliver(first, start, client=mine, clock=clock)
    finally:
        await first.dispose()
        await second.dispose()
    assert second_ran
    assert len(sent) == 10 and len(set(sent)) == 10, f"{len(sent)} sends for 10 events"


# -- 3. a capture on a suspended voucher never announces its balance mark ------------------------------


async def _balance_low(app: Any) -> list[OutboxEvent]:
    async with app.state.database.unit_of_work(write=False) as session:
        statement = select(OutboxEvent).where(OutboxEvent.type == "voucher.balance_low")  # type: ignore[arg-type]
        return list((await session.execute(statement)).scalars())


async def test_a_capture_on_a_suspended_voucher_announces_its_balance_mark(
    app: Any, client: httpx.AsyncClient
) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(3_000_000)
    held = await world.hold(voucher, 9_000_000, order="PO-1")  # 30 %: 2,700,000 held = 90 % of face
    assert held.status_code == 201, held.text
    suspended = await world.post(f"/v1/vouchers/{voucher['id']}/suspend", {"reason": "checking"}, key=world.operator)
    assert suspended.status_code == 200, suspended.text
    captured = await world.post(f"/v1/redemptions/{held.json()['id']}/capture", {})
    if captured.status_code != 200:  # capture refused on a suspended voucher: no mark to miss
        return
    assert captured.json()["captured_amount"] == 2_700_000
    assert [e.data["mark_percent"] for e in await _balance_low(app)] == [80]


# -- 4. IPv6 literals get an invalid Host header --------------------------------------------------------


async def test_an_ipv6_literal_url_gets_a_bracketed_host_header(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as hooks:
        port = _port(hooks.url)
        registered = await _endpoint(client, world.provider_key, f"http://[::ffff:127.0.0.1]:{port}/hooks")
        assert registered.status_code == 201, registered.text
        await _redeem(world, voucher, "PO-1")
        await events.publish_pending(app.state.database, app.state.clock())
        await webhooks_deliver(app.state.database, app.state.clock())
    [got] = hooks.received
    assert got.headers["host"] == f"[::ffff:127.0.0.1]:{port}"


# -- 5. downgrading 0008 leaves scopes the 0007 code cannot read ---------------------------------------


async def test_downgrade_takes_back_the_scopes_it_granted(app: Any, database_url: str, operator_key: str) -> None:
    world_key = operator_key  # a key made at head: its role's scopes include events:read
    assert world_key
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "0007")
    try:
        engine = create_engine(sync_database_url(database_url), poolclass=pool.NullPool)
        try:
            with engine.connect() as conn:
                stored = [row[0] for row in conn.execute(text("SELECT scopes FROM api_key"))]
        finally:
            engine.dispose()
    finally:
        await asyncio.to_thread(command.upgrade, config, "head")
    import json

    held = {s for scopes in stored for s in (json.loads(scopes) if isinstance(scopes, str) else scopes)}
    assert stored and not held & {"events:read", "webhooks:manage"}, sorted(held)


# -- 6. a redelivery resets the counter that finish() uses as the lease token ------------------------


async def test_a_stale_worker_does_not_overwrite_the_lease_of_a_redelivery(
    app: Any, client: httpx.AsyncClient, clock: Any
) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    registered = await _endpoint(client, world.provider_key, "http://127.0.0.1:9/hooks")
    assert registered.status_code == 201, registered.text
    endpoint_id = registered.json()["id"]
    await _redeem(world, voucher, "PO-1")
    await events.publish_pending(app.state.database, clock())
    [delivery] = await _deliveries(client, world.provider_key, endpoint_id)
    settings = app.state.settings
    lease_until = clock() + timedelta(seconds=settings.webhook_timeout_seconds * 2 + 30)
    first, second = Database(settings), Database(settings)
    b_in_flight, release_b = asyncio.Event(), asyncio.Event()

    async def b_receiver(request: httpx.Request) -> httpx.Response:
        b_in_flight.set()
        await release_b.wait()
        return httpx.Response(200)

    b_client = httpx.AsyncClient(transport=httpx.MockTransport(b_receiver))
    b_task: asyncio.Task[int] | None = None

    async def a_receiver(request: httpx.Request) -> httpx.Response:
        nonlocal b_task
        path = f"/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery['id']}/redeliveries"
        again = await client.post(path, headers=auth(world.provider_key, **fresh_key()))
        assert again.status_code == 202, again.text
        b_task = asyncio.create_task(webhooks_deliver(second, clock(), client=b_client))
        await asyncio.wait_for(b_in_flight.wait(), 10)
        return httpx.Response(500)  # the old round's answer arrives while B is sending

    try:
        async with httpx.AsyncClient(transport=httpx.MockTransport(a_receiver)) as a_client:
            await webhooks_deliver(first, clock(), client=a_client)
        [now_state] = await _deliveries(client, world.provider_key, endpoint_id)
    finally:
        release_b.set()
        if b_task is not None:
            await b_task
        await b_client.aclose()
        await first.dispose()
        await second.dispose()
    due = datetime.fromisoformat(now_state["next_attempt_at"].replace("Z", "+00:00"))
    assert due >= lease_until, f"B's lease until {lease_until} was cut to {due} by A's stale result"
