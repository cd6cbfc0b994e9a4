"""Rate limiting per API key, configured per role: RateLimit headers on every authenticated
answer, 429 `rate_limited` with Retry-After past the limit, and a refusal changes nothing.

The limiter counts in real time (the `limits` library), so the limits here are tiny and
windows short; one test waits out a 2-second window once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from services.voucher.settings import Settings
from tests.support import assert_problem, auth, make_key, programme_payload


@pytest.fixture
def settings(database_url: str, request: pytest.FixtureRequest) -> Settings:
    overrides: dict[str, Any] = getattr(request, "param", {})
    limits = overrides.pop("rate_limits", {"operator": "3/30 seconds", "auditor": "10/30 seconds"})
    return Settings(database_url=database_url, environment="test", log_level="WARNING",
                    rate_limits=limits, **overrides)


def quota(response: httpx.Response) -> tuple[int, int, int, str]:
    h = response.headers
    return int(h["ratelimit-limit"]), int(h["ratelimit-remaining"]), int(h["ratelimit-reset"]), h["ratelimit-policy"]


async def programme_codes(client: httpx.AsyncClient, key: str) -> list[str]:
    response = await client.get("/v1/programmes", headers=auth(key))
    assert response.status_code == 200, response.text
    return [p["code"] for p in response.json()["items"]]


async def test_the_request_past_the_limit_is_429_and_changes_nothing(app: Any, client: httpx.AsyncClient) -> None:
    key, other_key = await make_key(app, "operator"), await make_key(app, "operator")
    seen = []
    for _ in range(3):
        response = await client.get("/v1/programmes", headers=auth(key))
        assert response.status_code == 200, response.text
        seen.append(quota(response))
    assert [(limit, remaining, policy) for limit, remaining, _, policy in seen] == [
        (3, 2, "3;w=30"), (3, 1, "3;w=30"), (3, 0, "3;w=30")]
    assert all(0 < reset <= 30 for _, _, reset, _ in seen)

    body = programme_payload()
    refused = await client.post("/v1/programmes", json=body, headers=auth(key, **{"Idempotency-Key": "p-1"}))
    problem = assert_problem(refused, 429, "rate_limited")
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 30 and problem["retry_after"] == retry_after
    assert quota(refused)[:2] == (3, 0)
    assert_problem(await client.get("/v1/programmes", headers=auth(key)), 429, "rate_limited")

    # Another key of the same role has its own budget; nothing was created by the refusal.
    assert body["code"] not in await programme_codes(client, other_key)
    assert quota(await client.get("/v1/programmes", headers=auth(other_key)))[1] == 1


async def test_each_role_has_its_own_limit(app: Any, client: httpx.AsyncClient) -> None:
    auditor = await make_key(app, "auditor")
    response = await client.get("/v1/programmes", headers=auth(auditor))
    assert response.status_code == 200
    assert quota(response)[:2] == (10, 9) and quota(response)[3] == "10;w=30"
    # Answers without a key carry no quota: nothing was counted.
    anonymous = await client.get("/v1/programmes")
    assert anonymous.status_code == 401 and "ratelimit-limit" not in anonymous.headers
    assert "ratelimit-limit" not in (await client.get("/healthz")).headers


@pytest.mark.parametrize("settings", [{"rate_limits": {"operator": "2/2 seconds"}}], indirect=True)
async def test_after_the_window_the_refused_request_succeeds_once_and_was_not_remembered(
    app: Any, client: httpx.AsyncClient
) -> None:
    key = await make_key(app, "operator")
    body = programme_payload()
    headers = auth(key, **{"Idempotency-Key": f"p-{uuid.uuid4()}"})
    for _ in range(2):
        assert (await client.get("/v1/programmes", headers=auth(key))).status_code == 200
    refused = await client.post("/v1/programmes", json=body, headers=headers)
    assert_problem(refused, 429, "rate_limited")

    await asyncio.sleep(int(refused.headers["retry-after"]) + 0.05)
    created = await client.post("/v1/programmes", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert "idempotent-replayed" not in created.headers  # the 429 was not stored as the answer
    assert quota(created)[:2] == (2, 1)
    replayed = await client.post("/v1/programmes", json=body, headers=headers)
    assert replayed.status_code == 201 and replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json()["id"] == created.json()["id"]


@pytest.mark.parametrize(
    "settings", [{"rate_limit_enabled": False, "rate_limits": {"operator": "1/30 seconds"}}], indirect=True
)
async def test_switched_off_nothing_is_limited(app: Any, client: httpx.AsyncClient) -> None:
    key = await make_key(app, "operator")
    for _ in range(3):
        response = await client.get("/v1/programmes", headers=auth(key))
        assert response.status_code == 200 and "ratelimit-limit" not in response.headers


def test_limits_are_validated_and_roles_left_out_keep_their_default() -> None:
    settings = Settings(rate_limits={"provider": "50/second"})
    assert settings.rate_limits["provider"] == "50/second"
    assert settings.rate_limits["operator"] == Settings().rate_limits["operator"]
    with pytest.raises(ValueError, match="rate limit for provider"):
        Settings(rate_limits={"provider": "fast"})
    with pytest.raises(ValueError):
        Settings(rate_limits={"robot": "1/second"})


async def test_every_key_of_a_principal_shares_one_allowance(app: Any, client: httpx.AsyncClient) -> None:
    """Issue 19, finding 6: a rotation's two live keys are not two budgets."""
    first = await make_key(app, "operator")
    me = (await client.get("/v1/me", headers=auth(first))).json()
    second = await make_key(app, "operator", principal_id=me["principal_id"])
    assert quota(await client.get("/v1/programmes", headers=auth(second)))[:2] == (3, 1)
    assert quota(await client.get("/v1/programmes", headers=auth(first)))[:2] == (3, 0)
    assert_problem(await client.get("/v1/programmes", headers=auth(second)), 429, "rate_limited")


async def test_a_limited_principal_is_refused_before_its_body_is_read(app: Any, client: httpx.AsyncClient) -> None:
    from tests.http.test_body_limits import call

    key = await make_key(app, "operator")
    for _ in range(3):
        assert (await client.get("/v1/programmes", headers=auth(key))).status_code == 200
    body = b"{" + b" " * 500_000 + b"}"
    made = await call(app, "/v1/programmes", [body], key=key, length=len(body))
    assert made.status == 429 and made.read == 0
    assert made.body["code"] == "rate_limited"
    assert any(k == b"retry-after" for k, _ in made.messages[0]["headers"])
