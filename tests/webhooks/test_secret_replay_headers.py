"""A replayed answer that carries a webhook signing secret must be as uncacheable as the first."""
from __future__ import annotations

import uuid

import httpx
import pytest

from services.voucher import jobs
from tests.support import assert_problem, auth, enterprise_payload, make_key
from tests.world import World, build_world


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client)


@pytest.mark.parametrize("rotate", [False, True])
async def test_replayed_secret_is_sent_no_store(app, client: httpx.AsyncClient, world: World, rotate: bool) -> None:
    key = await make_key(app, "provider", provider_id=uuid.UUID(world.provider["id"]))
    headers = auth(key, **{"Idempotency-Key": "wh-create-1"})
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["redemption.captured"]}
    first = await client.post("/v1/webhook-endpoints", json=body, headers=headers)
    assert first.status_code == 201, first.text
    path, payload = "/v1/webhook-endpoints", body
    if rotate:
        path, payload = f"/v1/webhook-endpoints/{first.json()['id']}/secret-rotations", {}
        headers = auth(key, **{"Idempotency-Key": "wh-rotate-1"})
        first = await client.post(path, json=payload, headers=headers)
        assert first.status_code == 200, first.text
    assert first.headers.get("cache-control") == "no-store"
    again = await client.post(path, json=payload, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["secret"] == first.json()["secret"]
    assert again.headers.get("cache-control") == "no-store", dict(again.headers)



@pytest.mark.parametrize("rotate", [False, True])
async def test_an_answer_with_a_secret_is_kept_a_day_and_the_request_is_not_run_again_after_it(
    app, client: httpx.AsyncClient, clock, world: World, operator_key: str, rotate: bool
) -> None:
    """The stored answer holds the signing secret (sealed, but the key opens it): replayed to a
    retry within a day. After it the secret is not sent again, and the request is not run again
    either — a second endpoint, or a second rotation, had been made by a retry after the day (an
    independent review, December 2026; DESIGN invariant 5): 409 `idempotent_answer_withdrawn`,
    naming what the first request made. The purge job empties the body; the record stays the
    retention, as an answer without a secret does."""
    key = await make_key(app, "provider", provider_id=uuid.UUID(world.provider["id"]))
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["redemption.captured"]}
    path, payload, headers = "/v1/webhook-endpoints", body, auth(key, **{"Idempotency-Key": "wh-day-1"})
    first = await client.post(path, json=payload, headers=headers)
    assert first.status_code == 201, first.text
    location = first.headers["location"]
    if rotate:
        path, payload = f"/v1/webhook-endpoints/{first.json()['id']}/secret-rotations", {}
        headers = auth(key, **{"Idempotency-Key": "wh-day-rotate"})
        first = await client.post(path, json=payload, headers=headers)
        assert first.status_code == 200, first.text
    plain = auth(operator_key, **{"Idempotency-Key": "no-secret"})
    registered = enterprise_payload()
    enterprise = await client.post("/v1/enterprises", json=registered, headers=plain)
    assert enterprise.status_code == 201, enterprise.text

    clock.advance(hours=23)
    again = await client.post(path, json=payload, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["secret"] == first.json()["secret"]

    clock.advance(hours=2)
    late = await client.post(path, json=payload, headers=headers)  # the day alone decides, before any purge
    problem = assert_problem(late, 409, "idempotent_answer_withdrawn")
    assert first.json()["secret"] not in late.text
    if not rotate:
        assert problem["location"] == location
    assert await jobs.run_once(app.state.database, "purge-idempotency", clock()) >= 1
    bodies = await _bodies(app)
    assert bodies["no-secret"] is not None and bodies[headers["Idempotency-Key"]] is None
    kept = await client.post("/v1/enterprises", json=registered, headers=plain)
    assert kept.headers.get("idempotent-replayed") == "true", kept.text
    later = await client.post(path, json=payload, headers=headers)
    assert_problem(later, 409, "idempotent_answer_withdrawn")
    endpoints = await client.get("/v1/webhook-endpoints", headers=auth(key))
    assert len(endpoints.json()["items"]) == 1  # nothing made again
    assert [e["id"] for e in endpoints.json()["items"]] == [location.rsplit("/", 1)[1]]


async def _bodies(app) -> dict[str, bytes | None]:
    from sqlalchemy import select

    from services.voucher.tables import IdempotencyRecord

    async with app.state.database.unit_of_work(write=False) as session:
        rows = await session.execute(select(IdempotencyRecord.key, IdempotencyRecord.response_body))
        return {row.key: row.response_body for row in rows}
