"""Point-in-time balances (auditor toolkit): an account's balance as of an instant is the sum
of its postings made at or before it — for materialised and unmaterialised accounts alike — and
a programme's trial balance lists every account that existed then with that balance, totalling
zero per unit. Checked at each step of a scripted history, moving the app's clock between
operations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind, transfer
from services.voucher.tables import LedgerAccount, LedgerPosting
from tests.support import assert_problem, auth, create, programme_payload
from tests.world import World, build_world

A, P = LedgerAccount.__table__, LedgerPosting.__table__
T0 = datetime(2026, 2, 20, 2, 0, tzinfo=UTC)
STEP = {"opened": T0, "issued": T0 + timedelta(hours=1), "held": T0 + timedelta(hours=2),
        "captured": T0 + timedelta(hours=2, minutes=10), "refunded": T0 + timedelta(hours=3)}
FACE, SPEND = 5_000_000, 1_000_000  # a 30 % rate holds 300,000 of the voucher


def z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def books(app: Any, programme_id: str) -> dict[uuid.UUID, int]:
    """Each account of the programme that exists now, with the sum of its postings."""
    async with app.state.database.unit_of_work(write=False) as session:
        accounts = (await session.execute(select(A.c.id).where(A.c.programme_id == uuid.UUID(programme_id)))).scalars()
        sums = dict((await session.execute(select(P.c.account_id, func.sum(P.c.amount)).group_by(P.c.account_id))).all())
        return {a: int(sums.get(a, 0)) for a in accounts}


@pytest.fixture
async def scripted(app, client: httpx.AsyncClient, clock) -> tuple[World, dict[str, Any], dict[str, dict]]:
    """The world, its voucher and the programme's books right after each step."""
    clock.current = STEP["opened"]
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000})
    seen = {"opened": await books(app, world.programme["id"])}
    clock.current = STEP["issued"]
    voucher = await world.issue(FACE)
    seen["issued"] = await books(app, world.programme["id"])
    clock.current = STEP["held"]
    held = await world.hold(voucher, SPEND, order="PO-1")
    assert held.status_code == 201, held.text
    seen["held"] = await books(app, world.programme["id"])
    clock.current = STEP["captured"]
    captured = await world.post(f"/v1/redemptions/{held.json()['id']}/capture", {"amount": 200_000})
    assert captured.status_code == 200, captured.text
    seen["captured"] = await books(app, world.programme["id"])
    clock.current = STEP["refunded"]
    refunded = await world.post(f"/v1/redemptions/{held.json()['id']}/refunds", {"amount": 50_000, "reason": "x"})
    assert refunded.status_code == 201, refunded.text
    seen["refunded"] = await books(app, world.programme["id"])
    clock.current = STEP["refunded"] + timedelta(days=1)
    return world, voucher, seen


async def balance(client: httpx.AsyncClient, key: str, account_id: Any, as_of: datetime | None) -> dict[str, Any]:
    params = {} if as_of is None else {"as_of": z(as_of)}
    response = await client.get(f"/v1/ledger/accounts/{account_id}/balance", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def trial(client: httpx.AsyncClient, key: str, programme_id: str, as_of: datetime | None) -> dict[str, Any]:
    params = {} if as_of is None else {"as_of": z(as_of)}
    response = await client.get(f"/v1/programmes/{programme_id}/trial-balance", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_voucher_balances_at_each_step(client: httpx.AsyncClient, scripted) -> None:
    world, voucher, _ = scripted
    expected = {  # available, held, used
        "issued": (FACE, 0, 0),
        "held": (FACE - 300_000, 300_000, 0),
        "captured": (FACE - 200_000, 0, 200_000),  # the uncaptured 100,000 went back
        "refunded": (FACE - 150_000, 0, 150_000),
    }
    kinds = ("available", "held", "used")
    accounts = {kind: await _voucher_account(client, world, voucher, kind) for kind in kinds}
    for step, amounts in expected.items():
        for kind, amount in zip(kinds, amounts, strict=True):
            found = await balance(client, world.auditor, accounts[kind], STEP[step])
            assert found["balance"] == amount, (step, kind, found)
            assert found["kind"] == f"voucher_{kind}" and found["as_of"] == z(STEP[step])
    before = await balance(client, world.auditor, accounts["available"], STEP["issued"] - timedelta(microseconds=1))
    assert (before["balance"], before["postings"]) == (0, 0)


async def _voucher_account(client: httpx.AsyncClient, world: World, voucher: dict[str, Any], kind: str) -> str:
    response = await client.get("/v1/ledger/entries", params={"voucher_id": voucher["id"]}, headers=auth(world.auditor))
    assert response.status_code == 200, response.text
    found = {e["account_id"] for e in response.json()["items"] if e["account_kind"] == f"voucher_{kind}"}
    assert len(found) == 1
    return found.pop()


async def test_every_account_at_every_step_equals_the_books_then(client: httpx.AsyncClient, scripted) -> None:
    world, _, seen = scripted
    steps = list(STEP)
    for i, step in enumerate(steps):
        for account_id, amount in seen[step].items():
            assert (await balance(client, world.auditor, account_id, STEP[step]))["balance"] == amount
            if i:  # a microsecond earlier it was what the previous step left
                earlier = await balance(client, world.auditor, account_id, STEP[step] - timedelta(microseconds=1))
                assert earlier["balance"] == seen[steps[i - 1]].get(account_id, 0)


async def test_unmaterialised_accounts_have_point_in_time_balances(app, client: httpx.AsyncClient, scripted) -> None:
    world, _, _ = scripted
    async with app.state.database.unit_of_work(write=False) as session:
        rows = (await session.execute(select(A.c.id, A.c.kind, A.c.balance).where(
            A.c.programme_id == uuid.UUID(world.programme["id"]), ~A.c.is_materialised))).all()
    by_kind = {r.kind: r for r in rows}
    payable, spent = by_kind["provider_payable"], by_kind["programme_spent"]
    assert payable.balance == spent.balance == 0, "their balance column is never moved"
    for step, owed in (("held", 0), ("captured", 200_000), ("refunded", 150_000)):
        assert (await balance(client, world.auditor, payable.id, STEP[step]))["balance"] == owed
        found = await balance(client, world.auditor, spent.id, STEP[step])
        assert found["balance"] == -owed and found["is_materialised"] is False
    now = await balance(client, world.auditor, payable.id, None)  # default: the request's now
    assert now["balance"] == 150_000 and now["postings"] == 2  # the capture and the refund


async def test_trial_balance_at_each_step(app, client: httpx.AsyncClient, scripted) -> None:
    world, _, seen = scripted
    programme = world.programme["id"]
    for step, moment in STEP.items():
        found = await trial(client, world.auditor, programme, moment)
        assert found["is_balanced"] is True and found["as_of"] == z(moment)
        assert found["totals"] == [{"unit": "CNY", "total": 0}]
        listed = {uuid.UUID(a["account_id"]): a["balance"] for a in found["accounts"]}
        assert listed == seen[step], step
        assert sum(listed.values()) == 0
        assert [a["code"] for a in found["accounts"]] == sorted(a["code"] for a in found["accounts"])
    assert len(seen["issued"]) > len(seen["opened"]), "the voucher's accounts came later"
    before = await trial(client, world.auditor, programme, STEP["opened"] - timedelta(seconds=1))
    assert before == {"programme_id": programme, "as_of": z(STEP["opened"] - timedelta(seconds=1)),
                      "is_balanced": True, "accounts": [], "totals": []}
    assert (await trial(client, world.auditor, programme, None))["accounts"] == (
        await trial(client, world.auditor, programme, STEP["refunded"]))["accounts"]


@pytest.mark.ledger_tampered  # a journal across programmes, of a kind the service never posts
async def test_postings_across_programmes_unbalance_both_trial_balances(
    app, client: httpx.AsyncClient, scripted, clock
) -> None:
    world, _, _ = scripted
    other = await create(client, world.operator, "/v1/programmes", programme_payload(tiers=[]))
    assert (await client.post(f"/v1/programmes/{other['id']}/open", headers=auth(world.operator))).status_code == 200
    async with app.state.database.unit_of_work() as session:
        spent = (await ledger.programme_accounts(session, uuid.UUID(world.programme["id"])))[AccountKind.PROGRAMME_SPENT]
        payable = (await ledger.ensure_provider_accounts(
            session, uuid.UUID(world.provider["id"]), uuid.UUID(other["id"]), "CNY", clock()))[AccountKind.PROVIDER_PAYABLE]
        await ledger.post(session, kind="misposted", legs=transfer(spent, payable, 999, "CNY"), now=clock())
    mine = await trial(client, world.auditor, world.programme["id"], None)
    theirs = await trial(client, world.auditor, other["id"], None)
    assert (mine["is_balanced"], mine["totals"]) == (False, [{"unit": "CNY", "total": -999}])
    assert (theirs["is_balanced"], theirs["totals"]) == (False, [{"unit": "CNY", "total": 999}])
    earlier = await trial(client, world.auditor, world.programme["id"], clock() - timedelta(seconds=1))
    assert earlier["is_balanced"] is True


async def test_refusals(client: httpx.AsyncClient, scripted, app) -> None:
    world, voucher, _ = scripted
    account = await _voucher_account(client, world, voucher, "available")
    unknown = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e99"
    assert_problem(await client.get(f"/v1/ledger/accounts/{unknown}/balance", headers=auth(world.auditor)),
                   404, "not_found")
    assert_problem(await client.get(f"/v1/programmes/{unknown}/trial-balance", headers=auth(world.auditor)),
                   404, "not_found")
    for bad in ("2026-02-20T02:00:00", "tomorrow", "2026-02-30T00:00:00Z"):
        assert_problem(await client.get(f"/v1/ledger/accounts/{account}/balance", params={"as_of": bad},
                                        headers=auth(world.auditor)), 422, "validation_failed")
        assert_problem(await client.get(f"/v1/programmes/{world.programme['id']}/trial-balance",
                                        params={"as_of": bad}, headers=auth(world.auditor)), 422, "validation_failed")
    paths = [f"/v1/ledger/accounts/{account}/balance", f"/v1/programmes/{world.programme['id']}/trial-balance",
             "/v1/ledger/entries"]
    for path in paths:
        for key in (world.enterprise_key, world.provider_key):
            assert_problem(await client.get(path, headers=auth(key)), 403, "insufficient_scope")
        assert_problem(await client.get(path), 401, "unauthenticated")
        assert (await client.get(path, headers=auth(world.operator))).status_code == 200


@pytest.mark.parametrize("number", ["0.5", "1700000000", "-1", "1e9"])
async def test_a_number_is_not_a_time(app, client: httpx.AsyncClient, number: str) -> None:
    """`?as_of=0.5` was read as half a second after 1970 (a Unix time): refused, with the form to use."""
    world = await build_world(app, client)
    response = await world.client.get(f"/v1/programmes/{world.programme['id']}/trial-balance",
                                      params={"as_of": number}, headers=auth(world.auditor))
    problem = assert_problem(response, 422, "validation_failed")
    assert "RFC 3339" in problem["errors"][0]["message"]
    events = await world.client.get("/v1/audit/events", params={"until": number}, headers=auth(world.auditor))
    assert_problem(events, 422, "validation_failed")


async def test_a_balance_later_than_now_is_refused_not_forecast(app, client: httpx.AsyncClient, clock) -> None:
    """An `as_of` after now had answered 200 with the holds that would lapse by then shown as
    released: a capture before then made the same question answer otherwise (an independent review)."""
    world = await build_world(app, client)
    voucher = await world.issue(1_000_000)
    assert (await world.hold(voucher, 100_000, order="PO-F")).status_code == 201
    later = z(clock() + timedelta(days=1))
    account = await _voucher_account(client, world, voucher, "held")
    for path in (f"/v1/ledger/accounts/{account}/balance", f"/v1/programmes/{world.programme['id']}/trial-balance"):
        problem = assert_problem(await client.get(path, params={"as_of": later}, headers=auth(world.auditor)),
                                 422, "validation_failed")
        assert problem["errors"][0]["location"] == "query" and "as_of" in problem["errors"][0]["pointer"] + str(
            problem["errors"][0].get("field", "")), problem
        now = await client.get(path, params={"as_of": z(clock())}, headers=auth(world.auditor))
        assert now.status_code == 200, now.text
        skewed = await client.get(path, params={"as_of": z(clock() + timedelta(seconds=3))}, headers=auth(world.auditor))
        assert skewed.status_code == 200 and skewed.json()["as_of"] == now.json()["as_of"], skewed.text  # a clock ahead


async def test_a_trial_balance_is_read_at_one_instant(app, client: httpx.AsyncClient, clock, monkeypatch) -> None:
    """The postings and the holds that had lapsed by `as_of` were read by two statements outside a
    transaction: the worker's release of a lapsed hold committed between them, and the hold was
    counted neither as held-and-lapsed nor as released — still held, in no read the voucher gives
    (an independent review). Both are read in one snapshot."""
    from services.voucher import jobs
    from services.voucher.ledger import repository as ledger_repository

    world = await build_world(app, client)
    voucher = await world.issue(1_000_000)
    assert (await world.hold(voucher, 100_000, order="PO-TB")).status_code == 201
    clock.advance(minutes=31)  # the hold has lapsed; the worker has not released it yet
    real = ledger_repository.unposted_expiries

    async def released_meanwhile(session: Any, as_of: Any, **kwargs: Any) -> Any:
        await jobs.run_once(app.state.database, "expire-holds", clock())
        return await real(session, as_of, **kwargs)

    monkeypatch.setattr(ledger_repository, "unposted_expiries", released_meanwhile)
    raced = await client.get(f"/v1/programmes/{world.programme['id']}/trial-balance", headers=auth(world.auditor))
    monkeypatch.undo()
    assert raced.status_code == 200, raced.text
    again = await client.get(f"/v1/programmes/{world.programme['id']}/trial-balance", headers=auth(world.auditor),
                             params={"as_of": raced.json()["as_of"]})

    def of_voucher(answer: httpx.Response) -> dict[str, int]:
        return {line["kind"]: line["balance"] for line in answer.json()["accounts"] if line.get("voucher_id") == voucher["id"]}

    assert of_voucher(raced)["voucher_held"] == 0 and of_voucher(raced) == of_voucher(again)
    assert (await world.voucher(voucher["id"]))["balances"]["held"] == 0
