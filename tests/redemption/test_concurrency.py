"""Invariant 4 and friends under real concurrency: many requests race through a real server
over a socket, against the same database, and value never moves twice or past a limit."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from services.voucher.clock import system_clock
from tests.live_server import LiveServer
from tests.support import auth
from tests.world import World, build_world, hold_body

pytestmark = pytest.mark.timeout(180)
PARALLEL = 60


@pytest.fixture
def clock():  # the live server runs on the real clock; so does this test's app
    return system_clock


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, budget_total=10_000_000_000, enterprise_cap=50_000_000,
                             max_per_voucher=50_000_000, rate_table={"accelerator:domestic": 3000})


@pytest.fixture
def server(database_url: str, world: World):
    with LiveServer(database_url) as live:
        yield live


async def _storm(server: LiveServer, requests: list[tuple[str, dict, dict]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=PARALLEL, max_keepalive_connections=PARALLEL)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
        return await asyncio.gather(*(http.post(path, json=body, headers=headers) for path, body, headers in requests))


def _codes(responses: list[httpx.Response]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in responses:
        out[r.status_code] = out.get(r.status_code, 0) + 1
    return out


async def test_parallel_holds_never_exceed_the_balance(world: World, server: LiveServer) -> None:
    voucher = await world.issue(1_000_000)  # each hold wants 30 % of ¥1,000.00 = ¥300.00
    requests = [
        ("/v1/redemptions/holds",
         hold_body(voucher["code"], world.enterprise["uscc"], f"PO-{i}", [("accelerator:domestic", 100_000)]),
         auth(world.provider_key, **{"Idempotency-Key": str(uuid.uuid4())}))
        for i in range(PARALLEL)
    ]
    responses = await _storm(server, requests)
    ok = [r.json() for r in responses if r.status_code == 201]
    refused = [r.json()["code"] for r in responses if r.status_code != 201]
    assert all(r.status_code in (201, 409) for r in responses), _codes(responses)
    assert set(refused) <= {"voucher_exhausted", "concurrent_update"}
    held = sum(r["held_amount"] for r in ok)
    assert held <= 1_000_000
    assert held == 1_000_000, _codes(responses)  # every fen of it: lock waits, not lost races
    assert len(ok) == 34 and sorted(r["held_amount"] for r in ok)[0] == 10_000  # 33 full + 1 partial
    after = await world.voucher(voucher["id"])
    assert after["balances"] == {"available": 1_000_000 - held, "held": held, "used": 0}
    assert (await world.reconciliation())["is_clean"]


async def test_parallel_one_step_redeems_never_exceed_the_balance(world: World, server: LiveServer) -> None:
    """The same storm through one-step redeem: on PostgreSQL the first redeem opens the
    provider's accounts through the general path and the rest race through the fast path."""
    voucher = await world.issue(1_000_000)
    requests = [
        ("/v1/redemptions",
         hold_body(voucher["code"], world.enterprise["uscc"], f"PO-{i}", [("accelerator:domestic", 100_000)]),
         auth(world.provider_key, **{"Idempotency-Key": str(uuid.uuid4())}))
        for i in range(PARALLEL)
    ]
    responses = await _storm(server, requests)
    ok = [r.json() for r in responses if r.status_code == 201]
    assert all(r.status_code in (201, 409) for r in responses), _codes(responses)
    assert {r.json()["code"] for r in responses if r.status_code != 201} <= {"voucher_exhausted", "concurrent_update"}
    used = sum(r["captured_amount"] for r in ok)
    assert used == 1_000_000 and len(ok) == 34, _codes(responses)  # every fen, never one more
    after = await world.voucher(voucher["id"])
    assert after["balances"] == {"available": 0, "held": 0, "used": 1_000_000}
    assert after["status"] == "exhausted"
    assert (await world.reconciliation())["is_clean"]


async def test_concurrent_captures_and_voids_of_one_hold_resolve_it_once(world: World, server: LiveServer) -> None:
    voucher = await world.issue(1_000_000)
    hold = (await world.hold(voucher, 100_000, order="PO-race")).json()
    requests = [
        (f"/v1/redemptions/{hold['id']}/{'capture' if i % 2 else 'void'}", {},
         auth(world.provider_key, **{"Idempotency-Key": str(uuid.uuid4())}))
        for i in range(PARALLEL)
    ]
    responses = await _storm(server, requests)
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) == 1, _codes(responses)
    assert {r.json()["code"] for r in responses if r.status_code != 200} <= {"hold_not_active", "concurrent_update"}
    after = await world.voucher(voucher["id"])
    if winners[0].json()["status"] == "captured":
        assert after["balances"] == {"available": 970_000, "held": 0, "used": 30_000}
    else:
        assert after["balances"] == {"available": 1_000_000, "held": 0, "used": 0}
    assert (await world.reconciliation())["is_clean"]


@pytest.mark.parametrize("path", ["/v1/redemptions/holds", "/v1/redemptions"])
async def test_two_vouchers_racing_for_the_enterprise_cap(
    app, client: httpx.AsyncClient, database_url: str, path: str
) -> None:
    """Voucher A was granted last year, B this year: together they hold twice this year's cap,
    so holds on both race for the cap's last fen."""
    world = await build_world(app, client, budget_total=10_000_000_000, enterprise_cap=50_000_000,
                              max_per_voucher=50_000_000, voucher_validity_days=900,
                              rate_table={"accelerator:domestic": 5000})
    now = system_clock()
    app.state.clock = lambda: now.replace(year=now.year - 1)
    a = await world.issue(50_000_000)
    app.state.clock = system_clock
    b = await world.issue(50_000_000)
    assert a["period_key"] != b["period_key"]
    requests = [
        (path,
         hold_body(v["code"], world.enterprise["uscc"], f"CAP-{i}", [("accelerator:domestic", 4_000_000)]),
         auth(world.provider_key, **{"Idempotency-Key": str(uuid.uuid4())}))
        for i, v in enumerate([a, b] * (PARALLEL // 2))
    ]  # 60 holds x 2,000,000 wanted = 120,000,000 > the 50,000,000 cap
    with LiveServer(database_url) as server:
        responses = await _storm(server, requests)
    held = [r.json() for r in responses if r.status_code == 201]
    refused = {r.json()["code"] for r in responses if r.status_code != 201}
    assert refused <= {"enterprise_cap_reached", "concurrent_update"}, _codes(responses)
    assert sum(h["held_amount"] for h in held) == 50_000_000  # every fen of the cap, never one more
    assert {h["voucher_id"] for h in held} == {a["id"], b["id"]}
    assert (await world.reconciliation())["is_clean"]


@pytest.mark.parametrize("path", ["/v1/redemptions", "/v1/redemptions/holds"])
async def test_one_idempotency_key_sent_many_times_at_once_moves_value_once(
        world: World, server: LiveServer, path: str) -> None:
    """Invariant 5 under concurrency: a client that retries before its first answer arrives —
    the same Idempotency-Key and body, many times at once through a real server. One request
    moves value; the others wait for it and replay its answer (the same redemption), or are
    told the first is still in progress. Nothing had raced one key on a value route (an
    independent review, December 2026)."""
    voucher = await world.issue(10_000_000)
    body = hold_body(voucher["code"], world.enterprise["uscc"], "PO-RETRY", [("accelerator:domestic", 1_000_000)])
    headers = auth(world.provider_key, **{"Idempotency-Key": str(uuid.uuid4())})
    responses = await _storm(server, [(path, body, headers)] * 16)
    assert all(r.status_code in (201, 409) for r in responses), _codes(responses)
    assert {r.json()["code"] for r in responses if r.status_code == 409} <= {"idempotency_request_in_progress"}
    made = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(made) == 1, _codes(responses)
    moved = 300_000
    balances = (await world.voucher(voucher["id"]))["balances"]
    assert balances["available"] == 10_000_000 - moved, balances
    again = await _storm(server, [(path, body, headers)])  # a later retry: the same answer
    assert again[0].status_code == 201 and again[0].json()["id"] in made
    assert (await world.reconciliation())["is_clean"]
