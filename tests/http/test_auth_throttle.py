"""Failed authentication is throttled per client address (issue 19, finding 3): unknown keys
count against the address, past the limit it is 429 `authentication_throttled` with
Retry-After and no database lookup; a key the cache knows keeps working; the same unknown key
is remembered and not looked up again."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from services.voucher.apikeys import service as apikeys
from services.voucher.settings import Settings
from tests.http.test_body_limits import call
from tests.support import assert_problem, auth, make_key

LIMIT = 5


@pytest.fixture
def settings(database_url: str, request: pytest.FixtureRequest) -> Settings:
    overrides: dict[str, Any] = getattr(request, "param", {})
    return Settings(database_url=database_url, environment="test", log_level="WARNING",
                    auth_failure_limit=overrides.get("auth_failure_limit", f"{LIMIT}/30 seconds"),
                    rate_limit_storage=overrides.get("rate_limit_storage", "memory://"))


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every key lookup that reached the database."""
    seen: list[str] = []
    real = apikeys.lookup

    async def counted(session: Any, secret_hash: str) -> Any:
        seen.append(secret_hash)
        return await real(session, secret_hash)

    monkeypatch.setattr(apikeys, "lookup", counted)
    return seen


def bad_key() -> str:
    return "vk_" + secrets.token_hex(5) + "_" + secrets.token_urlsafe(32)


async def test_an_address_past_its_failures_is_throttled_before_any_lookup(
    app: Any, client: httpx.AsyncClient, lookups: list[str]
) -> None:
    app.state.key_cache.listening = True  # as the lifespan's listener would on PostgreSQL
    good = await make_key(app, "operator")
    assert (await client.get("/v1/me", headers=auth(good))).status_code == 200  # now in the key cache
    for _ in range(LIMIT):
        assert_problem(await client.get("/v1/me", headers=auth(bad_key())), 401, "invalid_api_key")
    looked_up = len(lookups)
    refused = await client.get("/v1/me", headers=auth(bad_key()))
    problem = assert_problem(refused, 429, "authentication_throttled")
    assert 1 <= int(refused.headers["retry-after"]) <= 30 and problem["retry_after"] == int(refused.headers["retry-after"])
    # a writing request too, before its body is read
    made = await call(app, "/v1/programmes", [b"{}"], key=bad_key(), length=2)
    assert made.status == 429 and made.read == 0
    assert len(lookups) == looked_up  # no database lookup once throttled

    # A key that exists is never refused: cached, no longer cached, or made a moment ago (as
    # after a restart, or on another worker) — it is looked up, as it is a live key.
    assert (await client.get("/v1/me", headers=auth(good))).status_code == 200
    app.state.key_cache.forget()  # as when its seconds are up
    before = len(lookups)
    assert (await client.get("/v1/me", headers=auth(good))).status_code == 200
    assert len(lookups) == before + 1  # looked up as usual: a revocation still takes effect
    # Made a moment ago: its creation is announced, and the throttle reloads the live keys at
    # once (it had waited out their 5 s, refusing the new key 429 meanwhile; an independent review).
    fresh = await make_key(app, "operator")
    assert (await client.get("/v1/me", headers=auth(fresh))).status_code == 200
    # a revoked key is refused as revoked (the live keys are as of their last load, 5 s at most)
    me = (await client.get("/v1/me", headers=auth(fresh))).json()
    revoked = await client.post(f"/v1/api-keys/{me['key_id']}/revoke", json={"reason": "gone"}, headers=auth(good))
    assert revoked.status_code == 200, revoked.text
    assert_problem(await client.get("/v1/me", headers=auth(fresh)), 401, "api_key_revoked")
    # A guess at the secret behind a live key's public part (which key lists, audit events and
    # logs show) is refused as throttled, with no lookup: the list of live prefixes had let a
    # flood of them through to a lookup and a 401 each (an independent review, December 2026).
    prefix = good.rsplit("_", 1)[0]
    before = len(lookups)
    for _ in range(3):
        guessed = await client.get("/v1/me", headers=auth(prefix + "_" + secrets.token_urlsafe(32)))
        assert_problem(guessed, 429, "authentication_throttled")
    assert len(lookups) == before
    assert (await client.get("/v1/me", headers=auth(good))).status_code == 200
    # no key at all is a plain 401, never counted
    assert_problem(await client.get("/v1/me"), 401, "unauthenticated")


@pytest.mark.parametrize("settings", [{"auth_failure_limit": f"{LIMIT}/30 seconds",
                                       "rate_limit_storage": "redis://127.0.0.1:9/0"}], indirect=True)
async def test_when_the_shared_storage_is_down_nothing_is_limited_and_nothing_fails(
    app: Any, client: httpx.AsyncClient
) -> None:
    """Redis unreachable: requests are served (not 500), counted nowhere; a brake, not a gate."""
    good = await make_key(app, "operator")
    for _ in range(LIMIT + 2):
        assert_problem(await client.get("/v1/me", headers=auth(bad_key())), 401, "invalid_api_key")
    response = await client.get("/v1/programmes", headers=auth(good))
    assert response.status_code == 200, response.text
    assert "ratelimit-limit" not in response.headers


async def test_a_throttled_address_is_refused_before_routing_and_held(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once found throttled, the address's unknown keys are answered from memory, each refusal
    held REFUSAL_DELAY_SECONDS (a waiting request costs no CPU)."""
    import asyncio

    from services.voucher.http import throttle, unit_of_work

    held: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(seconds: float, *args: Any) -> Any:
        held.append(seconds)
        return await real_sleep(0)

    monkeypatch.setattr(unit_of_work.asyncio, "sleep", recorded)
    for _ in range(LIMIT):
        assert_problem(await client.get("/v1/me", headers=auth(bad_key())), 401, "invalid_api_key")
    assert_problem(await client.get("/v1/me", headers=auth(bad_key())), 429, "authentication_throttled")
    assert throttle.REFUSAL_DELAY_SECONDS not in held  # found throttled in authentication: answered at once
    refused = await client.get("/v1/nowhere", headers=auth(bad_key()))  # not even routed
    assert_problem(refused, 429, "authentication_throttled")
    assert held.count(throttle.REFUSAL_DELAY_SECONDS) == 1
    assert (await client.get("/metrics", headers=auth(bad_key()))).status_code == 200  # not an API key


async def test_the_same_unknown_key_is_looked_up_once(client: httpx.AsyncClient, lookups: list[str]) -> None:
    key = bad_key()
    for _ in range(3):
        assert_problem(await client.get("/v1/me", headers=auth(key)), 401, "invalid_api_key")
    assert len(lookups) == 1


@pytest.mark.parametrize("settings", [{"auth_failure_limit": ""}], indirect=True)
async def test_switched_off_nothing_is_throttled(client: httpx.AsyncClient) -> None:
    for _ in range(LIMIT + 3):
        assert_problem(await client.get("/v1/me", headers=auth(bad_key())), 401, "invalid_api_key")


def test_the_limit_is_validated() -> None:
    assert Settings(auth_failure_limit="").auth_failure_limit is None
    with pytest.raises(ValueError, match="VOUCHER_AUTH_FAILURE_LIMIT"):
        Settings(auth_failure_limit="lots")


async def test_live_keys_sent_while_the_live_keys_reload_are_not_refused(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reload of the live keys was marked done before it had loaded, so requests
    arriving meanwhile from a throttled address were judged by the old list: a worker just
    started (its list empty) refused live keys 429 (an independent review, December 2026).
    They now wait for the load in flight."""
    import asyncio

    good = await make_key(app, "operator")
    for _ in range(LIMIT):
        assert_problem(await client.get("/v1/me", headers=auth(bad_key())), 401, "invalid_api_key")
    throttle = app.state.database.info["auth_throttle"]
    throttle._live = frozenset()  # noqa: SLF001 - as in a worker just started
    throttle.expire_live()
    app.state.key_cache.forget()
    real, loads = apikeys.live_hashes, []

    async def slow(*args: Any, **kwargs: Any) -> Any:
        loads.append(1)
        await asyncio.sleep(0.2)
        return await real(*args, **kwargs)

    monkeypatch.setattr(apikeys, "live_hashes", slow)
    answers = await asyncio.gather(*(client.get("/v1/me", headers=auth(good)) for _ in range(3)))
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert len(loads) == 1  # one load, waited for by all


async def test_a_revoked_or_expired_key_counts_as_a_failure(app: Any, client: httpx.AsyncClient) -> None:
    """A revoked key is a failed authentication like an unknown one: sent in a loop it was never
    counted, and each was a lookup (an independent review, December 2026). It is still refused
    as revoked, and the address is throttled after LIMIT of them."""
    good = await make_key(app, "operator")
    gone = await make_key(app, "operator")
    me = (await client.get("/v1/me", headers=auth(gone))).json()
    revoked = await client.post(f"/v1/api-keys/{me['key_id']}/revoke", json={"reason": "leaked"}, headers=auth(good))
    assert revoked.status_code == 200, revoked.text
    for _ in range(LIMIT):
        assert_problem(await client.get("/v1/me", headers=auth(gone)), 401, "api_key_revoked")
    assert_problem(await client.get("/v1/me", headers=auth(bad_key())), 429, "authentication_throttled")


async def test_a_key_made_while_the_live_keys_load_is_not_judged_by_that_load() -> None:
    """A request waiting for a load begun before a key was made would be judged by a list that
    lacks the key (a review of the wait, December 2026): it loads again."""
    import asyncio

    from limits import parse
    from limits.aio.storage import MemoryStorage
    from limits.aio.strategies import FixedWindowRateLimiter

    from services.voucher.http.throttle import AuthThrottle

    throttle = AuthThrottle(parse("1/minute"), FixedWindowRateLimiter(MemoryStorage()))
    release, loads = asyncio.Event(), []

    async def before() -> frozenset[str]:
        loads.append("before")
        await release.wait()
        return frozenset({"old-hash"})

    async def after() -> frozenset[str]:
        loads.append("after")
        return frozenset({"old-hash", "new-hash"})

    first = asyncio.create_task(throttle.refresh_live(before))
    await asyncio.sleep(0)
    throttle.expire_live()  # the new key is announced while the first load runs
    second = asyncio.create_task(throttle.refresh_live(after))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, second)
    assert loads == ["before", "after"] and throttle.is_live("new-hash")
