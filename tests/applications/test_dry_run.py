"""POST /v1/applications/dry-run: an enterprise sees, before applying, the verdict its application
would get now — the same judgement `submit` makes — and nothing is stored or recorded."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.applications.test_lifecycle import MODEST, RULES, open_desk
from tests.support import assert_problem, auth


async def _events(client: httpx.AsyncClient, auditor: str) -> int:
    response = await client.get("/v1/audit/events", params={"limit": 200}, headers=auth(auditor))
    assert response.status_code == 200, response.text
    return len(response.json()["items"])


async def test_the_dry_run_gives_the_verdict_submit_gives_and_stores_nothing(app: Any, client: httpx.AsyncClient) -> None:
    desk = await open_desk(app, client, eligibility_rules=RULES)
    world = desk.world
    before = await _events(client, world.auditor)
    body = {"programme_id": world.programme["id"], "requested_amount": MODEST + 1}
    dry = await client.post("/v1/applications/dry-run", json=body,
                            headers=auth(world.enterprise_key, **{"Accept-Language": "zh-CN"}))
    assert dry.status_code == 200, dry.text
    verdict = dry.json()
    assert verdict["passed"] is False and [f["rule"] for f in verdict["failed"]] == ["modest"]
    assert dry.headers["content-language"] == "zh-CN"
    listed = await client.get("/v1/applications", headers=auth(world.enterprise_key))
    assert listed.json()["items"] == []
    assert await _events(client, world.auditor) == before
    submitted = await client.post("/v1/applications", json={**body, "purpose": "训练"},
                                  headers=auth(world.enterprise_key, **{"Idempotency-Key": str(uuid.uuid4()),
                                                                       "Accept-Language": "zh-CN"}))
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["eligibility"] == verdict
    passing = await client.post("/v1/applications/dry-run", json={**body, "requested_amount": MODEST},
                                headers=auth(world.enterprise_key))
    assert passing.json()["passed"] is True


async def test_the_dry_run_is_for_enterprises_and_existing_programmes(app: Any, client: httpx.AsyncClient) -> None:
    desk = await open_desk(app, client)
    world = desk.world
    body = {"programme_id": world.programme["id"], "requested_amount": 1000}
    assert_problem(await client.post("/v1/applications/dry-run", json=body, headers=auth(world.operator)),
                   403, "insufficient_scope")
    missing = await client.post("/v1/applications/dry-run", json={**body, "programme_id": str(uuid.uuid4())},
                                headers=auth(world.enterprise_key))
    assert_problem(missing, 404, "not_found")
    assert_problem(await client.post("/v1/applications/dry-run", json={**body, "requested_amount": 0},
                                     headers=auth(world.enterprise_key)), 422, "validation_failed")


async def test_the_dry_run_refuses_above_the_maximum_per_voucher_as_submit_does(
    app: Any, client: httpx.AsyncClient,
) -> None:
    desk = await open_desk(app, client)
    world = desk.world
    over = {"programme_id": world.programme["id"], "requested_amount": world.programme["max_per_voucher"] + 1}
    dry = await client.post("/v1/applications/dry-run", json=over, headers=auth(world.enterprise_key))
    submitted = await client.post("/v1/applications", json={**over, "purpose": "训练"},
                                  headers=auth(world.enterprise_key, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert_problem(dry, 422, "validation_failed")
    assert_problem(submitted, 422, "validation_failed")
    assert dry.json()["errors"] == submitted.json()["errors"]
