"""Settlement creation and payment under real concurrency: requests race through a real server
over a socket (tests/live_server.py), against the same database. Two creations for the same
provider, programme and period yield one settlement; overlapping periods never share a line;
a settlement is paid once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select, update

from services.voucher.clock import system_clock
from services.voucher.settlement.rules import SETTLE_AFTER
from services.voucher.tables import (
    LedgerAccount,
    Redemption,
    RedemptionRefund,
    Settlement,
    SettlementItem,
)
from tests.live_server import LiveServer
from tests.support import auth, guard_lifted
from tests.world import World, build_world

pytestmark = pytest.mark.timeout(120)
PARALLEL = 10
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def clock():  # the live server runs on the real clock; so does this test's app
    return system_clock


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, rate_table={"accelerator:domestic": 3000})


@pytest.fixture
def server(database_url: str, world: World):
    with LiveServer(database_url) as live:
        yield live


def yesterday() -> Any:
    """The day before today in Asia/Shanghai, as it was a little more than `SETTLE_AFTER` ago (with
    room for the test's own run): in the minutes after Beijing midnight the day just ended may not
    be settled yet, so the tests settle the day before it (CI once ran at 00:02 Beijing time)."""
    return (system_clock() - SETTLE_AFTER - timedelta(minutes=5)).astimezone(SHANGHAI).date() - timedelta(days=1)


def today() -> str:
    """Today in Asia/Shanghai, the service's calendar: a payment is recorded on a day from its
    approval to today."""
    return system_clock().astimezone(SHANGHAI).date().isoformat()


async def captures_yesterday(app, world: World) -> int:
    """Four captures and a partial refund, moved into yesterday (Asia/Shanghai); the expected total."""
    voucher = await world.issue(100_000_000)
    ids = []
    for i, spend in enumerate((1_000_000, 2_000_000, 3_000_000, 4_000_000)):
        response = await world.hold(voucher, spend, order=f"PO-{i}", path="/v1/redemptions")
        assert response.status_code == 201, response.text
        ids.append(uuid.UUID(response.json()["id"]))
    refund = await world.post(f"/v1/redemptions/{ids[0]}/refunds", {"amount": 100_000, "reason": "x"})
    assert refund.status_code == 201, refund.text
    # This stands in for time passing: the live server runs on the real clock and only settles
    # days that are over, so the captures (and the refund) are dated yesterday noon in Shanghai.
    noon = datetime.combine(yesterday(), time(12), SHANGHAI).astimezone(UTC)
    async with app.state.database.unit_of_work() as session, guard_lifted(session, "redemption",
                                                                             "redemption_terms_fixed"):
        await session.execute(update(Redemption).where(Redemption.id.in_(ids)).values(captured_at=noon))  # type: ignore[attr-defined]
        await session.execute(update(RedemptionRefund).where(RedemptionRefund.redemption_id == ids[0])  # type: ignore[arg-type]
                              .values(created_at=noon + timedelta(hours=1)))
    return 3_000_000 - 100_000  # 30 % of 10,000,000, less the refund


def request(world: World, start: Any, end: Any) -> tuple[str, dict[str, Any], dict[str, str]]:
    return ("/v1/settlements",
            {"provider_id": world.provider["id"], "programme_id": world.programme["id"],
             "period_start": start.isoformat(), "period_end": end.isoformat()},
            auth(world.operator, **{"Idempotency-Key": str(uuid.uuid4())}))


async def storm(server: LiveServer, requests: list[tuple[str, dict[str, Any], dict[str, str]]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=PARALLEL, max_keepalive_connections=PARALLEL)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
        return await asyncio.gather(*(http.post(p, json=b, headers=h) for p, b, h in requests))


def codes(responses: list[httpx.Response]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for r in responses:
        key = (r.status_code, r.json().get("code"))
        out[key] = out.get(key, 0) + 1
    return out


async def live_lines(app) -> list[tuple[str, uuid.UUID, uuid.UUID | None]]:
    """(kind, redemption, refund) of every item of every settlement that is not cancelled."""
    async with app.state.database.unit_of_work(write=False) as session:
        rows = (await session.execute(
            select(SettlementItem.kind, SettlementItem.redemption_id, SettlementItem.refund_id)
            .join(Settlement, Settlement.id == SettlementItem.settlement_id)  # type: ignore[arg-type]
            .where(Settlement.status != "cancelled", SettlementItem.released_at.is_(None))  # type: ignore[union-attr]
        )).all()
    return [(k, r, f) for k, r, f in rows]


async def settlement_count(app) -> int:
    async with app.state.database.unit_of_work(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(Settlement))).scalar_one())


def no_duplicates(lines: list[tuple[str, uuid.UUID, uuid.UUID | None]]) -> None:
    captures = [r for k, r, _ in lines if k == "capture"]
    refunds = [f for k, _, f in lines if k == "refund"]
    assert len(captures) == len(set(captures)), "a capture is in two live settlements"
    assert len(refunds) == len(set(refunds)), "a refund is in two live settlements"


async def test_racing_creations_of_one_period_make_one_settlement(app, world: World, server: LiveServer) -> None:
    expected = await captures_yesterday(app, world)
    day = yesterday()
    responses = await storm(server, [request(world, day, day) for _ in range(PARALLEL)])
    created = [r.json() for r in responses if r.status_code == 201]
    assert len(created) == 1, codes(responses)
    refused = [r.json() for r in responses if r.status_code != 201]
    assert all(r["status"] == 409 for r in refused), codes(responses)
    assert {r["code"] for r in refused} <= {"settlement_exists", "concurrent_update"}, codes(responses)
    assert all(r["settlement_id"] == created[0]["id"] for r in refused if r["code"] == "settlement_exists")
    winner = created[0]
    assert (winner["captured_total"], winner["refunded_total"], winner["total"], winner["line_count"]) == (
        3_000_000, 100_000, expected, 5)
    assert await settlement_count(app) == 1
    lines = await live_lines(app)
    no_duplicates(lines)
    assert len(lines) == 5
    assert (await world.reconciliation())["is_clean"]


async def test_racing_overlapping_periods_share_no_line(app, world: World, server: LiveServer) -> None:
    expected = await captures_yesterday(app, world)
    day = yesterday()
    # ten different periods, all ending yesterday: none is a duplicate of another, all overlap
    responses = await storm(server, [request(world, day - timedelta(days=k), day) for k in range(PARALLEL)])
    created = [r.json() for r in responses if r.status_code == 201]
    refused = {r.json()["code"] for r in responses if r.status_code != 201}
    assert all(r.status_code in (201, 409) for r in responses), codes(responses)
    assert refused <= {"nothing_to_settle", "concurrent_update"}, codes(responses)
    assert len(created) == 1, codes(responses)  # the first takes every line; the others find none left
    lines = await live_lines(app)
    no_duplicates(lines)
    assert len(lines) == sum(c["line_count"] for c in created) == 5
    assert sum(c["total"] for c in created) == expected
    assert await settlement_count(app) == len(created)
    assert (await world.reconciliation())["is_clean"]


async def test_racing_payments_pay_once(app, world: World, server: LiveServer) -> None:
    expected = await captures_yesterday(app, world)
    day = yesterday()
    created = await world.post("/v1/settlements", request(world, day, day)[1], key=world.operator)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    assert (await world.post(f"/v1/settlements/{sid}/submit", {})).status_code == 200
    assert (await world.post(f"/v1/settlements/{sid}/approve", {}, key=world.operator)).status_code == 200
    pay = {"reference": "ICBC-1", "paid_on": today()}  # the day it was approved, or the day after
    responses = await storm(server, [
        (f"/v1/settlements/{sid}/pay", pay, auth(world.operator, **{"Idempotency-Key": str(uuid.uuid4())}))
        for _ in range(PARALLEL)])
    assert [r.status_code for r in responses].count(200) == 1, codes(responses)
    refused = [r.json() for r in responses if r.status_code != 200]
    assert {r["code"] for r in refused} <= {"invalid_transition", "concurrent_update"}, codes(responses)
    async with app.state.database.unit_of_work(write=False) as session:
        paid = (await session.execute(select(LedgerAccount.balance).where(
            LedgerAccount.provider_id == uuid.UUID(world.provider["id"]),
            LedgerAccount.kind == "provider_paid"))).scalar_one()
    assert paid == expected
    assert (await world.reconciliation())["is_clean"]
