"""An announced event, changed behind the service: the database refuses to delete it or rewrite
what it says (migration 0028), and publishing it — setting its position once — still works."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from services.voucher.db import table_of
from services.voucher.events import service as events
from services.voucher.tables import OutboxEvent
from tests.conftest import ENGINE
from tests.support import auth
from tests.world import build_world

E = table_of(OutboxEvent)
GUARDED = "an announced event is never deleted"


async def _refused(app: Any, statement: Any, params: dict[str, Any] | None = None) -> None:
    with pytest.raises(DBAPIError, match=GUARDED):
        async with app.state.database.unit_of_work() as session:
            await session.execute(statement, params or {})


async def _rows(app: Any) -> list[dict[str, Any]]:
    async with app.state.database.unit_of_work(write=False) as session:
        return [dict(r._mapping) for r in (await session.execute(select(E).order_by(E.c.id))).all()]


async def test_the_database_refuses_to_delete_an_event_or_rewrite_what_it_says(
        app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(200_000)  # used whole: its 80 % and 100 % marks are once-only announcements
    redeemed = await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")
    assert redeemed.status_code == 201, redeemed.text
    before = await _rows(app)
    captured = next(r for r in before if r["type"] == "redemption.captured")
    assert captured["seq"] is None
    # unpublished: what it says is fixed already
    other = uuid.uuid4()
    for values in ({"data": {**captured["data"], "amount": 1}}, {"enterprise_id": other}, {"type": "refund.created"},
                   {"resource_id": other}, {"occurred_at": clock() - timedelta(days=1)}, {"id": other},
                   {"programme_id": other}, {"provider_id": other}, {"resource_type": "voucher"},
                   {"dedupe_key": "x"}):
        await _refused(app, update(E).where(E.c.id == captured["id"]).values(**values))
    # publishing sets its position and instant, once
    assert await events.publish_pending(app.state.database, clock()) == len(before)
    published = {r["id"]: r for r in await _rows(app)}
    assert published[captured["id"]]["seq"] is not None
    for values in ({"seq": published[captured["id"]]["seq"] + 100}, {"seq": None},
                   {"published_at": clock() + timedelta(days=1)}):
        await _refused(app, update(E).where(E.c.id == captured["id"]).values(**values))
    await _refused(app, delete(E).where(E.c.id == captured["id"]))
    if ENGINE == "sqlite":  # a REPLACE deletes the row it meets without the DELETE trigger
        seq = published[captured["id"]]["seq"]
        await _refused(app, text("INSERT OR REPLACE INTO outbox_event SELECT * FROM outbox_event WHERE id = :id"),
                       {"id": captured["id"].hex})
        insert = ("INSERT OR REPLACE INTO outbox_event (id, type, occurred_at, resource_type, resource_id, data, seq, "
                  "dedupe_key) VALUES (:id, 'x', '2026-01-01 00:00:00', 'x', :id, '{}', :seq, :dedupe)")
        await _refused(app, text(insert), {"id": uuid.uuid4().hex, "seq": seq, "dedupe": None})
        async with app.state.database.unit_of_work() as session:  # an unpublished event, to take the position
            await session.execute(text(insert), {"id": other.hex, "seq": None, "dedupe": None})
        await _refused(app, text("UPDATE OR REPLACE outbox_event SET seq = :seq, published_at = '2026-01-01 00:00:00' "
                                 "WHERE id = :id"), {"seq": seq, "id": other.hex})
        marked = next(r for r in published.values() if r["dedupe_key"] is not None)
        async with app.state.database.unit_of_work() as session:  # skipped, as a once-only announcement is
            await session.execute(text(insert), {"id": uuid.uuid4().hex, "seq": None, "dedupe": marked["dedupe_key"]})
        published[other] = {r["id"]: r for r in await _rows(app)}[other]
    else:
        await _refused(app, text("TRUNCATE outbox_event CASCADE"))
    assert {r["id"]: r for r in await _rows(app)} == published
    # the feed still tells the provider what happened, as it was
    feed = await client.get("/v1/events", headers=auth(world.provider_key))
    assert feed.status_code == 200, feed.text
    told = [e for e in feed.json()["items"] if e["id"] == str(captured["id"])]
    assert [e["data"]["captured_amount"] for e in told] == [redeemed.json()["captured_amount"]]
    # and the service goes on announcing and publishing
    refund = await world.post(f"/v1/redemptions/{redeemed.json()['id']}/refunds", {"amount": 1_000, "reason": "x"})
    assert refund.status_code == 201, refund.text
    assert await events.publish_pending(app.state.database, clock()) >= 1
