"""Two paths that lock the same rows must lock them in one order, and a path must hold what it
decided on (PostgreSQL's row locks).

A merged write's balance updates take their rows in the order the merged statement runs them,
which is not the order of the batch; a path that locks a shared account explicitly before such a
write, or that posts two journals one after the other, can therefore close a cycle with another
path and lose a deadlock (409 concurrent_update). Each test here holds a row from a connection of
its own so that the two requests meet in the order that deadlocked, then lets go: both must
succeed, and the database must count no deadlock. Found by an independent review (December 2026).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from tests.applications.test_lifecycle import ACTION_PATHS, action_body, open_desk
from tests.conftest import ENGINE
from tests.support import assert_problem, auth
from tests.world import World, build_world

pytestmark = [pytest.mark.skipif(ENGINE != "postgresql", reason="PostgreSQL's row locks"), pytest.mark.timeout(120)]


async def _until(conn: AsyncConnection, waiting: int, *done: asyncio.Task[Any]) -> None:
    """Until `waiting` other sessions wait on a lock, or a task has finished (it did not need to)."""
    for _ in range(400):
        found = (await conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"))).scalar_one()
        await conn.commit()
        if found >= waiting or any(task.done() for task in done):
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{waiting} requests never waited")


async def _deadlocks(conn: AsyncConnection) -> int:
    await asyncio.sleep(0.7)  # backends report their statistics with a delay
    count = (await conn.execute(text(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"))).scalar_one()
    await conn.commit()
    return int(count)


async def _hold_programme_account(locker: AsyncConnection, programme_id: str, kind: str) -> None:
    """Begin a transaction on `locker` that holds the programme's account of `kind` locked."""
    account = (await locker.execute(text(
        "SELECT id FROM ledger_account WHERE programme_id = :p AND kind = :kind"),
        {"p": uuid.UUID(programme_id), "kind": kind})).scalar_one()
    await locker.commit()
    await locker.begin()
    await locker.execute(text("SELECT 1 FROM ledger_account WHERE id = :id FOR UPDATE"), {"id": account})


async def test_a_refund_on_a_revoked_voucher_and_the_revocation_of_another(
        app, client: httpx.AsyncClient, database_url: str) -> None:
    """Both move the programme's pool and the enterprise's receivable (shared by its vouchers)."""
    world: World = await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=200_000_000,
                                     max_per_voucher=100_000_000, rate_table={"accelerator:domestic": 3000})
    a, b = await world.issue(1_000_000), await world.issue(1_000_000)
    on_a = (await world.hold(a, 1_000_000, order="PO-a", path="/v1/redemptions")).json()
    await world.hold(b, 1_000_000, order="PO-b", path="/v1/redemptions")
    revoked = await world.post(f"/v1/vouchers/{a['id']}/revoke", {"reason": "fraud", "clawback": 300_000},
                               key=world.operator, idem="revoke-a")
    assert revoked.status_code == 200, revoked.text
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as locker, engine.connect() as watcher:
            before = await _deadlocks(watcher)
            used_a = (await locker.execute(text("SELECT used_account_id FROM voucher WHERE id = :id"),
                                           {"id": uuid.UUID(a["id"])})).scalar_one()
            await locker.commit()
            await locker.begin()
            # the refund's write waits on voucher A's used account, holding what it took before it
            await locker.execute(text("SELECT 1 FROM ledger_account WHERE id = :id FOR UPDATE"), {"id": used_a})
            refund = asyncio.create_task(world.client.post(
                f"/v1/redemptions/{on_a['id']}/refunds", json={"amount": 100_000, "reason": "returned"},
                headers=auth(world.provider_key, **{"Idempotency-Key": "refund-a"})))
            await _until(watcher, 1)
            revoke = asyncio.create_task(world.client.post(
                f"/v1/vouchers/{b['id']}/revoke", json={"reason": "fraud", "clawback": 100_000},
                headers=auth(world.operator, **{"Idempotency-Key": "revoke-b"})))
            await _until(watcher, 2, revoke)
            await locker.commit()
            refunded, revoked_b = await asyncio.gather(refund, revoke)
            assert (refunded.status_code, revoked_b.status_code) == (201, 200), (refunded.text, revoked_b.text)
            assert await _deadlocks(watcher) == before
    finally:
        await engine.dispose()
    assert (await world.reconciliation())["is_clean"]


async def test_an_approval_and_an_upheld_objection_to_another_application(
        app, client: httpx.AsyncClient, database_url: str) -> None:
    """Both move the programme's pool and its committed budget: rejecting an application an
    objection returned to review releases what it held."""
    desk = await open_desk(app, client)
    first = await desk.apply(1_000_000)
    await desk.done(first, "approve")  # in publicity: its amount committed
    await desk.done(first, "objection")  # back to review, the commitment held
    _, other_key = await desk.other_enterprise()
    second = await desk.apply(1_000_000, key=other_key)
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as locker, engine.connect() as watcher:
            before = await _deadlocks(watcher)
            await _hold_programme_account(locker, desk.programme_id, "programme_committed")
            objection = asyncio.create_task(client.post(
                f"/v1/applications/{first['id']}/{ACTION_PATHS['reject']}", json=action_body("reject", 0),
                headers=auth(desk.world.operator, **{"Idempotency-Key": "upheld"})))
            await _until(watcher, 1)
            approval = asyncio.create_task(client.post(
                f"/v1/applications/{second['id']}/approve", json={"amount": 1_000_000},
                headers=auth(desk.world.operator, **{"Idempotency-Key": "approve"})))
            await _until(watcher, 2, approval)
            await locker.commit()
            objected, approved = await asyncio.gather(objection, approval)
            assert (objected.status_code, approved.status_code) == (200, 200), (objected.text, approved.text)
            assert await _deadlocks(watcher) == before
    finally:
        await engine.dispose()


async def test_a_bulk_issue_and_an_approval_for_one_of_its_enterprises(
        app: Any, client: httpx.AsyncClient, database_url: str) -> None:
    """A batch to [E1, E2] had locked E1's usage row, then the budget, then waited on E2's row,
    while E2's approval held that row and waited on the budget. The batch now locks every
    grant's usage row before the budget (found by an independent review)."""
    desk = await open_desk(app, client)
    other, other_key = await desk.other_enterprise()
    application = await desk.apply(1_000_000, key=other_key)  # under review; E2's usage row exists
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as locker, engine.connect() as watcher:
            before = await _deadlocks(watcher)
            await _hold_programme_account(locker, desk.programme_id, "programme_available")
            grants = sorted([desk.world.enterprise["id"], other["id"]], key=lambda e: e != desk.world.enterprise["id"])
            bulk = asyncio.create_task(client.post("/v1/vouchers/bulk", json={
                "programme_id": desk.programme_id,
                "grants": [{"enterprise_id": e, "face_value": 1_000_000} for e in grants]},
                headers=auth(desk.world.operator, **{"Idempotency-Key": "bulk"})))
            await _until(watcher, 1)  # the batch waits on the budget
            approval = asyncio.create_task(client.post(
                f"/v1/applications/{application['id']}/approve", json={"amount": 1_000_000},
                headers=auth(desk.world.operator, **{"Idempotency-Key": "approve"})))
            await _until(watcher, 2, approval)  # the approval waits too: on E2's usage row, or the budget
            await locker.commit()
            issued, approved = await asyncio.gather(bulk, approval)
            assert (issued.status_code, approved.status_code) == (201, 200), (issued.text, approved.text)
            assert await _deadlocks(watcher) == before
    finally:
        await engine.dispose()
    await desk.assert_clean()


async def test_a_submission_that_issues_last_years_approval_a_direct_issue_and_another_approval(
        app: Any, client: httpx.AsyncClient, database_url: str, clock: Any) -> None:
    """Approved in December, E1's publicity ends in January; E1's next submission issues that
    voucher first. The issue took last year's usage row and the programme's committed budget,
    and only then this year's usage row, which a direct issue to E1 held while it waited on the
    pool, which E2's approval held while it waited on the committed budget: a cycle of three.
    A submission now locks this year's usage row, after last year's, before it issues."""
    clock.current = datetime(2026, 12, 30, 2, 0, tzinfo=UTC)  # 10:00 on 30 December in Beijing
    desk = await open_desk(app, client, eligibility_rules=None)
    earlier = await desk.apply(5_000_000)
    await desk.done(earlier, "approve")  # committed in 2026; publicity ends in 2027
    _, other_key = await desk.other_enterprise()
    second = await desk.apply(1_000_000, key=other_key)
    clock.advance(days=30)
    assert (await desk.issue_direct(1_000_000)).json()["period_key"] == "2027"  # E1's 2027 row exists
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as locker, engine.connect() as watcher:
            before = await _deadlocks(watcher)
            await _hold_programme_account(locker, desk.programme_id, "programme_available")
            approval = asyncio.create_task(client.post(
                f"/v1/applications/{second['id']}/approve", json={"amount": 1_000_000},
                headers=auth(desk.world.operator, **{"Idempotency-Key": "approve"})))
            await _until(watcher, 1, approval)  # E2's approval holds E2's row, waits on the pool
            direct = asyncio.create_task(desk.issue_direct(1_000_000))
            await _until(watcher, 2, direct)  # the direct issue holds E1's 2027 row, waits on the pool
            submission = asyncio.create_task(desk.submit(1_000_000))
            await _until(watcher, 3, submission)  # the submission waits on E1's 2027 row
            await locker.commit()
            approved, issued, submitted = await asyncio.gather(approval, direct, submission)
            assert (approved.status_code, issued.status_code, submitted.status_code) == (200, 201, 201), \
                (approved.text, issued.text, submitted.text)
            assert await _deadlocks(watcher) == before
    finally:
        await engine.dispose()
    assert (await desk.status(earlier))["status"] == "issued"
    await desk.assert_clean()


async def test_a_submission_and_the_programme_closed_and_archived_meanwhile(
        app: Any, client: httpx.AsyncClient, database_url: str) -> None:
    """A submission read the programme open, then waited on the enterprise's usage row; the
    office closed the programme and archived it (no open application yet), and the submission
    then opened an application in an archived programme. It now holds the programme shared, as
    an issue does, so closing waits for it, and archiving then sees the application."""
    desk = await open_desk(app, client, eligibility_rules=None)
    await desk.apply(1_000_000)
    await desk.done((await desk.listing())[0], "withdraw")  # E1's usage row exists; nothing open
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as locker, engine.connect() as watcher:
            await locker.begin()
            await locker.execute(text(
                "SELECT 1 FROM enterprise_period_usage WHERE programme_id = :p FOR UPDATE"),
                {"p": uuid.UUID(desk.programme_id)})
            submission = asyncio.create_task(desk.submit(1_000_000))
            await _until(watcher, 1, submission)  # the submission waits on E1's usage row
            close = asyncio.create_task(client.post(f"/v1/programmes/{desk.programme_id}/close",
                                                    headers=auth(desk.world.operator)))
            await _until(watcher, 2, close)
            waited = not close.done()  # closing waits for the submission (it had closed at once)
            await locker.commit()
            submitted, closed = await asyncio.gather(submission, close)
    finally:
        await engine.dispose()
    assert waited
    assert (submitted.status_code, closed.status_code) == (201, 200), (submitted.text, closed.text)
    archive = await client.post(f"/v1/programmes/{desk.programme_id}/archive", headers=auth(desk.world.operator))
    assert_problem(archive, 409, "invalid_transition")  # an application is open
    programme = (await client.get(f"/v1/programmes/{desk.programme_id}", headers=auth(desk.world.operator))).json()
    assert programme["status"] == "closed"
