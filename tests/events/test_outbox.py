"""The transactional outbox and `GET /v1/events` (issue 7): events exist exactly when their
change committed, are published gap-free in commit order, and each subscriber sees only its own."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.voucher.db import Database
from services.voucher.events import service as events
from services.voucher.events.rules import EventType, marks_reached
from services.voucher.tables import OutboxEvent
from tests.support import assert_problem, auth
from tests.world import build_world


async def _outbox(app: Any, type: str | None = None) -> list[OutboxEvent]:
    async with app.state.database.unit_of_work(write=False) as session:
        statement = select(OutboxEvent).order_by(OutboxEvent.id)
        if type is not None:
            statement = statement.where(OutboxEvent.type == type)
        return list((await session.execute(statement)).scalars())


async def _publish(app: Any) -> int:
    return await events.publish_pending(app.state.database, app.state.clock())


async def _events(client: httpx.AsyncClient, key: str, **params: Any) -> list[dict[str, Any]]:
    found, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/events", params=query, headers=auth(key))
        assert response.status_code == 200, response.text
        body = response.json()
        found += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return found


def test_marks_are_reached_by_integer_arithmetic() -> None:
    assert marks_reached(10_000, 7_999) == []
    assert marks_reached(10_000, 8_000) == [8000]
    assert marks_reached(10_000, 10_000) == [8000, 10000]
    assert marks_reached(3, 3) == [8000, 10000]
    assert marks_reached(0, 0) == []


async def test_a_redemption_announces_itself_to_both_parties(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    redeemed = (await world.hold(voucher, 4_000_000, order="PO-1", path="/v1/redemptions")).json()
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 1_000, "reason": "partial return"})
    assert refund.status_code == 201, refund.text
    await _publish(app)

    captured = await _outbox(app, "redemption.captured")
    assert len(captured) == 1
    event = captured[0]
    assert (str(event.enterprise_id), str(event.provider_id), str(event.programme_id)) == (
        world.enterprise["id"], world.provider["id"], world.programme["id"])
    assert event.data["captured_amount"] == redeemed["captured_amount"]
    assert event.data["voucher_id"] == voucher["id"] and event.data["resource_id"] == redeemed["id"]
    assert len(await _outbox(app, "refund.created")) == 1
    assert len(await _outbox(app, "voucher.issued")) == 1

    for key in (world.enterprise_key, world.provider_key):
        seen = [e["type"] for e in await _events(client, key)]
        assert "redemption.captured" in seen and "refund.created" in seen, seen
    # voucher.issued concerns the enterprise only
    assert "voucher.issued" in [e["type"] for e in await _events(client, world.enterprise_key)]
    assert "voucher.issued" not in [e["type"] for e in await _events(client, world.provider_key)]


async def test_a_refused_or_rolled_back_change_announces_nothing(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(1_000_000)
    before = len(await _outbox(app))
    refused = await world.hold(voucher, 900_000_000, order="PO-BIG", path="/v1/redemptions")
    assert refused.status_code in (201, 409), refused.text
    if refused.status_code == 201:  # capped at the balance: then a second one is refused outright
        before = len(await _outbox(app))
        refused = await world.hold(voucher, 900_000_000, order="PO-BIG-2", path="/v1/redemptions")
        assert refused.status_code == 409, refused.text
    assert len(await _outbox(app)) == before

    # An event emitted inside a transaction that then fails is gone with it.
    database: Database = app.state.database
    with pytest.raises(RuntimeError):
        async with database.unit_of_work() as session:
            await events.emit(session, events.event_row(EventType.VOUCHER_ISSUED, "voucher", uuid.uuid4(),
                                                        now=app.state.clock(), data={}))
            raise RuntimeError("the change fails after announcing")
    assert len(await _outbox(app)) == before


async def test_balance_marks_are_announced_once_each(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(3_000_000)
    # The programme pays 30 % of domestic accelerator spend.
    first = (await world.hold(voucher, 7_000_000, order="PO-1", path="/v1/redemptions")).json()
    assert first["captured_amount"] == 2_100_000, first  # 70 % used
    assert await _outbox(app, "voucher.balance_low") == []
    await world.hold(voucher, 1_000_000, order="PO-2", path="/v1/redemptions")  # 80 %
    low = await _outbox(app, "voucher.balance_low")
    assert [e.data["mark_percent"] for e in low] == [80]
    assert low[0].data["used"] == 2_400_000 and low[0].data["face_value"] == 3_000_000
    await world.hold(voucher, 500_000, order="PO-3", path="/v1/redemptions")  # 85 %: nothing new
    assert len(await _outbox(app, "voucher.balance_low")) == 1
    # A refund lowers use below 80 %; reaching it again does not announce it again.
    refund = await world.post(f"/v1/redemptions/{first['id']}/refunds", {"amount": 600_000, "reason": "returned"})
    assert refund.status_code == 201, refund.text
    await world.hold(voucher, 2_000_000, order="PO-4", path="/v1/redemptions")  # back to 85 %
    assert len(await _outbox(app, "voucher.balance_low")) == 1
    last = await world.hold(voucher, 20_000_000, order="PO-5", path="/v1/redemptions")  # the rest
    assert last.status_code == 201, last.text
    view = await world.voucher(voucher["id"])
    assert view["balances"]["available"] == 0, view
    low = await _outbox(app, "voucher.balance_low")
    assert sorted(e.data["mark_percent"] for e in low) == [80, 100]
    assert all(str(e.enterprise_id) == world.enterprise["id"] and e.provider_id is None for e in low)


async def test_expiring_vouchers_are_announced_once(app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    world = await build_world(app, client, voucher_validity_days=30)
    soon = await world.issue(1_000_000)  # expires on day 30
    clock.advance(days=20)
    later = await world.issue(1_000_000)  # expires on day 50
    clock.advance(days=5)
    database: Database = app.state.database
    assert await events.announce_expiring(database, clock(), days=7) == 1
    assert await events.announce_expiring(database, clock(), days=7) == 0
    warned = await _outbox(app, "voucher.expiring")
    assert [str(e.resource_id) for e in warned] == [soon["id"]]
    assert warned[0].data["available"] == 1_000_000 and warned[0].data["days_before"] == 7
    clock.advance(days=20)  # day 45: the second is due, the first has expired (never warned twice)
    assert await events.announce_expiring(database, clock(), days=7) == 1
    assert [str(e.resource_id) for e in await _outbox(app, "voucher.expiring")] == [soon["id"], later["id"]]


async def test_events_page_in_publication_order_and_only_once_published(
    app: Any, client: httpx.AsyncClient, operator_key: str, auditor_key: str
) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(50_000_000)
    for n in range(5):
        await world.hold(voucher, 1_000_000, order=f"PO-{n}", path="/v1/redemptions")
    assert await _events(client, world.provider_key) == []  # nothing is published yet
    await _publish(app)
    mine = await _events(client, world.provider_key, limit=2)
    assert [e["type"] for e in mine] == ["redemption.captured"] * 5
    seqs = [e["seq"] for e in mine]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    everything = await _events(client, operator_key)
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))  # gap-free
    assert await _events(client, auditor_key) == everything
    only = await _events(client, operator_key, type="voucher.issued")
    assert [e["type"] for e in only] == ["voucher.issued"]
    one = await client.get(f"/v1/events/{mine[0]['id']}", headers=auth(world.provider_key))
    assert one.status_code == 200 and one.json() == mine[0]


async def test_subscribers_never_see_each_others_events(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    redeemed = (await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")).json()
    await _publish(app)
    other = await build_world(app, client)  # another enterprise and provider, in another programme
    other_enterprise, other_provider = other.enterprise_key, other.provider_key
    for key in (other_enterprise, other_provider):
        assert await _events(client, key) == []
        assert await _events(client, key, resource_id=redeemed["id"]) == []
    event = (await _events(client, world.provider_key))[0]
    for key in (other_enterprise, other_provider):
        assert_problem(await client.get(f"/v1/events/{event['id']}", headers=auth(key)), 404, "not_found")
    assert_problem(await client.get("/v1/events"), 401, "unauthenticated")


async def test_bad_cursors_and_types_are_422(app: Any, client: httpx.AsyncClient, operator_key: str) -> None:
    for params in ({"cursor": "not-a-cursor"}, {"type": "voucher.stolen"}, {"limit": 0}):
        response = await client.get("/v1/events", params=params, headers=auth(operator_key))
        assert response.status_code == 422, (params, response.text)


async def test_concurrent_publishers_number_each_event_once(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(50_000_000)
    for n in range(12):
        await world.hold(voucher, 100_000, order=f"PO-{n}", path="/v1/redemptions")
    database: Database = app.state.database
    other = Database(database.settings)
    try:
        counts = await asyncio.gather(*(events.publish_pending(db, app.state.clock())
                                        for db in (database, other, database, other)))
    finally:
        await other.dispose()
    rows = await _outbox(app)
    assert sum(counts) == len(rows)
    assert sorted(e.seq for e in rows) == list(range(1, len(rows) + 1))  # type: ignore[type-var]
    async with database.unit_of_work(write=False) as session:
        unpublished = (await session.execute(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.seq.is_(None))  # type: ignore[union-attr]
        )).scalar_one()
    assert unpublished == 0


async def test_a_subscriber_polls_from_where_it_left_off(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    headers = auth(world.provider_key)
    empty = (await client.get("/v1/events", headers=headers)).json()
    assert empty == {"items": [], "next_cursor": None, "poll_cursor": None}
    await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")
    await _publish(app)
    first = (await client.get("/v1/events", headers=headers)).json()
    assert [e["type"] for e in first["items"]] == ["redemption.captured"] and first["next_cursor"] is None
    position = first["poll_cursor"]
    quiet = (await client.get("/v1/events", params={"cursor": position}, headers=headers)).json()
    assert quiet == {"items": [], "next_cursor": None, "poll_cursor": position}  # keeps its place
    await world.hold(voucher, 1_000_000, order="PO-2", path="/v1/redemptions")
    await _publish(app)
    newer = (await client.get("/v1/events", params={"cursor": position}, headers=headers)).json()
    assert len(newer["items"]) == 1 and newer["items"][0]["data"]["resource_id"] != first["items"][0]["data"]["resource_id"]
    assert newer["poll_cursor"] != position
