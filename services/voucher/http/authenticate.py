"""Who is calling: the API key in `Authorization: Bearer <key>`, looked up by its SHA-256 in a
short read transaction of its own (not the request's unit of work), so authentication never
holds a write lock; lookups are cached per process (apikeys/cache.py), unknown keys and failing
addresses throttled (http/throttle.py). Used by the unit of work for writing requests, before
their bodies are read (http/gate.py), and by the `current_actor` dependency for the rest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.types import Scope

from services.voucher.actor import Actor
from services.voucher.apikeys import service as apikeys
from services.voucher.apikeys.cache import KeyCache
from services.voucher.apikeys.rules import hash_key
from services.voucher.db import Database
from services.voucher.errors import Unauthenticated
from services.voucher.http.throttle import AuthThrottle, throttled
from services.voucher.i18n import msg


def bearer_credentials(authorization: str | None) -> str | None:
    """The key in `Authorization: Bearer <key>` (the scheme in any case), else None."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


async def authenticate(db: Database, authorization: str | None, now: datetime, address: str) -> Actor:
    """The actor behind the request's `Authorization` header, else 401; 429 for an `address`
    that sent too many unknown keys, unless the key may exist (http/throttle.py)."""
    credentials = bearer_credentials(authorization)
    if credentials is None:
        raise Unauthenticated(
            msg("send an API key as `Authorization: Bearer <key>`"),
        )
    secret_hash = hash_key(credentials)
    cache: KeyCache | None = db.info.get("key_cache")
    key = cache.get(secret_hash) if cache is not None else None
    throttle: AuthThrottle | None = db.info.get("auth_throttle")
    if key is not None:
        return await _actor(key, now, throttle, address, secret_hash)
    if throttle is not None:
        wait = await throttle.blocked_for(address)
        if wait is not None:
            await throttle.refresh_live(lambda: _live_keys(db, now))
            if not throttle.is_live(secret_hash):
                raise throttled(wait)
        if throttle.is_unknown(secret_hash):
            await throttle.failed(address, secret_hash)
            return apikeys.actor_for(None, now)
    generation = cache.generation if cache is not None else 0
    async with db.unit_of_work(write=False) as session:
        key = await apikeys.lookup(session, secret_hash)
    if key is not None and cache is not None:
        cache.put(secret_hash, key, generation)
    if key is None and throttle is not None:
        await throttle.failed(address, secret_hash)
    actor = await _actor(key, now, throttle, address, secret_hash)  # 401 for an unknown, revoked or expired key
    if throttle is not None:
        throttle.learn_live(secret_hash)
    return actor


async def _actor(key: Any, now: datetime, throttle: AuthThrottle | None, address: str, secret_hash: str) -> Actor:
    """The key's actor; a revoked or expired key is a failed authentication of `address` too
    (sent in a loop, it had never been counted; an independent review, December 2026)."""
    try:
        return apikeys.actor_for(key, now)
    except Unauthenticated:
        if key is not None and throttle is not None:
            await throttle.failed(address, secret_hash, unknown=False)
        raise


async def _live_keys(db: Database, now: datetime) -> frozenset[str]:
    async with db.unit_of_work(write=False) as session:
        return await apikeys.live_hashes(session, now)


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def early_refusal(db: Database, scope: Scope, now: datetime) -> Exception | None:
    """429 for a request from an address this process found throttled whose key cannot exist
    (http/throttle.py), decided before routing; None for every other request."""
    throttle: AuthThrottle | None = db.info.get("auth_throttle")
    if throttle is None or not throttle.has_blocked:
        return None
    authorization = None
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            authorization = value.decode("latin-1")
            break
    credentials = bearer_credentials(authorization)
    if credentials is None or scope.get("path") == "/metrics":  # no API key: nothing to throttle
        return None
    cache: KeyCache | None = db.info.get("key_cache")
    secret_hash = hash_key(credentials)
    cached = cache is not None and cache.get(secret_hash) is not None
    refusal = throttle.early_refusal(client_address(scope), secret_hash, cached)
    if refusal is not None:  # a key made since the live keys were loaded must not be refused
        await throttle.refresh_live(lambda: _live_keys(db, now))
        refusal = throttle.early_refusal(client_address(scope), secret_hash, cached)
    return refusal
