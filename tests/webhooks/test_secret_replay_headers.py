"""A replayed answer that carries a webhook signing secret must be as uncacheable as the first."""
from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support import auth, make_key
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
