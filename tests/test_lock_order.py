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
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from tests.applications.test_lifecycle import ACTION_PATHS, action_body, open_desk
from tests.conftest import ENGINE
from tests.support import assert_problem, auth, create, programme_payload, provider_payload
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


# A provider's kinds and its enrolments (an independent review of the registries, December 2026):
# a provider may not drop the kind of a programme it is enrolled in, nor a draft programme take a
# kind an enrolled provider lacks. Each check reads the other side, so two requests can each pass
# their own and commit together; an enrolment and a change of kind therefore hold the provider's
# row shared to the commit, and a provider's update holds it exclusively. Each test below parks
# the first request past its check, before its commit, on a lock no path under test depends on (a
# withdrawn enrolment's row, or the audit table: a request's audit events are written with its
# commit), lets the second start, then lets go: one must be refused provider_kind_mismatch, and no
# provider may end up enrolled in a programme of a kind it does not offer.

#: a request not yet sent
Request = Callable[[], Coroutine[Any, Any, httpx.Response]]
MODEL = {"kind": "model", "rate_table": {"model:registered": 3000}, "tiers": []}


async def _race(database_url: str, lock: str, params: dict[str, Any], first: Request,
                second: Request) -> tuple[httpx.Response, httpx.Response, bool]:
    """`first` runs until it waits on what `lock` holds; `second` then runs until it waits (or is
    done); `lock` lets go. Both responses, and whether `second` was still waiting then."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as locker, engine.connect() as watcher:
            await locker.begin()
            await locker.execute(text(lock), params)
            one = asyncio.create_task(first())
            await _until(watcher, 1, one)
            two = asyncio.create_task(second())
            await _until(watcher, 2, two)
            waited = not two.done()
            await locker.commit()
            answers = await asyncio.gather(one, two)
    finally:
        await engine.dispose()
    return answers[0], answers[1], waited


_ENROLMENT_ROW = "SELECT 1 FROM programme_enrolment WHERE programme_id = :p AND provider_id = :v FOR UPDATE"
# every write waits for it to insert its audit events, at its commit: after its checks and writes
_AUDIT = "LOCK TABLE audit_event IN SHARE MODE"


async def _etag(client: httpx.AsyncClient, key: str, path: str) -> str:
    response = await client.get(path, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.headers["etag"]


async def _patch(client: httpx.AsyncClient, key: str, path: str, body: dict[str, Any]) -> Request:
    """The PATCH, with the If-Match read now (before the race)."""
    headers = auth(key, **{"If-Match": await _etag(client, key, path)})
    return lambda: client.patch(path, json=body, headers=headers)


def _enrol(client: httpx.AsyncClient, key: str, programme_id: str, provider_id: str) -> Request:
    return lambda: client.put(f"/v1/programmes/{programme_id}/enrolments/{provider_id}", headers=auth(key))


async def _end_state(client: httpx.AsyncClient, key: str, programme_id: str, provider_id: str) -> tuple[str, list[str], bool]:
    """(the programme's kind, the provider's kinds, whether the provider is enrolled in it)."""
    programme = await client.get(f"/v1/programmes/{programme_id}", headers=auth(key))
    provider = await client.get(f"/v1/providers/{provider_id}", headers=auth(key))
    enrolments = await client.get(f"/v1/programmes/{programme_id}/enrolments", headers=auth(key))
    assert (programme.status_code, provider.status_code, enrolments.status_code) == (200, 200, 200)
    enrolled = provider_id in [e["provider_id"] for e in enrolments.json()["items"]]
    return programme.json()["kind"], provider.json()["kinds"], enrolled


async def _consistent(client: httpx.AsyncClient, key: str, programme_id: str, provider_id: str,
                      *answers: httpx.Response) -> tuple[str, list[str], bool]:
    """No provider serves a kind it does not offer, and exactly one of the two was refused
    provider_kind_mismatch while the other succeeded."""
    kind, kinds, enrolled = await _end_state(client, key, programme_id, provider_id)
    assert not (enrolled and kind not in kinds), \
        f"enrolled in a {kind} programme while offering {kinds}: " + " / ".join(a.text[:200] for a in answers)
    refused = [a for a in answers if a.status_code == 409]
    assert len(refused) == 1, [a.text[:200] for a in answers]
    assert_problem(refused[0], 409, "provider_kind_mismatch")
    assert all(a.status_code in (200, 201) for a in answers if a is not refused[0]), [a.text[:200] for a in answers]
    return kind, kinds, enrolled


async def _withdrawn(world: World) -> tuple[str, str]:
    """World's open compute programme, and its provider (compute and model) withdrawn from it."""
    programme_id, provider_id = world.programme["id"], world.provider["id"]
    withdrawn = await world.client.delete(f"/v1/programmes/{programme_id}/enrolments/{provider_id}",
                                          headers=auth(world.operator))
    assert withdrawn.status_code == 200, withdrawn.text
    return programme_id, provider_id


async def test_an_enrolment_past_its_kind_check_and_the_provider_dropping_that_kind(
        app: Any, client: httpx.AsyncClient, database_url: str) -> None:
    """The enrolment read the provider offering compute and waits on its withdrawn enrolment's row;
    the provider then drops compute. Without the enrolment's shared hold of the provider's row the
    update saw no enrolment and committed; without the update's exclusive lock it read the
    enrolments before taking the row, and committed once the enrolment had."""
    world = await build_world(app, client)
    programme_id, provider_id = await _withdrawn(world)
    ids = {"p": uuid.UUID(programme_id), "v": uuid.UUID(provider_id)}
    enrol = _enrol(client, world.operator, programme_id, provider_id)
    drop = await _patch(client, world.operator, f"/v1/providers/{provider_id}", {"kinds": ["model"]})
    enrolled, dropped, waited = await _race(database_url, _ENROLMENT_ROW, ids, enrol, drop)
    assert await _consistent(client, world.operator, programme_id, provider_id, enrolled, dropped) == \
        ("compute", ["compute", "model"], True)
    assert (enrolled.status_code, dropped.json()["programme_ids"]) == (201, [programme_id])
    assert waited  # the update waited for the enrolment to commit


async def test_a_provider_dropping_a_kind_and_an_enrolment_for_it_meanwhile(
        app: Any, client: httpx.AsyncClient, database_url: str) -> None:
    """The other order: the update found no enrolment and wrote the kinds; before it commits, the
    enrolment comes. Without its shared hold of the provider's row it read the kinds committed
    before (compute still) and committed with the update."""
    world = await build_world(app, client)
    programme_id, provider_id = await _withdrawn(world)
    drop = await _patch(client, world.operator, f"/v1/providers/{provider_id}", {"kinds": ["model"]})
    enrol = _enrol(client, world.operator, programme_id, provider_id)
    dropped, enrolled, waited = await _race(database_url, _AUDIT, {}, drop, enrol)
    assert await _consistent(client, world.operator, programme_id, provider_id, dropped, enrolled) == \
        ("compute", ["model"], False)
    assert dropped.status_code == 200
    assert waited  # the enrolment waited for the update to commit


async def _draft(world: World, kinds: list[str], *, withdrawn: bool) -> tuple[str, str]:
    """A draft compute programme, and an approved provider of `kinds` enrolled in it (or withdrawn)."""
    client, op = world.client, world.operator
    programme = await create(client, op, "/v1/programmes", programme_payload())
    provider = await create(client, op, "/v1/providers", provider_payload(kinds=kinds))
    approved = await client.post(f"/v1/providers/{provider['id']}/approve", json={"reason": "ok"}, headers=auth(op))
    assert approved.status_code == 200, approved.text
    path = f"/v1/programmes/{programme['id']}/enrolments/{provider['id']}"
    enrolled = await client.put(path, headers=auth(op))
    assert enrolled.status_code == 201, enrolled.text
    if withdrawn:
        gone = await client.delete(path, headers=auth(op))
        assert gone.status_code == 200, gone.text
    return programme["id"], provider["id"]


async def test_an_enrolment_past_its_kind_check_and_the_draft_programme_changing_kind(
        app: Any, client: httpx.AsyncClient, database_url: str) -> None:
    """A compute-only provider's enrolment in a draft compute programme read the programme's kind and
    waits on its withdrawn enrolment's row; the draft then becomes a model programme. Here the
    programme's row decides: both take it exclusively, so the change of kind waits for the
    enrolment, and then finds it."""
    world = await build_world(app, client)
    programme_id, provider_id = await _draft(world, ["compute"], withdrawn=True)
    ids = {"p": uuid.UUID(programme_id), "v": uuid.UUID(provider_id)}
    enrol = _enrol(client, world.operator, programme_id, provider_id)
    switch = await _patch(client, world.operator, f"/v1/programmes/{programme_id}", MODEL)
    enrolled, switched, waited = await _race(database_url, _ENROLMENT_ROW, ids, enrol, switch)
    assert await _consistent(client, world.operator, programme_id, provider_id, enrolled, switched) == \
        ("compute", ["compute"], True)
    assert (enrolled.status_code, switched.json()["provider_ids"]) == (201, [provider_id])
    assert waited  # the change of kind waited for the enrolment to commit


async def test_a_draft_programme_changing_kind_and_its_provider_dropping_that_kind(
        app: Any, client: httpx.AsyncClient, database_url: str) -> None:
    """A provider (compute and model) enrolled in a draft compute programme. The programme's change
    to model read the provider's kinds and wrote its own; before it commits, the provider drops
    model. Without the change of kind's shared hold, or without the update's exclusive lock, the
    update read the programme still compute, found nothing to refuse, and committed after it."""
    world = await build_world(app, client)
    programme_id, provider_id = await _draft(world, ["compute", "model"], withdrawn=False)
    switch = await _patch(client, world.operator, f"/v1/programmes/{programme_id}", MODEL)
    drop = await _patch(client, world.operator, f"/v1/providers/{provider_id}", {"kinds": ["compute"]})
    switched, dropped, waited = await _race(database_url, _AUDIT, {}, switch, drop)
    assert await _consistent(client, world.operator, programme_id, provider_id, switched, dropped) == \
        ("model", ["compute", "model"], True)
    assert (switched.status_code, dropped.json()["programme_ids"]) == (200, [programme_id])
    assert waited  # the update waited for the change of kind to commit


async def test_a_provider_dropping_a_kind_and_its_draft_programme_changing_to_it(
        app: Any, client: httpx.AsyncClient, database_url: str) -> None:
    """The other order: the provider's update found the programme compute and dropped model; before
    it commits, the programme changes to model. Without its shared hold of the provider's row, the
    change of kind read the kinds committed before (model still) and committed with the update."""
    world = await build_world(app, client)
    programme_id, provider_id = await _draft(world, ["compute", "model"], withdrawn=False)
    drop = await _patch(client, world.operator, f"/v1/providers/{provider_id}", {"kinds": ["compute"]})
    switch = await _patch(client, world.operator, f"/v1/programmes/{programme_id}", MODEL)
    dropped, switched, waited = await _race(database_url, _AUDIT, {}, drop, switch)
    assert await _consistent(client, world.operator, programme_id, provider_id, dropped, switched) == \
        ("compute", ["compute"], True)
    assert (dropped.status_code, switched.json()["provider_ids"]) == (200, [provider_id])
    assert waited  # the change of kind waited for the update to commit


async def test_a_tenant_s_refused_revocation_of_another_s_key_locks_nothing(
        app: Any, client: httpx.AsyncClient, database_url: str) -> None:
    """An enterprise key names a provider's key to revoke: 404, as if absent — and at once, even
    while the provider's key row is locked. The service had locked the row before looking whose
    it was, so a tenant could hold another's key row for as long as its request lasted (an
    independent review)."""
    world: World = await build_world(app, client)
    provider_key = (await world.client.get("/v1/me", headers=auth(world.provider_key))).json()["key_id"]
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as locker:
            await locker.begin()
            await locker.execute(text("SELECT 1 FROM api_key WHERE id = :id FOR UPDATE"), {"id": uuid.UUID(provider_key)})
            refused = await asyncio.wait_for(world.client.post(
                f"/v1/api-keys/{provider_key}/revoke", json={"reason": "not mine"},
                headers=auth(world.enterprise_key, **{"Idempotency-Key": "other-tenant"})), timeout=5)
            assert_problem(refused, 404, "not_found")
            await locker.rollback()
    finally:
        await engine.dispose()
    own = await world.client.post(f"/v1/api-keys/{provider_key}/revoke", json={"reason": "rotated by hand"},
                                  headers=auth(world.provider_key, **{"Idempotency-Key": "own"}))
    assert own.status_code == 200, own.text
