"""The application flow under real concurrency (issue 4, DESIGN §3 invariant 4): requests race
through a real server over a socket against the same database, and budget, cap and vouchers
never move twice or past a limit.

Set-up happens in-process (the `client` fixture); the races go to a LiveServer. The live server
runs on the real system clock, so this module's app does too (`clock` is `system_clock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from services.voucher import jobs
from services.voucher.clock import system_clock
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind
from services.voucher.tables import Application, EnterprisePeriodUsage, Voucher
from tests.live_server import LiveServer
from tests.support import assert_problem, auth, create, enterprise_payload, make_key
from tests.world import World, build_world

pytestmark = pytest.mark.timeout(180)
PARALLEL = 60
CONCURRENT_UPDATE = "concurrent_update"

Request = tuple[str, str, dict[str, Any] | None, dict[str, str]]  # method, path, body, headers


@pytest.fixture
def clock():  # the live server runs on the real clock; so does this test's app
    return system_clock


class _Starting:
    """A LiveServer booting in a thread while the test sets up its world in-process."""

    def __init__(self, database_url: str) -> None:
        self.server = LiveServer(database_url)
        self.task = asyncio.ensure_future(asyncio.to_thread(self.server.start))

    async def ready(self) -> LiveServer:
        await self.task
        return self.server


@pytest.fixture
async def live(database_url: str) -> AsyncIterator[_Starting]:
    starting = _Starting(database_url)
    try:
        yield starting
    finally:
        with contextlib.suppress(Exception):
            await starting.task
        starting.server.stop()


# -- helpers ---------------------------------------------------------------------------------------


def _idem(key: str, **extra: str) -> dict[str, str]:
    return auth(key, **{"Idempotency-Key": str(uuid.uuid4())}, **extra)


async def _storm(
    server: LiveServer, requests: list[Request], delays: list[float] | None = None
) -> list[httpx.Response]:
    """Fire every request at once (request i after delays[i] seconds, if given)."""
    limits = httpx.Limits(max_connections=PARALLEL, max_keepalive_connections=PARALLEL)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
        async def one(i: int, method: str, path: str, body: dict[str, Any] | None,
                      headers: dict[str, str]) -> httpx.Response:
            if delays:
                await asyncio.sleep(delays[i])
            return await http.request(method, path, json=body, headers=headers)

        return await asyncio.gather(*(one(i, *request) for i, request in enumerate(requests)))


def _codes(responses: list[httpx.Response]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in responses:
        label = str(r.status_code) if r.status_code < 400 else f"{r.status_code} {r.json().get('code')}"
        out[label] = out.get(label, 0) + 1
    return out


async def _after(delay: float, work: Awaitable[Any]) -> Any:
    await asyncio.sleep(delay)
    return await work


async def _applicant(app: Any, world: World, amount: int) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A new enterprise with its own key and an application under review for `amount`."""
    enterprise = await create(world.client, world.operator, "/v1/enterprises", enterprise_payload())
    key = await make_key(app, "enterprise", enterprise_id=uuid.UUID(enterprise["id"]))
    application = await create(world.client, key, "/v1/applications", {
        "programme_id": world.programme["id"], "requested_amount": amount, "purpose": "model training"})
    assert application["status"] == "under_review", application
    return enterprise, key, application


async def _budget(app: Any, programme_id: str) -> dict[str, int]:
    """The programme's uncommitted and committed budget, straight from the ledger."""
    async with app.state.database.unit_of_work(write=False) as session:
        accounts = await ledger.programme_accounts(session, uuid.UUID(programme_id))
        wanted = [accounts[AccountKind.PROGRAMME_AVAILABLE], accounts[AccountKind.PROGRAMME_COMMITTED]]
        found = await ledger.balances(session, wanted)
    return {"available": found[wanted[0]], "committed": found[wanted[1]]}


async def _usage(app: Any, programme_id: str, enterprise_id: str) -> tuple[int, int]:
    """(granted, committed) summed over the enterprise's cap periods in the programme."""
    async with app.state.database.unit_of_work(write=False) as session:
        rows = (await session.execute(select(EnterprisePeriodUsage).where(
            EnterprisePeriodUsage.programme_id == uuid.UUID(programme_id),
            EnterprisePeriodUsage.enterprise_id == uuid.UUID(enterprise_id),
        ))).scalars().all()
    return sum(r.granted for r in rows), sum(r.committed for r in rows)


async def _read(http: httpx.AsyncClient, path: str, key: str) -> Any:
    response = await http.get(path, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


async def _clean_books(http: httpx.AsyncClient, auditor: str) -> None:
    recon = await _read(http, "/v1/ledger/reconciliation", auditor)
    assert recon["commitment_differences"] == [], recon
    assert recon["is_clean"], recon


async def _vouchers_of(http: httpx.AsyncClient, operator: str, enterprise_id: str) -> list[dict[str, Any]]:
    page = await _read(http, f"/v1/vouchers?enterprise_id={enterprise_id}&limit=100", operator)
    assert page["next_cursor"] is None
    return page["items"]  # type: ignore[no-any-return]


async def _make_due(app: Any, application_id: str) -> datetime:
    """Move the application's publicity end into the past. This stands in for time passing:
    the live server runs on the real clock, so the 公示 period cannot be waited out or advanced
    with a FrozenClock; a direct UPDATE is the only way to make the application due now."""
    ends = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    async with app.state.database.unit_of_work() as session:
        changed = await session.execute(
            update(Application).where(Application.id == uuid.UUID(application_id)).values(publicity_ends_at=ends))
        assert changed.rowcount == 1
    return ends


async def _in_publicity(app: Any, world: World, amount: int) -> tuple[dict[str, Any], str, dict[str, Any]]:
    enterprise, key, application = await _applicant(app, world, amount)
    approved = await world.client.post(f"/v1/applications/{application['id']}/approve", json={"amount": amount},
                                       headers=_idem(world.operator))
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "publicity"
    return enterprise, key, approved.json()


async def _assert_issued_once(app: Any, http: httpx.AsyncClient, world: World, enterprise: dict[str, Any],
                              application: dict[str, Any], amount: int, ends: datetime) -> dict[str, Any]:
    """The application is issued with exactly one voucher of `amount`, valid from `ends`, its
    commitment turned into a grant; its history has one step into `issued`."""
    after = await _read(http, f"/v1/applications/{application['id']}", world.operator)
    assert after["status"] == "issued", after
    vouchers = await _vouchers_of(http, world.operator, enterprise["id"])
    assert len(vouchers) == 1, vouchers
    voucher = vouchers[0]
    assert voucher["id"] == after["voucher_id"]
    assert voucher["reference"] == f"application {application['id']}"
    assert voucher["face_value"] == amount
    assert voucher["balances"] == {"available": amount, "held": 0, "used": 0}
    assert datetime.fromisoformat(voucher["valid_from"]) == ends
    async with app.state.database.unit_of_work(write=False) as session:
        count = (await session.execute(select(func.count()).select_from(Voucher).where(
            Voucher.application_id == uuid.UUID(application["id"])))).scalar_one()
    assert count == 1
    history = await _read(http, f"/v1/applications/{application['id']}/history", world.operator)
    assert [step["to_status"] for step in history] == ["submitted", "under_review", "approved", "publicity", "issued"]
    assert await _usage(app, world.programme["id"], enterprise["id"]) == (amount, 0)
    assert (await _budget(app, world.programme["id"]))["committed"] == 0
    return voucher  # type: ignore[no-any-return]


# -- 1. approvals racing for the last budget ------------------------------------------------------------


@pytest.mark.parametrize(("budget", "n", "winners"), [(100_000_000, 20, 1), (250_000_000, 10, 4)])
async def test_parallel_approvals_never_overcommit_the_budget(
    app, client: httpx.AsyncClient, live: _Starting, budget: int, n: int, winners: int
) -> None:
    """n approvals of 60,000,000 each race for a budget with room for `winners` of them."""
    amount = 60_000_000
    world = await build_world(app, client, budget_total=budget, enterprise_cap=amount, max_per_voucher=amount)
    applicants = [await _applicant(app, world, amount) for _ in range(n)]
    requests: list[Request] = [("POST", f"/v1/applications/{a['id']}/approve", {"amount": amount},
                                _idem(world.operator)) for _, _, a in applicants]
    server = await live.ready()
    responses = await _storm(server, requests)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        await _clean_books(http, world.auditor)
        after = {a["id"]: await _read(http, f"/v1/applications/{a['id']}", world.operator)
                 for _, _, a in applicants}

    assert all(r.status_code in (200, 409) for r in responses), _codes(responses)
    ok = [r.json() for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 409]
    assert {r.json()["code"] for r in refused} <= {"budget_exhausted", CONCURRENT_UPDATE}, _codes(responses)
    approved = sum(a["approved_amount"] for a in ok)
    assert approved <= budget
    assert 1 <= len(ok) <= winners, _codes(responses)
    if not any(r.json()["code"] == CONCURRENT_UPDATE for r in refused):
        assert len(ok) == winners, _codes(responses)  # lock waits, not lost races: the budget is used up
    for r in refused:
        if r.json()["code"] == "budget_exhausted":
            body = assert_problem(r, 409, "budget_exhausted")
            assert body["remaining"] == budget - winners * amount
    assert all(a["status"] == "publicity" and a["approved_amount"] == amount for a in ok)
    assert await _budget(app, world.programme["id"]) == {"available": budget - approved, "committed": approved}
    # A refused approval changed nothing: still under review, nothing committed for that enterprise.
    won = {a["id"] for a in ok}
    for enterprise, _, application in applicants:
        state = after[application["id"]]
        if application["id"] in won:
            assert state["status"] == "publicity" and state["approved_amount"] == amount
            assert await _usage(app, world.programme["id"], enterprise["id"]) == (0, amount)
        else:
            assert state["status"] == "under_review" and state["approved_amount"] is None, state
            assert (await _usage(app, world.programme["id"], enterprise["id"]))[1] == 0


# -- 2. one enterprise racing for its cap --------------------------------------------------------------


async def test_parallel_submissions_by_one_enterprise_open_one_application(
    app, client: httpx.AsyncClient, live: _Starting
) -> None:
    world = await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=60_000_000,
                              max_per_voucher=60_000_000)
    body = {"programme_id": world.programme["id"], "requested_amount": 30_000_000, "purpose": "inference"}
    requests: list[Request] = [("POST", "/v1/applications", body, _idem(world.enterprise_key)) for _ in range(20)]
    server = await live.ready()
    responses = await _storm(server, requests)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        listed = await _read(http, f"/v1/applications?enterprise_id={world.enterprise['id']}", world.operator)
        await _clean_books(http, world.auditor)

    created = [r.json() for r in responses if r.status_code == 201]
    assert len(created) == 1, _codes(responses)
    winner = created[0]
    assert winner["status"] == "under_review"
    refused = [r for r in responses if r.status_code != 201]
    assert len(refused) == 19
    for r in refused:
        body_ = assert_problem(r, 409, "application_already_open")
        assert body_["application_id"] == winner["id"]
    assert [a["id"] for a in listed["items"]] == [winner["id"]]
    assert await _usage(app, world.programme["id"], world.enterprise["id"]) == (0, 0)


async def test_approval_racing_with_direct_issuance_keeps_within_the_cap(
    app, client: httpx.AsyncClient, live: _Starting
) -> None:
    """Per enterprise: one approval of 30,000,000 races six direct issuances of 10,000,000 for a
    60,000,000 cap. Whatever the order, granted + committed never pass the cap (and, with lock
    waits rather than lost races, fill it exactly)."""
    cap, approve, grant, budget = 60_000_000, 30_000_000, 10_000_000, 1_000_000_000
    world = await build_world(app, client, budget_total=budget, enterprise_cap=cap, max_per_voucher=cap)
    applicants = [await _applicant(app, world, approve) for _ in range(3)]
    requests: list[Request] = []
    for i, (enterprise, _, application) in enumerate(applicants):
        issue = {"programme_id": world.programme["id"], "enterprise_id": enterprise["id"], "face_value": grant}
        batch: list[Request] = [("POST", "/v1/vouchers", issue, _idem(world.operator)) for _ in range(6)]
        batch.insert(3 * i,  # the approval goes first, in the middle or last
                     ("POST", f"/v1/applications/{application['id']}/approve", {"amount": approve},
                      _idem(world.operator)))
        requests += batch
    server = await live.ready()
    responses = await _storm(server, requests)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        outcome = {}
        for enterprise, _, application in applicants:
            outcome[enterprise["id"]] = (
                await _vouchers_of(http, world.operator, enterprise["id"]),
                await _read(http, f"/v1/applications/{application['id']}", world.operator),
            )
        await _clean_books(http, world.auditor)

    assert all(r.status_code in (200, 201, 409) for r in responses), _codes(responses)
    refused = {r.json()["code"] for r in responses if r.status_code == 409}
    assert refused <= {"enterprise_cap_exceeded", CONCURRENT_UPDATE}, _codes(responses)
    lost_races = CONCURRENT_UPDATE in refused
    total_committed = 0
    for enterprise, _, application in applicants:
        vouchers, after = outcome[enterprise["id"]]
        issued = sum(v["face_value"] for v in vouchers)
        assert all(v["face_value"] == grant and v["reference"] is None for v in vouchers)
        approved = after["approved_amount"] or 0
        assert issued + approved <= cap, (issued, approved)
        if not lost_races:
            assert issued + approved == cap, (issued, approved)
        assert after["status"] == ("publicity" if approved else "under_review"), after
        assert approved in (0, approve)
        assert await _usage(app, world.programme["id"], enterprise["id"]) == (issued, approved)
        total_committed += approved
    assert (await _budget(app, world.programme["id"]))["committed"] == total_committed
    approvals = [r for r in responses if "/approve" in str(r.request.url)]
    for r in approvals:
        if r.status_code == 409 and r.json()["code"] == "enterprise_cap_exceeded":
            body = assert_problem(r, 409, "enterprise_cap_exceeded")
            assert body["remaining"] < approve and body["cap"] == cap


# -- 3. publicity end: the job and reads race --------------------------------------------------------------


async def test_publicity_end_issues_one_voucher_when_the_job_and_reads_race(
    app, client: httpx.AsyncClient, live: _Starting
) -> None:
    amount = 40_000_000
    world = await build_world(app, client, budget_total=100_000_000, enterprise_cap=amount,
                              max_per_voucher=amount, publicity_days=5)
    enterprise, key, application = await _in_publicity(app, world, amount)
    ends = await _make_due(app, application["id"])
    database = app.state.database
    path = f"/v1/applications/{application['id']}"
    requests: list[Request] = [("GET", path, None, auth(key if i % 2 else world.operator)) for i in range(20)]
    server = await live.ready()
    warm: list[Request] = [("GET", f"/v1/programmes/{world.programme['id']}", None, auth(world.operator))] * 20
    warmed = await _storm(server, warm)  # connections and pools ready; how long a read takes now
    assert {r.status_code for r in warmed} == {200}
    latency = sorted(r.elapsed.total_seconds() for r in warmed)[len(warmed) // 2]
    now = datetime.now(UTC)
    # The reads all go out at once; the job runs at points through the second half of a read's
    # round trip (twice at the same moment). Sometimes a read issues, sometimes the job: either
    # way the others meet it at the application's row lock, or find nothing left to do.
    results = await asyncio.gather(
        _storm(server, requests),
        *(_after(f * latency, jobs.run_once(database, "end-publicity", now)) for f in (0.5, 0.7, 0.8, 0.8, 0.9, 1.1)),
    )
    responses: list[httpx.Response] = results[0]
    job_counts: list[int] = list(results[1:])
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        voucher = await _assert_issued_once(app, http, world, enterprise, application, amount, ends)
        await _clean_books(http, world.auditor)

    assert sum(job_counts) in (0, 1), job_counts  # the job issued it, or a read did first
    assert all(c in (0, 1) for c in job_counts)
    ok = [r for r in responses if r.status_code == 200]
    others = [r for r in responses if r.status_code != 200]
    assert all(r.json()["status"] == "issued" for r in ok), [r.json()["status"] for r in ok]
    assert {r.json()["voucher_id"] for r in ok} <= {voucher["id"]}
    for r in others:  # a read that lost a lock race may say so; nothing else may fail
        assert_problem(r, 409, CONCURRENT_UPDATE)
    assert ok, _codes(responses)
    # Nothing is due any more: another run of the job issues nothing.
    assert await jobs.run_once(database, "end-publicity", datetime.now(UTC)) == 0


# -- 4. objections racing with the publicity end ------------------------------------------------------------


async def test_objections_racing_with_the_publicity_end_come_too_late(
    app, client: httpx.AsyncClient, live: _Starting
) -> None:
    """Two due applications, each with objections and reads racing: for the first the
    objections are sent first and the reads trail, for the second the other way round. Either
    way no objection wins (it is due), and exactly one voucher is issued."""
    amount = 40_000_000
    world = await build_world(app, client, budget_total=100_000_000, enterprise_cap=amount,
                              max_per_voucher=amount, publicity_days=5)
    cases = [await _in_publicity(app, world, amount) for _ in range(2)]
    ends = [await _make_due(app, application["id"]) for _, _, application in cases]
    objection = {"statement": "the contract was signed after the deadline", "objector": "a competitor"}
    requests: list[Request] = []
    delays: list[float] = []
    for n, (_, key, application) in enumerate(cases):
        base = f"/v1/applications/{application['id']}"
        for i in range(12):
            is_objection = i % 3 == 0
            if is_objection:
                requests.append(("POST", f"{base}/objections", objection, _idem(world.operator)))
            else:
                requests.append(("GET", base, None, auth(key if i % 2 else world.operator)))
            first = is_objection == (n == 0)  # case 0: objections lead; case 1: reads lead
            delays.append(0.002 * i if first else 0.3 + 0.02 * i)
    server = await live.ready()
    warm = [("GET", f"/v1/programmes/{world.programme['id']}", None, auth(world.operator))] * 12
    assert {r.status_code for r in await _storm(server, warm)} == {200}  # connections and pools ready
    responses = await _storm(server, requests, delays)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for (enterprise, _, application), end in zip(cases, ends, strict=True):
            await _assert_issued_once(app, http, world, enterprise, application, amount, end)
        await _clean_books(http, world.auditor)

    for _, _, application in cases:
        mine = [r for r in responses if application["id"] in str(r.request.url)]
        objections = [r for r in mine if r.request.method == "POST"]
        reads = [r for r in mine if r.request.method == "GET"]
        assert len(objections) == 4 and len(reads) == 8
        # It is due, so no objection can win: each comes too late, naming the issued state.
        for r in objections:
            if r.status_code == 409 and r.json()["code"] == CONCURRENT_UPDATE:
                continue
            body = assert_problem(r, 409, "invalid_transition")
            assert body["current_status"] == "issued", body
            assert body["allowed"] == []
        for r in reads:
            if r.status_code == 200:
                assert r.json()["status"] == "issued", r.json()
            else:
                assert_problem(r, 409, CONCURRENT_UPDATE)
        assert any(r.status_code == 200 for r in reads), _codes(reads)
    assert (await _budget(app, world.programme["id"]))["available"] == 100_000_000 - 2 * amount


# -- 5. withdrawal racing with approval ----------------------------------------------------------------------


async def test_withdrawal_racing_with_approval_one_wins(app, client: httpx.AsyncClient, live: _Starting) -> None:
    amount, n = 20_000_000, 6
    world = await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=amount,
                              max_per_voucher=amount, publicity_days=5)
    applicants = [await _applicant(app, world, amount) for _ in range(n)]
    requests: list[Request] = []
    for i, (_, key, application) in enumerate(applicants):
        approve: Request = ("POST", f"/v1/applications/{application['id']}/approve", {"amount": amount},
                            _idem(world.operator))
        withdraw: Request = ("POST", f"/v1/applications/{application['id']}/withdraw",
                             {"reason": "we found other funding"}, _idem(key))
        requests += [approve, withdraw] if i % 2 else [withdraw, approve]
    server = await live.ready()
    responses = await _storm(server, requests)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        after = {a["id"]: await _read(http, f"/v1/applications/{a['id']}", world.operator)
                 for _, _, a in applicants}
        histories = {a["id"]: await _read(http, f"/v1/applications/{a['id']}/history", world.operator)
                     for _, _, a in applicants}
        await _clean_books(http, world.auditor)

    by_app: dict[str, dict[str, httpx.Response]] = {}
    for r in responses:
        application_id, action = str(r.request.url.path).split("/")[-2:]
        by_app.setdefault(application_id, {})[action] = r
    committed = 0
    for enterprise, _, application in applicants:
        pair = by_app[application["id"]]
        approve_r, withdraw_r = pair["approve"], pair["withdraw"]
        winners = [action for action, r in pair.items() if r.status_code == 200]
        assert len(winners) == 1, {a: (r.status_code, r.text) for a, r in pair.items()}
        state = after[application["id"]]
        steps = [s["to_status"] for s in histories[application["id"]]]
        if winners == ["approve"]:
            body = assert_problem(withdraw_r, 409, "invalid_transition")
            assert body["current_status"] == "publicity"
            assert state["status"] == "publicity" and state["approved_amount"] == amount
            assert steps == ["submitted", "under_review", "approved", "publicity"]
            assert await _usage(app, world.programme["id"], enterprise["id"]) == (0, amount)
            committed += amount
        else:
            body = assert_problem(approve_r, 409, "invalid_transition")
            assert body["current_status"] == "withdrawn"
            assert state["status"] == "withdrawn" and state["approved_amount"] is None
            assert steps == ["submitted", "under_review", "withdrawn"]
            assert (await _usage(app, world.programme["id"], enterprise["id"]))[1] == 0
    assert await _budget(app, world.programme["id"]) == {"available": 1_000_000_000 - committed,
                                                          "committed": committed}
