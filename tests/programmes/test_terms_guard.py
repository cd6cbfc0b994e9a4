"""An open programme's money terms changed behind the service (an independent review, December
2026): raised tenfold, its cap let every later grant and redemption through, and the
reconciliation judged caps by the same row. The database refuses it (migration 0034), and a
status moved back, and a deletion; what the service changes on an open programme still changes."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError

from services.voucher.db import table_of
from services.voucher.tables import Programme
from tests.conftest import ENGINE
from tests.programmes.test_routes import patch
from tests.support import auth, create, programme_payload
from tests.world import build_world

P = table_of(Programme)
REFUSED = "a programme's money terms never change once it opens"


async def _update(app: Any, programme_id: str, **values: Any) -> None:
    async with app.state.database.unit_of_work() as session:
        await session.execute(update(P).where(P.c.id == uuid.UUID(programme_id)).values(**values))


async def test_the_database_refuses_to_change_an_open_programmes_money_terms(app, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    programme = world.programme
    for values in ({"enterprise_cap": programme["enterprise_cap"] * 10}, {"rate_table": {"accelerator:domestic": 10_000}},
                   {"tiers": [{"spend_up_to": 10**12, "rate_bps": 10_000, "categories": None}]},
                   {"stacking_ceiling_bps": programme["stacking_ceiling_bps"] - 1},
                   {"budget_total": programme["budget_total"] + 1}, {"max_per_voucher": programme["max_per_voucher"] + 1},
                   {"unit": "TOKEN"}, {"mode": "enterprise_claim"}, {"cap_timezone": "Asia/Tokyo"},
                   {"voucher_validity_days": programme["voucher_validity_days"] + 1},
                   {"expiry_disposition": "breakage" if programme["expiry_disposition"] == "pool" else "pool"},
                   {"code": "ANOTHER"}, {"status": "draft"}):
        with pytest.raises(DBAPIError, match=REFUSED):
            await _update(app, programme["id"], **values)
    with pytest.raises(DBAPIError, match=REFUSED):
        async with app.state.database.unit_of_work() as session:
            await session.execute(delete(P).where(P.c.id == uuid.UUID(programme["id"])))
    if ENGINE == "sqlite":  # a REPLACE that meets its id or code deletes the row, firing no trigger
        draft = await create(client, world.operator, "/v1/programmes", programme_payload())
        for column, value in (("id", uuid.UUID(programme["id"]).hex), ("code", programme["code"])):
            with pytest.raises(DBAPIError, match=REFUSED):
                async with app.state.database.unit_of_work() as session:
                    await session.execute(text(f"UPDATE OR REPLACE programme SET {column} = :value "  # noqa: S608
                                               "WHERE id = :draft"),
                                          {"value": value, "draft": uuid.UUID(draft["id"]).hex})
        with pytest.raises(DBAPIError, match=REFUSED):
            async with app.state.database.unit_of_work() as session:
                await session.execute(text("CREATE TEMP TABLE copy AS SELECT * FROM programme WHERE id = :id"),
                                      {"id": uuid.UUID(programme["id"]).hex})
                await session.execute(text("UPDATE copy SET enterprise_cap = enterprise_cap * 10"))
                await session.execute(text("INSERT OR REPLACE INTO programme SELECT * FROM copy"))
    # What the service changes on an open programme still changes, and it moves forward.
    renamed = await patch(client, world.operator, programme["id"], {"name": "Renamed"})
    assert renamed.status_code == 200, renamed.text
    closed = await client.post(f"/v1/programmes/{programme['id']}/close", headers=auth(world.operator))
    assert closed.status_code == 200, closed.text
    with pytest.raises(DBAPIError, match=REFUSED):
        await _update(app, programme["id"], status="open")
    assert (await world.reconciliation())["is_clean"]


async def test_a_drafts_terms_change_freely(app, client: httpx.AsyncClient, operator_key: str) -> None:
    draft = await create(client, operator_key, "/v1/programmes", programme_payload())
    await _update(app, draft["id"], enterprise_cap=draft["enterprise_cap"] * 2, tiers=[])
    with pytest.raises(DBAPIError, match=REFUSED):  # not straight to closed
        await _update(app, draft["id"], status="closed")
    opened = await client.post(f"/v1/programmes/{draft['id']}/open", headers=auth(operator_key))
    assert opened.status_code == 200, opened.text
    assert opened.json()["enterprise_cap"] == draft["enterprise_cap"] * 2
