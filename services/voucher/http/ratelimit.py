"""Rate limiting per principal, with a limit per role (VOUCHER_RATE_LIMITS).

Fixed windows counted by the `limits` library: a window starts at a principal's first request
and lasts the limit's period (a minute for "600/minute"). Every key of a principal shares its
allowance. Counted in this process's memory by default — with N workers or N replicas each
counts on its own, so a principal may get up to N times the limit — or in a Redis every process
shares (`VOUCHER_RATE_LIMIT_STORAGE=redis://…`, docs/security.md).

The check runs in the authentication dependency, once the key is known and before anything
else happens, so a refused request changes nothing — not even an Idempotency-Key claim.
Headers follow draft-ietf-httpapi-ratelimit-headers-07: every authenticated response carries
`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds until the window resets)
and `RateLimit-Policy` (`600;w=60`); a refusal is 429 `rate_limited` with `Retry-After`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Role
from services.voucher.errors import RateLimited
from services.voucher.http.limits_storage import Breaker, storage_for
from services.voucher.i18n import msg
from services.voucher.settings import Settings

_STATE_KEY = "rate_limit"
log = logging.getLogger("voucher.http")


@dataclass(frozen=True, slots=True)
class Quota:
    """Where one key stands in its current window, as the response headers tell it."""

    limit: int
    window_seconds: int
    remaining: int
    reset_seconds: int
    allowed: bool

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_seconds).encode()),
            (b"ratelimit-policy", f"{self.limit};w={self.window_seconds}".encode()),
        ]
        if not self.allowed:
            out.append((b"retry-after", str(max(self.reset_seconds, 1)).encode()))
        return out


class RateLimiter:
    def __init__(self, limits_by_role: dict[Role, RateLimitItem], storage: Storage | None = None) -> None:
        storage = storage or MemoryStorage()
        self.limits = limits_by_role
        self._strategy = FixedWindowRateLimiter(storage)
        self._breaker = Breaker("rate-limit")

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter | None:
        if not settings.rate_limit_enabled:
            return None
        return cls({Role(role): parse(limit) for role, limit in settings.rate_limits.items()}, storage_for(settings))

    async def hit(self, actor: Actor) -> Quota | None:
        """Count one request of `actor`'s principal against its role's limit: every key of one
        principal shares one allowance (a rotation's two live keys are not two budgets)."""
        item = self.limits[actor.role]
        key = str(actor.principal_id)
        if self._breaker.is_open:
            return None
        try:
            allowed = await self._strategy.hit(item, key)
            reset_at, remaining = await self._strategy.get_window_stats(item, key)
        except Exception:  # the shared storage (Redis) is down: a brake must not stop the service
            self._breaker.trip()
            return None
        return Quota(
            limit=item.amount,
            window_seconds=item.get_expiry(),
            remaining=remaining,
            reset_seconds=max(0, math.ceil(reset_at - time.time())),
            allowed=allowed,
        )


async def check(request: Request, actor: Actor) -> None:
    """Count the request against its principal's limit; refuse it (429) once the window is
    spent. A writing request was counted before its body was read (http/unit_of_work.py)."""
    await count(getattr(request.app.state, "rate_limiter", None), request.scope, actor)


async def count(limiter: RateLimiter | None, scope: Scope, actor: Actor) -> None:
    """Count `scope`'s request once for `actor`; 429 when the window is spent."""
    state = scope.setdefault("state", {})
    if limiter is None or state.get("rate_counted"):
        return
    state["rate_counted"] = True
    quota = await limiter.hit(actor)
    if quota is None:  # not counted (docs/security.md): the request goes on, without the headers
        return
    state[_STATE_KEY] = quota
    if not quota.allowed:
        raise RateLimited(
            msg("this principal's keys may make {limit} requests per {window} s ({role} keys); "
                "retry in {wait} s", limit=quota.limit, window=quota.window_seconds,
                role=actor.role.value, wait=max(quota.reset_seconds, 1)),
            retry_after=max(quota.reset_seconds, 1),
        )


class RateLimitHeaders:
    """Adds the key's quota to the response's headers (including refusals written elsewhere)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_quota(message: Message) -> None:
            if message["type"] == "http.response.start":
                quota: Quota | None = scope.get("state", {}).get(_STATE_KEY)
                if quota is not None:
                    message = {**message, "headers": [*message.get("headers", []), *quota.headers()]}
            await send(message)

        await self.app(scope, receive, with_quota)
