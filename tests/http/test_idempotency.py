"""Idempotency-Key: a repeated request returns the first answer and changes nothing again
(DESIGN invariant 5), through the real HTTP stack."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid

import httpx
import pytest
from fastapi import Depends
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.voucher.http.idempotency import idempotent
from services.voucher.idempotency.service import lock_key
from tests.conftest import ENGINE
from tests.support import assert_problem, auth, enterprise_payload, make_key, provider_payload
from tests.world import build_world


async def _count_enterprises(client: httpx.AsyncClient, key: str) -> int:
    return len((await client.get("/v1/enterprises", headers=auth(key))).json()["items"])


async def test_replay_returns_first_answer_and_creates_once(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    headers = auth(operator_key, **{"Idempotency-Key": "register-1"})
    body = enterprise_payload()
    first = await client.post("/v1/enterprises", json=body, headers=headers)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = await client.post("/v1/enterprises", json=body, headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]  # the answer's own headers too
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["x-request-id"] != first.headers["x-request-id"]  # the request's are new
    assert await _count_enterprises(client, operator_key) == 1


async def test_same_json_with_other_spacing_and_order_is_the_same_request(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    body = enterprise_payload()
    headers = auth(operator_key, **{"Idempotency-Key": "k-canonical", "content-type": "application/json"})
    first = await client.post("/v1/enterprises", content=json.dumps(body), headers=headers)
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=4)
    again = await client.post("/v1/enterprises", content=reordered, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]


async def test_same_key_with_another_body_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    headers = auth(operator_key, **{"Idempotency-Key": "register-2"})
    assert (await client.post("/v1/enterprises", json=enterprise_payload(), headers=headers)).status_code == 201
    other = await client.post("/v1/enterprises", json=enterprise_payload(), headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")
    assert await _count_enterprises(client, operator_key) == 1


async def test_same_key_on_another_path_is_refused(client: httpx.AsyncClient, operator_key: str) -> None:
    headers = auth(operator_key, **{"Idempotency-Key": "shared"})
    assert (await client.post("/v1/enterprises", json=enterprise_payload(), headers=headers)).status_code == 201
    response = await client.post("/v1/providers", json=provider_payload(), headers=headers)
    assert_problem(response, 422, "idempotency_key_reused")
    assert (await client.get("/v1/providers", headers=auth(operator_key))).json()["items"] == []


async def test_keys_are_scoped_to_the_principal(app, client: httpx.AsyncClient, operator_key: str) -> None:
    other_operator = await make_key(app, "operator", principal_name="another office")
    a = await client.post(
        "/v1/enterprises", json=enterprise_payload(), headers=auth(operator_key, **{"Idempotency-Key": "same"})
    )
    b = await client.post(
        "/v1/enterprises", json=enterprise_payload(), headers=auth(other_operator, **{"Idempotency-Key": "same"})
    )
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert "idempotent-replayed" not in b.headers


async def test_business_refusal_is_the_stored_answer(client: httpx.AsyncClient, operator_key: str) -> None:
    body = enterprise_payload()
    assert (await client.post("/v1/enterprises", json=body, headers=auth(operator_key))).status_code == 201
    headers = auth(operator_key, **{"Idempotency-Key": "dup"})
    refused = await client.post("/v1/enterprises", json=body, headers=headers)
    assert_problem(refused, 409, "already_exists")
    replay = await client.post("/v1/enterprises", json=body, headers=headers)
    assert replay.status_code == 409
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["code"] == "already_exists"


async def test_validation_failure_is_not_stored(client: httpx.AsyncClient, operator_key: str) -> None:
    headers = auth(operator_key, **{"Idempotency-Key": "fix-and-retry"})
    bad = await client.post("/v1/enterprises", json=enterprise_payload(region_code="1"), headers=headers)
    assert_problem(bad, 422, "validation_failed")
    # The key was released: the same key may carry the corrected request.
    good = await client.post("/v1/enterprises", json=enterprise_payload(), headers=headers)
    assert good.status_code == 201


async def test_unexpected_failure_is_not_stored(app, client: httpx.AsyncClient, operator_key: str) -> None:
    calls = itertools.count(1)

    async def flaky() -> dict[str, int]:
        n = next(calls)
        if n == 1:
            raise RuntimeError("transient crash")
        return {"call": n}

    app.add_api_route("/v1/test-flaky", flaky, methods=["POST"], dependencies=[Depends(idempotent())])
    headers = auth(operator_key, **{"Idempotency-Key": "retry-me"})
    assert_problem(await client.post("/v1/test-flaky", json={}, headers=headers), 500, "internal_error")
    second = await client.post("/v1/test-flaky", json={}, headers=headers)
    assert second.status_code == 200 and second.json() == {"call": 2}
    third = await client.post("/v1/test-flaky", json={}, headers=headers)
    assert third.json() == {"call": 2} and third.headers["idempotent-replayed"] == "true"


async def test_a_replay_while_the_first_is_running_waits_for_it_and_returns_its_answer(
    app, client: httpx.AsyncClient, operator_key: str
) -> None:
    """DESIGN §3 invariant 5: the second request with the key waits on the key's lock (taken in
    the first request's own transaction) and then replays the first's answer; the handler runs
    once."""
    entered, gate = asyncio.Event(), asyncio.Event()
    calls = itertools.count(1)

    async def slow() -> dict[str, int]:
        n = next(calls)
        entered.set()
        await gate.wait()
        return {"call": n}

    app.add_api_route(
        "/v1/test-slow", slow, methods=["POST"], status_code=201, dependencies=[Depends(idempotent())]
    )
    headers = auth(operator_key, **{"Idempotency-Key": "slow-1"})
    first = asyncio.create_task(client.post("/v1/test-slow", json={"a": 1}, headers=headers))
    await asyncio.wait_for(entered.wait(), 10)
    second = asyncio.create_task(client.post("/v1/test-slow", json={"a": 1}, headers=headers))
    await asyncio.sleep(0.3)
    assert not second.done()  # waiting on the first, not refused
    gate.set()
    done, replayed = await first, await second
    assert done.status_code == 201 and done.json() == {"call": 1}
    assert "idempotent-replayed" not in done.headers
    assert replayed.status_code == 201 and replayed.json() == {"call": 1}
    assert replayed.headers["idempotent-replayed"] == "true"
    assert next(calls) == 2  # the handler ran exactly once


async def test_a_waiting_replay_runs_afresh_when_the_first_attempt_fails(
    app, client: httpx.AsyncClient, operator_key: str
) -> None:
    """The first attempt's failure left nothing under the key: the one that waited runs."""
    entered, gate = asyncio.Event(), asyncio.Event()
    calls = itertools.count(1)

    async def first_fails() -> dict[str, int]:
        n = next(calls)
        if n == 1:
            entered.set()
            await gate.wait()
            raise RuntimeError("crash after waiting")
        return {"call": n}

    app.add_api_route("/v1/test-fails", first_fails, methods=["POST"], status_code=201,
                      dependencies=[Depends(idempotent())])
    headers = auth(operator_key, **{"Idempotency-Key": "fails-1"})
    first = asyncio.create_task(client.post("/v1/test-fails", json={}, headers=headers))
    await asyncio.wait_for(entered.wait(), 10)
    second = asyncio.create_task(client.post("/v1/test-fails", json={}, headers=headers))
    await asyncio.sleep(0.3)
    gate.set()
    assert_problem(await first, 500, "internal_error")
    ran = await second
    assert ran.status_code == 201 and ran.json() == {"call": 2}
    assert "idempotent-replayed" not in ran.headers


async def test_key_is_free_again_after_retention(
    app, client: httpx.AsyncClient, clock, operator_key: str
) -> None:
    headers = auth(operator_key, **{"Idempotency-Key": "old"})
    assert (await client.post("/v1/enterprises", json=enterprise_payload(), headers=headers)).status_code == 201
    clock.advance(days=app.state.settings.idempotency_retention_days + 1)
    fresh = await client.post("/v1/enterprises", json=enterprise_payload(), headers=headers)
    assert fresh.status_code == 201 and "idempotent-replayed" not in fresh.headers


async def test_unacceptable_keys_are_refused(client: httpx.AsyncClient, operator_key: str) -> None:
    for bad in (b"x" * 256, "caf\u00e9".encode()):
        response = await client.post(
            "/v1/enterprises",
            json=enterprise_payload(),
            headers=[(b"Authorization", f"Bearer {operator_key}".encode()), (b"Idempotency-Key", bad)],
        )
        assert_problem(response, 422, "invalid_idempotency_key")
    assert await _count_enterprises(client, operator_key) == 0


@pytest.mark.skipif(ENGINE != "postgresql", reason="the key's lock is PostgreSQL's advisory lock")
@pytest.mark.timeout(60)
async def test_a_value_request_whose_first_is_still_running_past_the_lock_timeout_is_told_so(
    app, client: httpx.AsyncClient, database_url: str
) -> None:
    """A hold's claim rides with its first reads; when the key's lock waits past the lock
    timeout, the answer is `idempotency_request_in_progress` (which clients retry), as for a
    claim sent alone, not `concurrent_update` (which they do not). Nothing is held."""
    world = await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=200_000_000,
                              max_per_voucher=100_000_000, rate_table={"accelerator:domestic": 3000})
    voucher = await world.issue(1_000_000)
    me = (await client.get("/v1/me", headers=auth(world.provider_key))).json()
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as first:  # the first request with the key, still running
            await first.execute(text("SELECT pg_advisory_xact_lock(:lock)"),
                                {"lock": lock_key(uuid.UUID(me["principal_id"]), "slow-hold")})
            waited = await world.hold(voucher, 1_000_000, order="PO-slow", key="slow-hold")
            await first.rollback()
    finally:
        await engine.dispose()
    problem = assert_problem(waited, 409, "idempotency_request_in_progress")
    assert "still running" in problem["detail"]
    assert (await world.voucher(voucher["id"]))["balances"]["held"] == 0
    again = await world.hold(voucher, 1_000_000, order="PO-slow", key="slow-hold")
    assert again.status_code == 201, again.text
