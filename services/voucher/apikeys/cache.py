"""A per-process cache of API-key lookups, so most requests authenticate without a database
round trip (docs/decisions.md, "API-key cache").

What is cached is what authentication reads — the key's scopes, expiry and revocation, and its
principal — for at most `api_key_cache_seconds`. Expiry is still checked against the request's
clock on every hit. Unknown keys are never cached, so a new key works at once.

Revocation and rotation evict the key in the process that made them, and on PostgreSQL
announce it with NOTIFY in the same transaction: every process listens and evicts as the change
commits. While a process's listener is not connected, its cache is off (every request reads
the database), so a revocation cannot be missed; the TTL bounds anything else. A lookup that
started before an eviction is not cached (the generation check), so a read racing a revocation
cannot put the old key back.

SQLite has no NOTIFY, so a revocation through one process cannot reach another's cache: on SQLite
the cache is off in any process that a multiprocessing supervisor started (`uvicorn --workers
N`, `voucher serve --workers N`, services.voucher.serving), and on only in a process serving
alone (`seconds_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.db import dialect_name
from services.voucher.pending import on_commit

log = logging.getLogger(__name__)

#: The NOTIFY channel revocations and rotations are announced on (payload: the key's hash).
CHANNEL = "voucher_api_keys"
#: The payload announcing that a key was made (any other payload is a changed key's hash).
CREATED = "created"
MAX_ENTRIES = 10_000


def seconds_for(configured: float, *, is_sqlite: bool) -> float:
    """How long this process caches a key: `configured`, except 0 on SQLite in a process that is
    one of several workers (started by a multiprocessing supervisor, as uvicorn's is), where a
    revocation made by a sibling could not reach this cache."""
    if is_sqlite and multiprocessing.parent_process() is not None:
        return 0.0
    return configured


@dataclass(frozen=True)
class CachedKey:
    key_id: uuid.UUID
    prefix: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    revoked_at: datetime | None
    principal_id: uuid.UUID
    role: str
    enterprise_id: uuid.UUID | None
    provider_id: uuid.UUID | None


class KeyCache:
    def __init__(self, seconds: float, *, needs_listener: bool) -> None:
        self.seconds = seconds
        self.needs_listener = needs_listener
        self.listening = False
        self.generation = 0
        self._entries: dict[str, tuple[float, CachedKey]] = {}
        #: Called when a key is made (here or in another process): the failed-login throttle
        #: reloads its list of live prefixes, so a key made a moment ago passes it.
        self.on_created: Callable[[], None] | None = None

    @property
    def enabled(self) -> bool:
        return self.seconds > 0 and (self.listening or not self.needs_listener)

    def get(self, secret_hash: str) -> CachedKey | None:
        if not self.enabled:
            return None
        found = self._entries.get(secret_hash)
        if found is None:
            return None
        if found[0] <= time.monotonic():
            self._entries.pop(secret_hash, None)
            return None
        return found[1]

    def put(self, secret_hash: str, entry: CachedKey, generation: int) -> None:
        """Cache a lookup that started at `generation`, unless an eviction happened since."""
        if not self.enabled or generation != self.generation:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[secret_hash] = (time.monotonic() + self.seconds, entry)

    def forget(self, secret_hash: str | None = None) -> None:
        """Evict one key (or all): the next request reads the database."""
        self.generation += 1
        if secret_hash is None:
            self._entries.clear()
        else:
            self._entries.pop(secret_hash, None)

    def created(self) -> None:
        """A key was made: nothing cached changes, but the throttle's list of prefixes is old."""
        if self.on_created is not None:
            self.on_created()

    async def listen(self, connect: Any, retry_seconds: float = 1.0, heartbeat_seconds: float = 10.0) -> None:
        """Evict on every announced change; reconnect when the connection drops. Runs until
        cancelled. `connect` opens an autocommit psycopg AsyncConnection. Between notifications
        the connection is checked every `heartbeat_seconds` (a round trip that must answer
        within a few seconds), so a silently dead connection turns the cache off instead of
        leaving it deaf."""
        while True:
            try:
                connection = await connect()
                async with connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self.forget()  # whatever changed while nobody listened
                    self.listening = True
                    while True:
                        async for note in connection.notifies(timeout=heartbeat_seconds):
                            if note.payload == CREATED:
                                self.created()
                            else:
                                self.forget(note.payload)
                        await asyncio.wait_for(connection.execute("SELECT 1"), timeout=5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: cache off until back
                log.warning("api-key cache listener lost its connection (cache off until it is back): %s: %s",
                            type(exc).__name__, exc)
            finally:
                self.listening = False
                self.forget()
            await asyncio.sleep(retry_seconds)


def cache_of(session: AsyncSession) -> KeyCache | None:
    cache = session.info.get("key_cache")
    return cache if isinstance(cache, KeyCache) else None


async def announce_created(session: AsyncSession) -> None:
    """A key was made: once it commits, this process and (on PostgreSQL) every other one reload
    the live prefixes, so the failed-login throttle lets it through at once (it had refused a
    key made a moment ago for up to 5 s from a throttled address; an independent review)."""
    cache = cache_of(session)
    if cache is not None:
        on_commit(session, cache.created)
    if dialect_name(session) == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": CREATED})


async def announce_change(session: AsyncSession, secret_hash: str) -> None:
    """A key was revoked or rotated: evict it here now and again once the change commits (a
    lookup made in between read the old row), and on PostgreSQL tell every process when the
    transaction commits (NOTIFY is transactional: a rolled-back change says nothing)."""
    cache = cache_of(session)
    if cache is not None:
        cache.forget(secret_hash)
        on_commit(session, lambda: cache.forget(secret_hash))
    if dialect_name(session) == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, :payload)"),
                              {"channel": CHANNEL, "payload": secret_hash})


def listener_conninfo(database_url: str) -> str:
    """The libpq URL of the app's database, rendered by SQLAlchemy, so a password with '/' or
    '@' reaches libpq encoded as it must."""
    from sqlalchemy import make_url

    from services.voucher.settings import normalise_database_url

    return make_url(normalise_database_url(database_url)).set(drivername="postgresql").render_as_string(
        hide_password=False)


@contextlib.asynccontextmanager
async def listening(cache: KeyCache, database_url: str) -> AsyncIterator[None]:
    """Run the cache's listener for the app's lifetime (PostgreSQL with the cache on only)."""
    if not (cache.needs_listener and cache.seconds > 0):
        yield
        return
    import psycopg

    conninfo = listener_conninfo(database_url)

    async def connect() -> Any:
        return await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)

    task = asyncio.create_task(cache.listen(connect), name="api-key-cache-listener")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
