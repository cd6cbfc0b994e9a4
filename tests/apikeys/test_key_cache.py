"""The per-process API-key cache: it serves repeat requests without a lookup, yet a revocation
or rotation is refused at once — in the process that made it, and on PostgreSQL in every other
process too (NOTIFY) — and expiry is still checked on every request."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from services.voucher.apikeys.cache import CachedKey, KeyCache
from services.voucher.db import Database
from services.voucher.main import create_app
from services.voucher.tables import ApiKey
from tests.conftest import ENGINE
from tests.live_server import LiveServer
from tests.support import auth, make_key

KEYS = "/v1/api-keys"


def _entry() -> CachedKey:
    return CachedKey(key_id=uuid.uuid4(), prefix="vk_x", scopes=(), expires_at=None, revoked_at=None,
                     principal_id=uuid.uuid4(), role="operator", enterprise_id=None, provider_id=None)


def test_a_lookup_that_raced_an_eviction_is_not_cached() -> None:
    cache = KeyCache(5, needs_listener=False)
    generation = cache.generation
    cache.forget("h")  # a revocation lands while the lookup is in flight
    cache.put("h", _entry(), generation)
    assert cache.get("h") is None
    cache.put("h", entry := _entry(), cache.generation)
    assert cache.get("h") is entry


def test_without_its_listener_the_cache_is_off() -> None:
    cache = KeyCache(5, needs_listener=True)
    cache.put("h", _entry(), cache.generation)
    assert cache.get("h") is None and not cache.enabled
    cache.listening = True
    cache.put("h", _entry(), cache.generation)
    assert cache.get("h") is not None
    assert KeyCache(0, needs_listener=False).enabled is False


async def _revoke_behind_its_back(app: Any, key_id: str) -> None:
    """Revoke in the database directly, as another process would, with no announcement."""
    other = Database(app.state.database.settings)
    try:
        async with other.unit_of_work() as session:
            await session.execute(update(ApiKey).where(ApiKey.id == uuid.UUID(key_id))
                                  .values(revoked_at=app.state.clock(), revoked_reason="elsewhere"))
    finally:
        await other.dispose()


async def _new_key(client: httpx.AsyncClient, operator_key: str) -> dict[str, Any]:
    created = await client.post(KEYS, json={"role": "auditor", "name": "cached", "principal_name": "cache test"},
                                headers=auth(operator_key))
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


@pytest.mark.skipif(ENGINE != "sqlite", reason="on PostgreSQL the in-process test app runs without its listener")
async def test_a_cached_key_is_refused_at_once_when_revoked_here(
    app: Any, client: httpx.AsyncClient, operator_key: str
) -> None:
    key = await _new_key(client, operator_key)
    assert (await client.get("/v1/me", headers=auth(key["key"]))).status_code == 200
    # Cached: a change behind the cache's back is not seen until the entry ages out ...
    await _revoke_behind_its_back(app, key["id"])
    assert (await client.get("/v1/me", headers=auth(key["key"]))).status_code == 200
    # ... but a revocation through this process evicts it at once.
    other = await _new_key(client, operator_key)
    assert (await client.get("/v1/me", headers=auth(other["key"]))).status_code == 200
    revoked = await client.post(f"{KEYS}/{other['id']}/revoke", json={"reason": "lost"}, headers=auth(operator_key))
    assert revoked.status_code == 200, revoked.text
    refused = await client.get("/v1/me", headers=auth(other["key"]))
    assert refused.status_code == 401 and refused.json()["code"] == "api_key_revoked"


async def test_rotation_without_grace_stops_the_cached_old_key_at_once(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    key = await _new_key(client, operator_key)
    assert (await client.get("/v1/me", headers=auth(key["key"]))).status_code == 200
    rotated = await client.post(f"{KEYS}/{key['id']}/rotate", json={"grace_seconds": 0}, headers=auth(operator_key))
    assert rotated.status_code == 201, rotated.text
    assert (await client.get("/v1/me", headers=auth(key["key"]))).status_code == 401
    assert (await client.get("/v1/me", headers=auth(rotated.json()["key"]))).status_code == 200


async def test_expiry_is_checked_on_every_request_even_when_cached(app: Any, client: httpx.AsyncClient,
                                                                   clock: Any) -> None:
    secret = await make_key(app, "auditor", expires_at=clock() + timedelta(seconds=30))
    assert (await client.get("/v1/me", headers=auth(secret))).status_code == 200
    clock.advance(seconds=31)
    refused = await client.get("/v1/me", headers=auth(secret))
    assert refused.status_code == 401 and refused.json()["code"] == "api_key_expired"


async def test_with_the_cache_off_another_process_revocation_is_seen_at_once(
    settings: Any, clock: Any
) -> None:
    app = create_app(settings.model_copy(update={"api_key_cache_seconds": 0}), clock=clock)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            operator = await make_key(app, "operator")
            key = await _new_key(client, operator)
            assert (await client.get("/v1/me", headers=auth(key["key"]))).status_code == 200
            await _revoke_behind_its_back(app, key["id"])
            assert (await client.get("/v1/me", headers=auth(key["key"]))).status_code == 401
    finally:
        await app.state.database.dispose()


@pytest.mark.skipif(ENGINE != "postgresql", reason="the cross-process broadcast is PostgreSQL's NOTIFY")
async def test_a_revocation_in_one_process_evicts_the_key_in_every_other(settings: Any, clock: Any) -> None:
    """Two app instances, each with its listener running (their lifespans): a key cached by B
    is refused by B as soon as A's revocation commits."""
    first, second = create_app(settings, clock=clock), create_app(settings, clock=clock)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        for app in (first, second):
            for _ in range(100):
                if app.state.key_cache.listening:
                    break
                await asyncio.sleep(0.05)
            assert app.state.key_cache.listening
        a = httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://a")
        b = httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://b")
        async with a, b:
            operator = await make_key(first, "operator")
            key = await _new_key(a, operator)
            assert (await b.get("/v1/me", headers=auth(key["key"]))).status_code == 200
            # B serves it from its cache now: a silent change is not seen ...
            await _revoke_behind_its_back(second, key["id"])
            assert (await b.get("/v1/me", headers=auth(key["key"]))).status_code == 200
            # ... an announced one is, as soon as it commits.
            other = await _new_key(a, operator)
            assert (await b.get("/v1/me", headers=auth(other["key"]))).status_code == 200
            revoked = await a.post(f"{KEYS}/{other['id']}/revoke", json={"reason": "lost"}, headers=auth(operator))
            assert revoked.status_code == 200, revoked.text
            statuses = []
            for _ in range(40):
                statuses.append((await b.get("/v1/me", headers=auth(other["key"]))).status_code)
                if statuses[-1] == 401:
                    break
                await asyncio.sleep(0.05)
            assert statuses[-1] == 401, statuses


async def test_a_lookup_between_the_revocation_and_its_commit_is_evicted_at_commit(app: Any) -> None:
    """A request that read the key after the revocation's first eviction but before its commit
    saw the old row; the eviction at commit throws that entry away."""
    from services.voucher.apikeys.cache import announce_change

    cache: KeyCache = app.state.key_cache
    cache.listening = True  # as its listener would be on PostgreSQL
    async with app.state.database.unit_of_work() as session:
        await announce_change(session, "the-hash")
        cache.put("the-hash", _entry(), cache.generation)  # the racing lookup, after the first eviction
        assert cache.get("the-hash") is not None
    assert cache.get("the-hash") is None


async def test_a_rolled_back_revocation_evicts_nothing_more(app: Any) -> None:
    from services.voucher.apikeys.cache import announce_change

    cache: KeyCache = app.state.key_cache
    cache.listening = True
    with pytest.raises(RuntimeError):
        async with app.state.database.unit_of_work() as session:
            await announce_change(session, "the-hash")
            raise RuntimeError
    cache.put("the-hash", entry := _entry(), cache.generation)
    assert cache.get("the-hash") is entry


def test_the_listener_url_keeps_awkward_passwords_whole() -> None:
    import psycopg

    from services.voucher.apikeys.cache import listener_conninfo

    url = "postgresql+psycopg://voucher:p%2Fss%40x@db.internal:6432/vouchers?sslmode=require"
    parsed = psycopg.conninfo.conninfo_to_dict(listener_conninfo(url))
    assert parsed["password"] == "p/ss@x" and parsed["host"] == "db.internal"
    assert parsed["port"] == "6432" and parsed["dbname"] == "vouchers" and parsed["sslmode"] == "require"


class _DeadConnection:
    """Answers LISTEN, delivers nothing, then fails its heartbeat: a connection that died quietly."""

    async def __aenter__(self) -> _DeadConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def execute(self, query: str) -> None:
        if query.startswith("SELECT"):
            raise OSError("connection timed out")

    async def notifies(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 - psycopg's signature
        await asyncio.sleep(timeout or 0)
        return
        yield  # an async generator that yields nothing


async def test_a_listener_whose_connection_dies_quietly_turns_the_cache_off() -> None:
    cache = KeyCache(5, needs_listener=True)
    seen: list[bool] = []

    async def connect() -> _DeadConnection:
        seen.append(cache.listening)
        return _DeadConnection()

    task = asyncio.create_task(cache.listen(connect, retry_seconds=0.05, heartbeat_seconds=0.05))
    for _ in range(100):
        if len(seen) >= 2:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(seen) >= 2 and seen[1] is False  # the heartbeat failed: off, then a reconnect
    assert not cache.listening


@pytest.mark.skipif(ENGINE != "sqlite", reason="on PostgreSQL every worker's cache hears the revocation (NOTIFY)")
async def test_on_sqlite_a_key_revoked_through_one_worker_is_refused_by_every_worker(
        app: Any, database_url: str) -> None:
    """A real server of two workers started as services.voucher.serving starts them (as plain
    `uvicorn --workers 2` does), not through `voucher serve`: SQLite has no NOTIFY, so neither
    worker may keep a key cached. Every request opens a connection of its own, which the kernel
    hands to either worker."""
    operator, victim = await make_key(app, "operator"), await make_key(app, "auditor")

    async def status(path: str, key: str) -> int:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as one:
            return (await one.get(path, headers=auth(key))).status_code

    with LiveServer(database_url, workers=2) as server:
        assert {await status("/v1/me", victim) for _ in range(40)} == {200}  # cached in both, were there a cache
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as one:
            me = (await one.get("/v1/me", headers=auth(victim))).json()
            revoked = await one.post(f"{KEYS}/{me['key_id']}/revoke", json={"reason": "leaked"},
                                     headers=auth(operator))
            assert revoked.status_code == 200, revoked.text
        assert {await status("/v1/programmes", victim) for _ in range(40)} == {401}


def test_the_cache_is_off_on_sqlite_in_a_worker_a_supervisor_started() -> None:
    from services.voucher.apikeys.cache import seconds_for

    assert seconds_for(5, is_sqlite=True) == 5 and seconds_for(5, is_sqlite=False) == 5
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(seconds_for, (5.0,), {"is_sqlite": True}) == 0
        assert pool.apply(seconds_for, (5.0,), {"is_sqlite": False}) == 5
