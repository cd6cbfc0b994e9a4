"""Failed authentication, throttled per client address (issue 19, finding 3).

Each request whose API key is unknown counts against its client address (`auth_failure_limit`,
"30/minute" by default, in a fixed window); an address over it is answered 429
`authentication_throttled` with Retry-After before any database lookup, until its window
resets. A key found in the key cache is never held up, so a valid client behind the same
address keeps working. Unknown key hashes are remembered for a minute (a bounded set), so the
same wrong key sent again costs no lookup either; a new key is a fresh random secret that no
one could have sent before it existed, so remembering unknown ones never refuses a real key.

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


class AuthThrottle:
    def __init__(self, limit: RateLimitItem, strategy: FixedWindowRateLimiter) -> None:
        self.limit = limit
        self._strategy = strategy
        self._unknown: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthThrottle | None:
        if not settings.auth_failure_limit:
            return None
        return cls(parse(settings.auth_failure_limit), FixedWindowRateLimiter(storage_for(settings)))

    def is_unknown(self, secret_hash: str) -> bool:
        """The hash was looked up recently and no key had it."""
        until = self._unknown.get(secret_hash)
        if until is None:
            return False
        if until <= time.monotonic():
            self._unknown.pop(secret_hash, None)
            return False
        return True

    async def check(self, address: str) -> None:
        """429 when `address` has used up its failures for the window."""
        if await self._strategy.test(self.limit, "auth-failures", address):
            return
        reset_at, _ = await self._strategy.get_window_stats(self.limit, "auth-failures", address)
        wait = max(1, math.ceil(reset_at - time.time()))
        raise AuthenticationThrottled(
            f"too many requests with unknown API keys from this address; retry in {wait} s",
            detail_zh=f"来自该地址的无效 API 密钥请求过多，请在 {wait} 秒后重试",
            retry_after=wait,
        )

    async def failed(self, address: str, secret_hash: str) -> None:
        """Count a failure of `address` and remember that no key has `secret_hash`."""
        if len(self._unknown) >= MAX_UNKNOWN:
            now = time.monotonic()
            self._unknown = {h: t for h, t in self._unknown.items() if t > now}
            if len(self._unknown) >= MAX_UNKNOWN:
                self._unknown.clear()
        self._unknown[secret_hash] = time.monotonic() + UNKNOWN_SECONDS
        await self._strategy.hit(self.limit, "auth-failures", address)
