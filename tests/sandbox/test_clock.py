"""The sandbox clock (docs/sandbox.md) through the app: who may read and move it, that it
only moves forward, that every rule and answer follows it, and that it is off by default."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.voucher.settings import Settings
from tests.support import assert_problem, auth, fresh_key
from tests.world import World, build_world

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, environment="test", log_level="WARNING", sandbox=True)


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, budget_total=100_000_000, enterprise_cap=50_000_000,
                             max_per_voucher=50_000_000)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def move(world: World, key: str | None = None, idem: str | None = None, **body: str) -> httpx.Response:
    return await world.client.post("/v1/sandbox/clock", json=body,
                                   headers=auth(key or world.operator, **{"Idempotency-Key": idem or fresh_key()["Idempotency-Key"]}))


async def test_the_clock_reads_real_time_until_moved_and_every_answer_says_it(world: World, clock) -> None:
    read = await world.client.get("/v1/sandbox/clock", headers=auth(world.provider_key))
    assert read.status_code == 200, read.text
    state = read.json()
    assert state["sandbox"] is True and _at(state["now"]) == T0 and state["offset_seconds"] == 0
    assert state["moved_at"] is None
    assert _at(read.headers["voucher-sandbox-clock"]) == T0
    me = (await world.client.get("/v1/me", headers=auth(world.enterprise_key))).json()
    assert me["sandbox"] is True and _at(me["now"]) == T0
    # Errors carry it too.
    missing = await world.client.get("/v1/nothing")
    assert _at(missing.headers["voucher-sandbox-clock"]) == T0


async def test_moving_forward_by_a_duration_and_to_a_time(world: World, clock) -> None:
    moved = await move(world, advance="P2DT3H")
    assert moved.status_code == 200, moved.text
    assert _at(moved.json()["now"]) == T0 + timedelta(days=2, hours=3)
    assert moved.json()["offset_seconds"] == (2 * 24 + 3) * 3600
    clock.advance(minutes=10)  # real time goes on; the offset stays
    state = (await world.client.get("/v1/sandbox/clock", headers=auth(world.operator))).json()
    assert _at(state["now"]) == T0 + timedelta(days=2, hours=3, minutes=10)
    assert _at(state["real_time"]) == T0 + timedelta(minutes=10)
    to = await move(world, to="2026-04-01T00:00:00+08:00")
    assert to.status_code == 200, to.text
    assert _at(to.json()["now"]) == datetime(2026, 3, 31, 16, 0, tzinfo=UTC)
    me = (await world.client.get("/v1/me", headers=auth(world.provider_key))).json()
    assert _at(me["now"]) == datetime(2026, 3, 31, 16, 0, tzinfo=UTC)


async def test_never_backwards(world: World) -> None:
    assert (await move(world, advance="P1D")).status_code == 200
    problem = assert_problem(await move(world, to="2026-03-02T12:00:00Z"), 409, "sandbox_clock_backwards")
    assert _at(problem["now"]) == T0 + timedelta(days=1)
    state = (await world.client.get("/v1/sandbox/clock", headers=auth(world.operator))).json()
    assert _at(state["now"]) == T0 + timedelta(days=1)


async def test_the_clock_stops_at_2200(world: World) -> None:
    """Ten years at a time the clock had reached year 9991, where every request with an
    Idempotency-Key failed with a 500, for good (an independent review): it goes no further than
    2200-01-01, by any of the three kinds of move, and a refused move moves nothing."""
    for year in (*range(2034, 2200, 9), 2199):  # at last 2200-01-01 01:00 in Beijing: its next year is 2201
        moved = await move(world, to=f"{year}-12-31T17:00:00Z")
        assert moved.status_code == 200, moved.text
    for body in ({"advance": "P2D"}, {"to": "2200-01-01T00:00:01Z"}, {"advance_to": "next_year"}):
        problem = assert_problem(await move(world, **body), 422, "validation_failed")
        assert "2200" in problem["detail"], problem
    state = (await world.client.get("/v1/sandbox/clock", headers=auth(world.operator))).json()
    assert _at(state["now"]).date().isoformat() == "2199-12-31"
    assert (await move(world, to="2200-01-01T00:00:00Z")).status_code == 200
    issued = await world.client.post("/v1/vouchers", json={"programme_id": world.programme["id"],
                                                           "enterprise_id": world.enterprise["id"],
                                                           "face_value": 100},
                                     headers=auth(world.operator, **fresh_key()))
    assert issued.status_code < 500, issued.text


@pytest.mark.parametrize("body", [
    {"advance": "P1M"}, {"advance": "P1Y"}, {"advance": "-P1D"}, {"advance": "PT0S"}, {"advance": 3600},
    {"advance": "P3661D"}, {"advance": "tomorrow"}, {"to": "2026-03-05T00:00:00"}, {},
    {"advance": "P1D", "to": "2027-01-01T00:00:00Z"}, {"advance": "P1D", "speed": 2},
])
async def test_malformed_moves_are_refused_and_move_nothing(world: World, body: dict) -> None:
    refused = await world.client.post("/v1/sandbox/clock", json=body, headers=auth(world.operator, **fresh_key()))
    assert_problem(refused, 422, "validation_failed")
    state = (await world.client.get("/v1/sandbox/clock", headers=auth(world.operator))).json()
    assert state["offset_seconds"] == 0


async def test_only_the_programme_office_moves_it_and_a_retry_moves_it_once(world: World) -> None:
    for key in (world.provider_key, world.enterprise_key, world.auditor):
        assert_problem(await move(world, key=key, advance="P1D"), 403, "insufficient_scope")
    no_key = await world.client.post("/v1/sandbox/clock", json={"advance": "P1D"}, headers=auth(world.operator))
    assert no_key.status_code == 428, no_key.text
    first = await move(world, idem="move-1", advance="P1D")
    again = await move(world, idem="move-1", advance="P1D")
    assert again.headers.get("idempotent-replayed") == "true"
    assert first.json()["now"] == again.json()["now"]
    state = (await world.client.get("/v1/sandbox/clock", headers=auth(world.operator))).json()
    assert _at(state["now"]) == T0 + timedelta(days=1)


async def test_each_move_is_an_audit_event_at_the_clock_s_time(world: World) -> None:
    assert (await move(world, advance="PT5H")).status_code == 200
    events = (await world.client.get("/v1/audit/events", params={"action": "sandbox.clock_moved"},
                                     headers=auth(world.auditor))).json()["items"]
    assert len(events) == 1, events
    event = events[0]
    assert _at(event["occurred_at"]) == T0
    assert _at(event["before"]["now"]) == T0 and _at(event["after"]["now"]) == T0 + timedelta(hours=5)
    assert event["actor_role"] == "operator"


async def test_a_move_runs_what_became_due_and_every_read_counts_the_hold_released(world: World) -> None:
    voucher = await world.issue(10_000_000)
    held = await world.hold(voucher, 1_000_000, order="PO-1")
    assert held.status_code == 201, held.text
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 9_700_000, "held": 300_000, "used": 0}
    assert (await move(world, advance="PT31M")).status_code == 200
    read = await world.voucher(voucher["id"])
    assert read["balances"] == {"available": 10_000_000, "held": 0, "used": 0}
    redemption = (await world.client.get(f"/v1/redemptions/{held.json()['id']}", headers=auth(world.provider_key))).json()
    assert redemption["status"] == "voided" and redemption["void_reason"] == "expired"
    assert redemption["voided_at"] == held.json()["hold_expires_at"]
    # The job ran with the move: the release is posted, at the sandbox's time.
    postings = (await world.client.get(f"/v1/vouchers/{voucher['id']}/history",
                                       headers=auth(world.operator))).json()["items"]
    assert any(p["amount"] == 300_000 for p in postings), postings
    assert (await world.reconciliation())["is_clean"]


async def test_a_move_past_publicity_and_validity_expires_the_voucher_it_issues(app, world: World) -> None:
    """The move ended a publicity period and issued its voucher with its validity already over;
    voucher expiry had run before publicity's end, so that voucher's expiry was left unposted,
    its unused value off the pool until a worker round (none with `voucher serve` alone; an
    independent review of the jobs, December 2026). Publicity's end now runs first."""
    from sqlalchemy import select

    from services.voucher.tables import Voucher

    world_short = await build_world(app, world.client, publicity_days=5, voucher_validity_days=10)
    application = (await world.post("/v1/applications", {
        "programme_id": world_short.programme["id"], "requested_amount": 1_000_000, "purpose": "training"},
        key=world_short.enterprise_key)).json()
    approved = await world.post(f"/v1/applications/{application['id']}/approve", {"amount": 1_000_000},
                                key=world_short.operator)
    assert approved.status_code == 200, approved.text
    moved = await move(world, advance="P30D")
    assert moved.status_code == 200, moved.text
    async with app.state.database.unit_of_work(write=False) as session:
        voucher = (await session.execute(select(Voucher).where(
            Voucher.application_id == uuid.UUID(application["id"])))).scalar_one()
    assert voucher.status == "expired" and voucher.expiry_posted_at is not None
    assert (await world_short.reconciliation())["is_clean"]


async def test_a_move_runs_a_per_item_job_batch_after_batch(
        app, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A move ran each job once, so only its first batch of due items (500) was done before the
    answer; a move of a year over a large programme left the rest to a worker that `voucher
    serve` alone does not run (an independent review, December 2026). Batches of 2 here."""
    from sqlalchemy import func, select

    from services.voucher import jobs
    from services.voucher.tables import Voucher

    monkeypatch.setattr(jobs, "ITEM_BATCH", 2)
    for _ in range(5):
        await world.issue(1_000_000)
    moved = await move(world, advance="P400D")
    assert moved.status_code == 200, moved.text
    async with app.state.database.unit_of_work(write=False) as session:
        unposted = (await session.execute(select(func.count()).select_from(Voucher).where(
            Voucher.expiry_posted_at.is_(None)))).scalar_one()
    assert unposted == 0
    assert (await world.reconciliation())["is_clean"]


async def test_a_move_warns_of_every_expiry_batch_after_batch(
        app, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The expiry warnings took 500 vouchers a run, once an hour, and a move once: vouchers
    sharing a year-end expiry were warned late, or expired unwarned (an independent review,
    December 2026). A move, and the worker's loop, take batch after batch. Batches of 2 here."""
    from datetime import datetime, timedelta

    from sqlalchemy import func, select

    from services.voucher import jobs
    from services.voucher.tables import OutboxEvent

    monkeypatch.setattr(jobs, "ITEM_BATCH", 2)
    issued = [await world.issue(1_000_000) for _ in range(5)]
    expires = min(datetime.fromisoformat(v["expires_at"].replace("Z", "+00:00")) for v in issued)
    moved = await move(world, to=(expires - timedelta(days=2)).isoformat().replace("+00:00", "Z"))
    assert moved.status_code == 200, moved.text
    async with app.state.database.unit_of_work(write=False) as session:
        warned = (await session.execute(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.type == "voucher.expiring"))).scalar_one()
    assert warned == 5
    assert jobs.left_work(app.state.database, "announce-expiring", 2)  # a whole batch: the worker goes on
    assert not jobs.left_work(app.state.database, "announce-expiring", 1)


async def test_a_settlement_for_a_period_the_move_closed(world: World) -> None:
    voucher = await world.issue(10_000_000)
    redeemed = await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")
    assert redeemed.status_code == 201, redeemed.text
    body = {"provider_id": world.provider["id"], "programme_id": world.programme["id"],
            "period_start": "2026-03-02", "period_end": "2026-03-02"}
    assert_problem(await world.post("/v1/settlements", body, key=world.operator), 422, "validation_failed")
    assert (await move(world, advance="P1D")).status_code == 200
    created = await world.post("/v1/settlements", body, key=world.operator)
    assert created.status_code == 201, created.text
    assert created.json()["total"] == 300_000


async def test_the_cap_year_turns_at_midnight_in_shanghai_not_utc(app, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client, budget_total=100_000_000, enterprise_cap=1_000_000,
                              max_per_voucher=1_000_000)
    assert (await move(world, to="2026-12-31T15:59:00Z")).status_code == 200
    assert (await world.issue(1_000_000))["face_value"] == 1_000_000
    again = await world.client.post("/v1/vouchers", json={
        "programme_id": world.programme["id"], "enterprise_id": world.enterprise["id"], "face_value": 1_000_000},
        headers=auth(world.operator, **fresh_key()))
    assert_problem(again, 409, "enterprise_cap_exceeded")
    assert (await move(world, to="2026-12-31T16:00:00Z")).status_code == 200  # 2027-01-01 00:00 in Beijing
    issued = await world.issue(1_000_000)
    assert issued["period_key"] == "2027"


async def test_to_the_start_of_the_next_day_month_and_year_in_shanghai(world: World) -> None:
    # T0 is 2026-03-02 09:00 in Beijing.
    day = await move(world, advance_to="next_day")
    assert _at(day.json()["now"]) == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # 03-03 00:00 +08:00
    month = await move(world, advance_to="next_month")
    assert _at(month.json()["now"]) == datetime(2026, 3, 31, 16, 0, tzinfo=UTC)
    year = await move(world, advance_to="next_year")
    assert _at(year.json()["now"]) == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert_problem(await move(world, advance_to="next_week"), 422, "validation_failed")
    far = await move(world, to="2040-01-01T00:00:00Z")
    assert_problem(far, 422, "validation_failed")


async def test_a_database_lost_while_reading_the_clock_is_a_503(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.voucher.sandbox import service as sandbox
    from tests.http.test_database_unavailable import LOST

    async def lost(*_: object, **__: object) -> None:
        raise LOST

    monkeypatch.setattr(sandbox, "refresh", lost)
    answer = await world.client.get("/v1/me", headers=auth(world.operator))
    assert_problem(answer, 503, "database_unavailable")


async def test_a_retry_after_a_long_move_moves_nothing(world: World) -> None:
    """The move's answer is kept for the retention counted from the time it moved to: the purge
    its own move runs does not take it, and a retry a hundred days on replays it."""
    first = await move(world, idem="long-move", advance="P100D")
    again = await move(world, idem="long-move", advance="P100D")
    assert again.headers.get("idempotent-replayed") == "true", again.text
    state = (await world.client.get("/v1/sandbox/clock", headers=auth(world.operator))).json()
    assert state["now"] == first.json()["now"] and _at(state["now"]) == T0 + timedelta(days=100)


async def test_an_expired_hold_released_by_a_revocation_reads_expired(world: World, clock) -> None:
    voucher = await world.issue(10_000_000)
    held = (await world.hold(voucher, 1_000_000, order="PO-1")).json()
    listed = await world.client.get("/v1/redemptions", params={"status": "held"}, headers=auth(world.provider_key))
    assert [r["id"] for r in listed.json()["items"]] == [held["id"]]
    # Real time (the sandbox clock's base) passes, without the job: the release is still unposted.
    clock.advance(minutes=31)
    for status, ids in (("held", []), ("voided", [held["id"]])):
        listed = await world.client.get("/v1/redemptions", params={"status": status}, headers=auth(world.provider_key))
        assert [r["id"] for r in listed.json()["items"]] == ids, status
    revoked = await world.client.post(f"/v1/vouchers/{voucher['id']}/revoke", json={"reason": "fraud"},
                                      headers=auth(world.operator, **fresh_key()))
    assert revoked.status_code == 200, revoked.text
    read = (await world.client.get(f"/v1/redemptions/{held['id']}", headers=auth(world.provider_key))).json()
    assert (read["void_reason"], read["voided_at"]) == ("expired", held["hold_expires_at"])


async def test_voiding_an_expired_hold_answers_what_later_reads_say(world: World, clock) -> None:
    voucher = await world.issue(10_000_000)
    held = (await world.hold(voucher, 1_000_000, order="PO-1")).json()
    clock.advance(minutes=45)
    voided = await world.post(f"/v1/redemptions/{held['id']}/void", {})
    assert voided.status_code == 200, voided.text
    read = (await world.client.get(f"/v1/redemptions/{held['id']}", headers=auth(world.provider_key))).json()
    assert voided.json()["voided_at"] == read["voided_at"] == held["hold_expires_at"]
    assert voided.json()["void_reason"] == read["void_reason"] == "expired"
