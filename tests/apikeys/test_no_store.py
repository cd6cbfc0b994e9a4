"""An answer that carries a new API key's secret is never cached, as a webhook secret's is not
(found by a review of the change that kept Cache-Control on replays)."""

from __future__ import annotations

import httpx

from tests.support import auth, create, enterprise_payload


async def test_an_answer_with_an_api_key_secret_is_no_store(client: httpx.AsyncClient, operator_key: str) -> None:
    enterprise = await create(client, operator_key, "/v1/enterprises", enterprise_payload())
    made = await client.post("/v1/api-keys", json={"name": "integration", "role": "enterprise",
                                                   "enterprise_id": enterprise["id"]}, headers=auth(operator_key))
    assert made.status_code == 201 and made.json()["key"], made.text
    rotated = await client.post(f"/v1/api-keys/{made.json()['id']}/rotate", json={}, headers=auth(operator_key))
    assert rotated.status_code == 201, rotated.text
    for answer in (made, rotated):
        assert answer.headers.get("cache-control") == "no-store", dict(answer.headers)
