"""The worker's jobs (issue 7): each idempotent, and two workers at once move value once.

"Two workers" are two Database objects (two connection pools), as two worker processes
would have; on PostgreSQL they really race through row locks, SKIP LOCKED and advisory locks.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from services.voucher import jobs
from services.voucher.db import Database
from services.voucher.tables import LedgerTransaction, OutboxEvent, Settlement, Voucher
from services.voucher.webhooks import service as webhooks
from tests.support import auth
from tests.world import World, build_world


async def _twice_at_once(app: Any, job: str) -> list[int]:
    """Run `job` in two workers at the same moment, then once more (nothing may be left)."""
    other = Database(app.state.database.settings)
    try:
        first = await asyncio.gather(jobs.run_once(app.state.database, job, app.state.clock()),
                                     jobs.run_once(other, job, app.state.clock()))
        return [*first, await jobs.run_once(other, job, app.state.clock())]
    finally:
        await other.dispose()


async def _count(app: Any, model: Any, *where: Any) -> int:
    async with app.state.database.unit_of_work(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


async def _holds(world: World, voucher: dict[str, Any], n: int) -> None:
    for i in range(n):
        response = await world.hold(voucher, 100_000, order=f"J-{i}")
        assert response.status_code == 201, response.text


async def test_every_scheduled_job_is_known_to_run_once() -> None:
    assert set(jobs.JOBS) == set(jobs.SCHEDULE)
    assert {"expire-holds", "expire-vouchers", "end-publicity", "create-settlements", "announce-expiring",
            "publish-events", "deliver-webhooks", "seal-audit", "audit-checkpoint"} <= set(jobs.JOBS)


async def test_expiring_holds_in_two_workers_posts_each_once(app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    await _holds(world, voucher, 8)
    clock.advance(seconds=1801)
    journals = await _count(app, LedgerTransaction)
    done = await _twice_at_once(app, "expire-holds")
    assert sum(done) == 8 and done[-1] == 0, done
    assert await _count(app, LedgerTransaction) == journals + 8  # one release per hold, never two
    assert await _count(app, OutboxEvent, OutboxEvent.type == "hold.expired") == 8
    view = await world.voucher(voucher["id"])
    assert view["balances"] == {"available": 10_000_000, "held": 0, "used": 0}


async def test_expiring_vouchers_in_two_workers_posts_each_once(app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    world = await build_world(app, client)
    for _ in range(4):
        await world.issue(1_000_000)
    clock.advance(days=366)
    journals = await _count(app, LedgerTransaction)
    done = await _twice_at_once(app, "expire-vouchers")
    assert sum(done) == 4 and done[-1] == 0, done
    assert await _count(app, LedgerTransaction) == journals + 4


async def test_scheduled_settlements_are_made_once_for_last_month(
    app: Any, client: httpx.AsyncClient, clock: Any
) -> None:
    world = await build_world(app, client)
    other = await build_world(app, client)
    voucher, theirs = await world.issue(10_000_000), await other.issue(10_000_000)
    for w, v in ((world, voucher), (other, theirs)):
        response = await w.hold(v, 1_000_000, order="M-1", path="/v1/redemptions")
        assert response.status_code == 201, response.text
    assert await jobs.run_once(app.state.database, "create-settlements", clock()) == 0  # the month is not over
    clock.advance(days=32)
    done = await _twice_at_once(app, "create-settlements")
    assert sum(done) == 2 and done[-1] == 0, done
    assert await _count(app, Settlement) == 2
    listed = await client.get("/v1/settlements", headers=auth(world.provider_key))
    [mine] = listed.json()["items"]
    assert mine["status"] == "draft" and mine["total"] == 300_000
    assert mine["period_start"].endswith("-01")
    # The office cancels it: the schedule does not make it again.
    cancelled = await client.post(f"/v1/settlements/{mine['id']}/cancel", json={"reason": "figures disputed offline"},
                                  headers=auth(world.operator, **{"Idempotency-Key": "cancel-1"}))
    assert cancelled.status_code == 200, cancelled.text
    assert await jobs.run_once(app.state.database, "create-settlements", clock()) == 0


async def test_months_the_schedule_did_not_run_through_are_settled_too(
    app: Any, client: httpx.AsyncClient, clock: Any
) -> None:
    """An independent review moved the clock 70 days past a capture: no run fell in the month
    after it, and the month was never drafted. Every elapsed month since the pair's first
    capture is looked at, oldest first, one draft each; a month already settled (here by hand)
    is not made again."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    months = []
    for order in ("A-1", "A-2", "A-3"):
        response = await world.hold(voucher, 1_000_000, order=order, path="/v1/redemptions")
        assert response.status_code == 201, response.text
        months.append(datetime.fromisoformat(response.json()["captured_at"]).astimezone(ZoneInfo("Asia/Shanghai"))
                      .date().replace(day=1))
        clock.advance(days=35)
    first, second, third = months
    assert first < second < third
    by_hand = await client.post("/v1/settlements", json={
        "provider_id": world.provider["id"], "programme_id": world.programme["id"],
        "period_start": second.isoformat(), "period_end": (third - timedelta(days=1)).isoformat()},
        headers=auth(world.operator, **{"Idempotency-Key": "by-hand"}))
    assert by_hand.status_code == 201, by_hand.text
    clock.advance(days=40)
    assert await jobs.run_once(app.state.database, "create-settlements", clock()) == 2
    assert await jobs.run_once(app.state.database, "create-settlements", clock()) == 0
    listed = (await client.get("/v1/settlements", headers=auth(world.provider_key))).json()["items"]
    assert sorted((s["period_start"], s["total"]) for s in listed) == [
        (m.isoformat(), 300_000) for m in months]


def test_the_days_no_settlement_covers_are_read_in_runs() -> None:
    from services.voucher.settlement.rules import uncovered

    jan1, jan31, mar31 = date(2026, 1, 1), date(2026, 1, 31), date(2026, 3, 31)
    assert uncovered(jan1, mar31, []) == [(jan1, mar31)]
    assert uncovered(jan1, mar31, [(jan1, jan31)]) == [(date(2026, 2, 1), mar31)]
    # by hand, half months, overlapping and out of order; one outside the range
    periods = [(date(2026, 2, 16), date(2026, 2, 28)), (date(2026, 2, 1), date(2026, 2, 15)),
               (date(2026, 2, 10), date(2026, 2, 20)), (date(2025, 12, 1), date(2025, 12, 31))]
    assert uncovered(jan1, mar31, periods) == [(jan1, jan31), (date(2026, 3, 1), mar31)]
    assert uncovered(jan1, jan31, [(date(2025, 12, 15), date(2026, 2, 3))]) == []
    assert uncovered(jan1, jan31, [(date(2026, 1, 31), date(2026, 1, 31))]) == [(jan1, date(2026, 1, 30))]


async def test_a_run_over_settled_months_reads_no_capture(app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    """The review of the change counted the hourly run's statements growing with every month
    since the first capture, and a month settled in halves by hand read whole every hour: now
    a pair whose days are all covered costs a few small reads (of its settlements, not its
    captures), whatever its history."""
    from sqlalchemy import event

    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    captured = []
    for order in ("H-1", "H-2", "H-3"):
        response = await world.hold(voucher, 100_000, order=order, path="/v1/redemptions")
        captured.append(datetime.fromisoformat(response.json()["captured_at"]).astimezone(ZoneInfo("Asia/Shanghai")))
        clock.advance(days=40)
    first_month = captured[0].date().replace(day=1)
    last_day = (captured[-1].date().replace(day=1) + timedelta(days=31)).replace(day=1) - timedelta(days=1)
    middle = first_month + (last_day - first_month) / 2
    for start, end in ((first_month, middle), (middle + timedelta(days=1), last_day)):  # halves, by hand
        made = await client.post("/v1/settlements", json={
            "provider_id": world.provider["id"], "programme_id": world.programme["id"],
            "period_start": start.isoformat(), "period_end": end.isoformat()},
            headers=auth(world.operator, **{"Idempotency-Key": f"half-{start}"}))
        assert made.status_code == 201, made.text
    clock.advance(days=400)
    statements: list[str] = []
    engine = app.state.database.engine.sync_engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert await jobs.run_once(app.state.database, "create-settlements", clock()) == 0
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    probes = [s for s in statements if "FROM redemption " in s and "settlement_item" in s]
    assert len(probes) == 1, statements
    refunds = [s for s in statements if "FROM redemption_refund" in s]  # the pair's, from one day on (by index)
    assert len(refunds) == 1, statements
    assert all(f"redemption_refund.{c}" in refunds[0] for c in ("provider_id =", "programme_id =", "created_at >=")), \
        refunds[0]


def test_the_window_to_settle_runs_from_the_first_capture_to_the_last_month_ended() -> None:
    from services.voucher.settlement.rules import SETTLE_AFTER, settle_window

    shanghai = ZoneInfo("Asia/Shanghai")
    capture = datetime(2026, 1, 31, 23, 0, tzinfo=shanghai)  # 15:00 UTC: January in Shanghai
    march_ends = datetime(2026, 4, 1, tzinfo=shanghai)
    assert settle_window(capture, march_ends) == (date(2026, 1, 1), date(2026, 2, 28))
    assert settle_window(capture, march_ends + SETTLE_AFTER) == (date(2026, 1, 1), date(2026, 3, 31))
    assert settle_window(capture, datetime(2026, 2, 1, tzinfo=shanghai)) is None
    assert settle_window(capture, datetime(2026, 2, 1, tzinfo=shanghai) + SETTLE_AFTER) == (
        date(2026, 1, 1), date(2026, 1, 31))
    assert settle_window(capture, datetime(2036, 1, 1, 1, tzinfo=shanghai)) == (date(2026, 1, 1), date(2035, 12, 31))


async def test_announcing_and_publishing_in_two_workers_is_once(app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    world = await build_world(app, client, voucher_validity_days=10)
    for _ in range(3):
        await world.issue(1_000_000)
    clock.advance(days=5)
    done = await _twice_at_once(app, "announce-expiring")
    assert sum(done) == 3, done
    assert await _count(app, OutboxEvent, OutboxEvent.type == "voucher.expiring") == 3
    published = await _twice_at_once(app, "publish-events")
    assert sum(published) == await _count(app, OutboxEvent) and published[-1] == 0


async def test_a_worker_round_runs_every_job_and_survives_a_failing_one(
    app: Any, client: httpx.AsyncClient, clock: Any, monkeypatch: Any
) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(1_000_000)
    await _holds(world, voucher, 2)
    clock.advance(seconds=1801)
    original = jobs.run_once

    async def flaky(database: Database, job: str, now: Any) -> int:
        if job == "expire-vouchers":
            raise RuntimeError("the database went away")
        return await original(database, job, now)

    monkeypatch.setattr(jobs, "run_once", flaky)
    worker = jobs.JobWorker(app.state.database, clock, interval=0.01)
    done = await worker.round()
    assert done["expire-holds"] == 2
    assert "expire-vouchers" not in done  # failed, logged, and the rest went on
    assert done["publish-events"] >= 2 and done["audit-checkpoint"] == 1
    again = await worker.round()  # hourly jobs wait for their interval
    assert "audit-checkpoint" not in again and "expire-holds" in again
    stop = asyncio.Event()
    stop.set()
    await worker.run(stop)  # a stopped worker returns after at most one round


async def test_a_worker_runs_no_job_on_a_database_migrated_past_its_build(
    app: Any, client: httpx.AsyncClient, clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    """A worker left running across an upgrade (the database moved to a revision this build does
    not know) or a downgrade runs nothing: every job of the round is counted as failed and the
    log says why. Once the database is at the build's head again it runs as before."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from services.voucher import metrics, observability

    world = await build_world(app, client)
    voucher = await world.issue(1_000_000)
    await _holds(world, voucher, 2)
    clock.advance(seconds=1801)
    (head,) = observability.migration_heads()
    older = ScriptDirectory(str(observability.MIGRATIONS)).get_revision(head).down_revision
    counted: list[tuple[str, str]] = []
    monkeypatch.setattr(metrics, "job_ran", lambda job, outcome, *args, **kwargs: counted.append((job, outcome)))
    worker = jobs.JobWorker(app.state.database, clock, interval=0.01)
    journals = await _count(app, LedgerTransaction)
    try:
        for revision in ("9f9f9f9f9f9f", older):  # a newer build's, and an older one
            async with app.state.database.engine.begin() as connection:
                await connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
            with caplog.at_level("ERROR", logger="services.voucher.jobs"):
                assert await worker.round() == {}
            assert f"the database is at revision ['{revision}']" in caplog.text and head in caplog.text
            caplog.clear()
        assert counted == [(job, "error") for job in jobs.JOBS] * 2
        assert await _count(app, LedgerTransaction) == journals  # nothing ran
    finally:
        async with app.state.database.engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    done = await worker.round()
    assert done["expire-holds"] == 2


async def test_a_stop_ends_the_round_after_the_current_job(app: Any, monkeypatch: Any) -> None:
    """SIGTERM stops the worker after its current job: the stop was read only between rounds, so
    every remaining job of the round still ran (independent review, December 2026)."""
    ran: list[str] = []
    stop = asyncio.Event()

    async def job_run(database: Any, job: str, now: Any) -> int:
        ran.append(job)
        if job == "expire-holds":
            stop.set()  # the signal arrives while the first job runs
        return 0

    monkeypatch.setattr(jobs, "run_once", job_run)
    worker = jobs.JobWorker(app.state.database, app.state.clock, interval=0.01,
                            only=("expire-holds", "publish-events", "deliver-webhooks", "seal-audit"))
    await asyncio.wait_for(worker.run(stop), 5)
    assert "publish-events" not in ran and "seal-audit" not in ran, ran


async def test_an_hourly_job_that_failed_runs_again_next_round(app: Any, monkeypatch: Any) -> None:
    """It was stamped as run before it ran, so a failed hourly job waited an hour, though the
    log said it runs again next round (independent review)."""
    calls: list[str] = []

    async def flaky(database: Any, job: str, now: Any) -> int:
        calls.append(job)
        if len(calls) == 1:
            raise RuntimeError("the database connection dropped")
        return 0

    monkeypatch.setattr(jobs, "run_once", flaky)
    worker = jobs.JobWorker(app.state.database, app.state.clock, interval=0.01, only=("announce-expiring",))
    await worker.round()
    await worker.round()
    await worker.round()  # succeeded in the second: now it waits its hour
    assert calls == ["announce-expiring", "announce-expiring"]


async def test_a_hanging_receiver_does_not_hold_up_the_event_feed(app: Any, client: httpx.AsyncClient) -> None:
    """While deliver-webhooks waited on one tenant's hanging receiver, publish-events (and the
    value and audit jobs) did not run: every subscriber's feed stalled for the whole delivery
    job (independent review). Delivery runs in a loop of its own now."""
    from tests.support import fresh_key
    from tests.webhooks.receiver import receiver

    world = await build_world(app, client)
    settings = app.state.settings.model_copy(update={"webhook_timeout_seconds": 2.0, "webhook_concurrency": 2})
    database = Database(settings)
    voucher = await world.issue(50_000_000)
    try:
        with receiver(delay=5.0) as slow:
            await jobs.run_once(database, "publish-events", app.state.clock())
            made = await client.post("/v1/webhook-endpoints", headers=auth(world.provider_key, **fresh_key()),
                                     json={"url": slow.url, "event_types": ["redemption.captured"]})
            assert made.status_code == 201, made.text
            for n in range(3):
                response = await world.hold(voucher, 1_000_000, order=f"PO-{n}", path="/v1/redemptions")
                assert response.status_code == 201, response.text
            worker = jobs.JobWorker(database, app.state.clock, interval=0.05,
                                    only=("publish-events", "deliver-webhooks"))
            stop = asyncio.Event()
            running = asyncio.create_task(worker.run(stop))
            await asyncio.sleep(0.5)  # the worker now waits on the hanging receiver
            late = await world.hold(voucher, 1_000_000, order="PO-LATE", path="/v1/redemptions")
            assert late.status_code == 201, late.text
            seen = False
            for _ in range(100):  # 1 s: twenty worker intervals, half the receiver's timeout
                feed = await client.get("/v1/events", params={"resource_id": late.json()["id"]},
                                        headers=auth(world.enterprise_key))
                if feed.json()["items"]:
                    seen = True
                    break
                await asyncio.sleep(0.01)
            stop.set()
            await running
    finally:
        await database.dispose()
    assert seen, "the event was not published while a delivery waited on a hanging receiver"


async def test_a_round_whose_sandbox_clock_cannot_be_read_is_skipped_and_both_loops_go_on(
        app: Any, monkeypatch: Any) -> None:
    """Read outside each job's own guard, a failed sandbox clock read had ended one loop and
    left the other running unwatched (an independent review): the round is skipped, logged."""
    from services.voucher.clock import SandboxClock
    from services.voucher.sandbox import service as sandbox

    calls, ran = 0, []
    original = sandbox.refresh

    async def flaky(database: Any, clock: Any) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("database is locked")
        await original(database, clock)

    async def job(database: Any, name: str, now: Any) -> int:
        ran.append(name)
        return 0

    monkeypatch.setattr(sandbox, "refresh", flaky)
    monkeypatch.setattr(jobs, "run_once", job)
    worker = jobs.JobWorker(app.state.database, SandboxClock(app.state.clock), interval=0.01,
                            only=("publish-events", "deliver-webhooks"))
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    for _ in range(200):
        if {"publish-events", "deliver-webhooks"} <= set(ran):
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(running, 5)
    assert {"publish-events", "deliver-webhooks"} <= set(ran), ran


async def test_a_loop_that_fails_ends_the_worker_and_the_other_loop_with_it(app: Any, monkeypatch: Any) -> None:
    async def broken(self: Any, stop: Any, jobs_: Any) -> None:
        if "deliver-webhooks" in jobs_:
            raise RuntimeError("unexpected")
        await stop.wait()  # the other loop: cancelled when its sibling fails

    monkeypatch.setattr(jobs.JobWorker, "_loop", broken)
    worker = jobs.JobWorker(app.state.database, app.state.clock, interval=0.01)
    try:
        await asyncio.wait_for(worker.run(asyncio.Event()), 5)
    except* RuntimeError:
        pass
    else:
        raise AssertionError("the failure was lost")


async def test_an_item_that_fails_unexpectedly_holds_up_no_other_and_fails_the_run(
    app: Any, client: httpx.AsyncClient, clock: Any, monkeypatch: Any
) -> None:
    """A per-item job re-raised the first unexpected error: its finder returns the same items
    first on every run, so one such item (a bug, a row changed behind the service) held up
    every voucher behind it for good (an independent review of the jobs, December 2026). The
    others now expire, and the run still fails, so the worker logs and counts it."""
    world = await build_world(app, client)
    for _ in range(3):
        await world.issue(1_000_000)
    clock.advance(days=366)
    find, expire = jobs.PER_ITEM["expire-vouchers"]
    async with app.state.database.unit_of_work(write=False) as session:
        poisoned = (await find(session, clock()))[0]  # found first, every run

    async def expire_but_one(session: Any, voucher_id: Any, now: datetime) -> int:
        if voucher_id == poisoned:
            raise RuntimeError("a row the service cannot read")
        return await expire(session, voucher_id, now)

    monkeypatch.setitem(jobs.PER_ITEM, "expire-vouchers", (find, expire_but_one))
    with pytest.raises(RuntimeError, match="cannot read"):
        await jobs.run_once(app.state.database, "expire-vouchers", clock())
    posted = Voucher.expiry_posted_at.is_not(None)
    assert await _count(app, Voucher, posted) == 2 and await _count(app, Voucher, Voucher.id == poisoned, posted) == 0
    monkeypatch.setitem(jobs.PER_ITEM, "expire-vouchers", (find, expire))
    assert await jobs.run_once(app.state.database, "expire-vouchers", clock()) == 1  # the one left, once mended


async def _subscribed_to_captures(world: World, url: str, voucher: dict[str, Any], captures: int) -> dict[str, Any]:
    """The provider's endpoint at `url` for captures, and that many one-step redeems on `voucher`."""
    made = await _endpoint_for_captures(world, url)
    for n in range(captures):
        response = await world.hold(voucher, 100_000, order=f"PO-{n}", path="/v1/redemptions")
        assert response.status_code == 201, response.text
    return made


async def _endpoint_for_captures(world: World, url: str) -> dict[str, Any]:
    from tests.support import fresh_key

    made = await world.client.post("/v1/webhook-endpoints", headers=auth(world.provider_key, **fresh_key()),
                                   json={"url": url, "event_types": ["redemption.captured"]})
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


async def test_a_worker_with_a_backlog_of_sends_goes_on_without_waiting_its_interval(
        app: Any, client: httpx.AsyncClient) -> None:
    """A run of deliver-webhooks stops at its batch; the loop had then waited its interval (5 s)
    whatever was left, so a worker sent about 15 a second however large the backlog (an
    independent review). A full batch runs the next at once; a run that finds the backlog gone
    waits as before."""
    from tests.webhooks.receiver import receiver

    world = await build_world(app, client)
    settings = app.state.settings.model_copy(update={"webhook_batch_size": 3})
    database = Database(settings)
    voucher = await world.issue(50_000_000)
    try:
        with receiver() as hooks:
            await _subscribed_to_captures(world, hooks.url, voucher, 10)
            await jobs.run_once(database, "publish-events", app.state.clock())
            worker = jobs.JobWorker(database, app.state.clock, interval=60, only=("deliver-webhooks",))
            stop = asyncio.Event()
            running = asyncio.create_task(worker.run(stop))
            for _ in range(300):  # 3 s, a twentieth of the interval
                if len(hooks.received) >= 10:
                    break
                await asyncio.sleep(0.01)
            stop.set()
            await running
            assert len(hooks.received) == 10, f"{len(hooks.received)} of 10 sent before the interval"
    finally:
        await database.dispose()


async def test_how_far_behind_webhook_delivery_is_is_a_metric(app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    """A backlog of sends showed in no metric: the job's counters say what it did, not what waits.
    After each run the worker reads how long the oldest delivery due has waited."""
    from services.voucher import metrics
    from tests.webhooks.receiver import receiver

    world = await build_world(app, client)
    voucher = await world.issue(50_000_000)
    database = app.state.database
    with receiver() as hooks:
        made = await _subscribed_to_captures(world, hooks.url, voucher, 2)
        await jobs.run_once(database, "publish-events", clock())
        clock.current = clock.current + timedelta(seconds=90)
        assert await webhooks.behind_seconds(database, clock()) == 90.0
        paused = await client.patch(f"/v1/webhook-endpoints/{made['id']}", json={"status": "disabled"},
                                    headers=auth(world.provider_key, **{"If-Match": '"v1"'}))
        assert paused.status_code == 200, paused.text
        assert await webhooks.behind_seconds(database, clock()) == 0.0  # a paused endpoint is not behind
        resumed = await client.patch(f"/v1/webhook-endpoints/{made['id']}", json={"status": "enabled"},
                                     headers=auth(world.provider_key, **{"If-Match": '"v2"'}))
        assert resumed.status_code == 200, resumed.text
        assert await jobs.run_once(database, "deliver-webhooks", clock()) == 2
    assert metrics.WEBHOOKS_BEHIND._value.get() == 0.0  # type: ignore[attr-defined]
    assert "voucher_webhook_delivery_behind_seconds 0.0" in (await client.get("/metrics")).text


async def test_sends_that_are_never_made_do_not_make_the_worker_claim_back_to_back(
        app: Any, client: httpx.AsyncClient, monkeypatch: Any) -> None:
    """A delivery whose signing secret the service cannot open is not sent, and tried again 30 s
    later for as long as its key is missing. Counted as a full batch of work, such sends had the
    loop claim them back to back, without its interval (a review of the change above). Only sends
    a receiver answered count."""
    from sqlalchemy import text

    from services.voucher import secretbox
    from tests.webhooks.receiver import receiver

    world = await build_world(app, client)
    settings = app.state.settings.model_copy(update={"webhook_batch_size": 3})
    database = Database(settings)
    voucher = await world.issue(50_000_000)

    def unopened(*args: Any, **kwargs: Any) -> Any:
        raise secretbox.CannotOpen("the key that sealed it is gone")

    try:
        with receiver() as hooks:
            await _subscribed_to_captures(world, hooks.url, voucher, 3)
            for n in range(3):  # four endpoints of the provider, three events each
                await _endpoint_for_captures(world, f"{hooks.url}/{n}")
            for n in range(3, 6):
                assert (await world.hold(voucher, 100_000, order=f"PO-{n}", path="/v1/redemptions")).status_code == 201
            await jobs.run_once(database, "publish-events", app.state.clock())
            monkeypatch.setattr(webhooks, "_signing_secrets", unopened)
            worker = jobs.JobWorker(database, app.state.clock, interval=60, only=("deliver-webhooks",))
            stop = asyncio.Event()
            running = asyncio.create_task(worker.run(stop))
            await asyncio.sleep(1.0)
            stop.set()
            await running
            assert hooks.received == []
        async with database.unit_of_work(write=False) as session:
            attempts = (await session.execute(text("SELECT count(*) FROM webhook_attempt"))).scalar_one()
        assert attempts == 3, f"{attempts} sends tried in a second; one run of a batch of 3 was due"
    finally:
        await database.dispose()
