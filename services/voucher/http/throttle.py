"""Failed authentication, throttled per client address (issue 19, finding 3).

Each request whose API key is unknown counts against its client address (`auth_failure_limit`,
"30/minute" by default, in a fixed window); an address over it is answered 429
`authentication_throttled` with Retry-After before any database lookup, until its window
resets. A key that authenticated in this process within the last hour is never held up (it is
looked up as usual), so a valid client behind the same address keeps working; a flood of
random keys cannot guess one. Unknown key hashes are remembered for a minute (a bounded set),
so the same wrong key sent again costs no lookup either; once this process has found an
address throttled, its requests with unknown keys are refused before routing and the answer
is held for a second (`REFUSAL_DELAY_SECONDS`), so a flood that ignores Retry-After costs
almost no CPU; a new key is a fresh random secret
that no one could have sent before it existed, so remembering unknown ones never refuses a
real key.

The address is the connection's peer as the server sees it; behind a proxy, run the server
with `--proxy-headers --forwarded-allow-ips` so it is the client's (docs/security.md).
The counts live where the rate limits' do (`rate_limit_storage`): in this process, or in Redis
shared by every process.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.strategies import FixedWindowRateLimiter

from services.voucher.errors import AuthenticationThrottled
from services.voucher.http.limits_storage import storage_for
from services.voucher.settings import Settings

#: How long an unknown key's hash is remembered, and how many at most.
UNKNOWN_SECONDS = 60.0
MAX_UNKNOWN = 20_000
#: How long a refusal decided before routing is held before it is sent: a client that ignores
#: Retry-After gets one answer a second per connection, and a waiting coroutine costs no CPU,
#: so a flood cannot take the processor from valid clients.
REFUSAL_DELAY_SECONDS = 1.0
#: How long a key that authenticated passes a throttled address, and how many are remembered.
KNOWN_GOOD_SECONDS = 3600.0
MAX_KNOWN_GOOD = 20_000


def _remember(entries: dict[str, float], secret_hash: str, seconds: float, most: int) -> None:
    now = time.monotonic()
    if len(entries) >= most:
        for stale in [h for h, until in entries.items() if until <= now]:
            del entries[stale]
        if len(entries) >= most:
            entries.clear()
    entries[secret_hash] = now + seconds


def _recalls(entries: dict[str, float], secret_hash: str) -> bool:
    until = entries.get(secret_hash)
    if until is None:
        return False
    if until <= time.monotonic():
        entries.pop(secret_hash, None)
        return False
    return True


def _throttled(wait: int) -> AuthenticationThrottled:
    return AuthenticationThrottled(
        f"too many requests with unknown API keys from this address; retry in {wait} s",
        detail_zh=f"来自该地址的无效 API 密钥请求过多，请在 {wait} 秒后重试",
        retry_after=wait,
    )


class AuthThrottle:
    def __init__(self, limit: RateLimitItem, strategy: FixedWindowRateLimiter) -> None:
        self.limit = limit
        self._strategy = strategy
        self._unknown: dict[str, float] = {}
        self._known_good: dict[str, float] = {}
        #: Addresses this process last found throttled, and until when (time.time()): lets the
        #: unit of work refuse their unknown keys before routing (`early_refusal`).
        self._blocked: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthThrottle | None:
        if not settings.auth_failure_limit:
            return None
        return cls(parse(settings.auth_failure_limit), FixedWindowRateLimiter(storage_for(settings)))

    @property
    def has_blocked(self) -> bool:
        return bool(self._blocked)

    def is_unknown(self, secret_hash: str) -> bool:
        """The hash was looked up recently and no key had it."""
        return _recalls(self._unknown, secret_hash)

    def is_known_good(self, secret_hash: str) -> bool:
        """A key with this hash authenticated here within the hour."""
        return _recalls(self._known_good, secret_hash)

    def succeeded(self, secret_hash: str) -> None:
        _remember(self._known_good, secret_hash, KNOWN_GOOD_SECONDS, MAX_KNOWN_GOOD)

    async def check(self, address: str) -> None:
        """429 when `address` has used up its failures for the window."""
        if await self._strategy.test(self.limit, "auth-failures", address):
            return
        reset_at, _ = await self._strategy.get_window_stats(self.limit, "auth-failures", address)
        if len(self._blocked) >= MAX_UNKNOWN:
            self._blocked.clear()
        self._blocked[address] = reset_at
        raise _throttled(max(1, math.ceil(reset_at - time.time())))

    def early_refusal(self, address: str, secret_hash: str, cached: bool) -> AuthenticationThrottled | None:
        """The refusal for a request from an address this process found throttled, if its key
        is not one that passes (cached, or authenticated within the hour): decided from memory,
        before the request is routed, so a flood costs as little as possible."""
        if not self._blocked:
            return None
        until = self._blocked.get(address)
        if until is None:
            return None
        wait = until - time.time()
        if wait <= 0:
            del self._blocked[address]
            return None
        if cached or self.is_known_good(secret_hash):
            return None
        return _throttled(max(1, math.ceil(wait)))

    async def failed(self, address: str, secret_hash: str) -> None:
        """Count a failure of `address` and remember that no key has `secret_hash`."""
        _remember(self._unknown, secret_hash, UNKNOWN_SECONDS, MAX_UNKNOWN)
        await self._strategy.hit(self.limit, "auth-failures", address)
