"""Failed authentication, throttled per client address (issue 19, finding 3).

Each request whose API key is unknown, revoked or expired counts against its client address
(`auth_failure_limit`,
"30/minute" by default, in a fixed window; IPv6 addresses by their /64, which one client
holds whole). An address over it is answered 429 `authentication_throttled` with Retry-After,
until its window resets — but **a key that exists is never refused**: a throttled request is
looked up only if its key is one of the live keys, whose SHA-256 each process keeps in memory
(reloaded at most every few seconds, and only while some address is throttled). A flood of
random keys matches none, nor does one that guesses the secret behind a live key's public
part (which is not secret: it is in key lists, audit events and logs, and a list of those
had let such a flood past the throttle to a lookup each; an independent review, December
2026); a valid client behind the same address — after a restart, on another worker, with a
key made a second ago — is looked up as usual. Unknown key hashes are remembered for a
minute, so the same wrong key costs one lookup. Once this process has found an address
throttled, its requests with keys that are not live are refused before routing and the
answer is held for a second (`REFUSAL_DELAY_SECONDS`): a flood that ignores Retry-After costs
almost no CPU.

The counts live where the rate limits' do (`rate_limit_storage`): this process, or a Redis
shared by every process. If that storage fails, nothing is throttled (logged): the throttle
is a brake, and must not take the service down with it.

The address is the connection's peer as the server sees it; behind a proxy, serve with
`voucher serve --forwarded-allow-ips <proxy>` so it is the client's (docs/security.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable

from limits import RateLimitItem, parse
from limits.aio.strategies import FixedWindowRateLimiter

from services.voucher.errors import AuthenticationThrottled
from services.voucher.http.limits_storage import Breaker, storage_for
from services.voucher.i18n import msg
from services.voucher.settings import Settings

log = logging.getLogger("voucher.http")

#: How long an unknown key's hash is remembered, and how many at most.
UNKNOWN_SECONDS = 60.0
MAX_UNKNOWN = 20_000
#: How long a refusal decided before routing is held before it is sent: a client that ignores
#: Retry-After gets one answer a second per connection, and a waiting coroutine costs no CPU,
#: so a flood cannot take the processor from valid clients.
REFUSAL_DELAY_SECONDS = 1.0
#: The live keys' hashes are reloaded at most this often (while an address is throttled).
LIVE_SECONDS = 5.0
_KEY = "auth-failures"


def throttled(wait: int) -> AuthenticationThrottled:
    return AuthenticationThrottled(
        msg("too many requests with unknown, revoked or expired API keys from this address; retry in {wait} s",
            wait=wait),
        retry_after=wait,
    )


def address_key(address: str) -> str:
    """What failures are counted by: the address, an IPv6 one by its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class AuthThrottle:
    def __init__(self, limit: RateLimitItem, strategy: FixedWindowRateLimiter) -> None:
        self.limit = limit
        self._strategy = strategy
        self._breaker = Breaker("failed-login throttle")
        self._unknown: dict[str, float] = {}
        #: Addresses this process last found throttled, and until when (time.time()).
        self._blocked: dict[str, float] = {}
        #: The SHA-256 of every live key, as of the last load (and of keys seen working since).
        self._live: frozenset[str] = frozenset()
        self._live_at = -LIVE_SECONDS
        self._loading: asyncio.Future[frozenset[str]] | None = None
        #: Bumped when a key is made (`expire_live`): a load begun before it may lack the key.
        self._generation = 0
        self._loading_generation = 0

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
        until = self._unknown.get(secret_hash)
        if until is None:
            return False
        if until <= time.monotonic():
            self._unknown.pop(secret_hash, None)
            return False
        return True

    def is_live(self, secret_hash: str) -> bool:
        """The key is a live one (as of the last load)."""
        return secret_hash in self._live

    async def refresh_live(self, load: Callable[[], Awaitable[frozenset[str]]]) -> None:
        """Reload the live keys' hashes, unless they were loaded in the last few seconds; a
        request arriving while they load waits for that load. It had been judged by the list
        before it (a worker just started: empty), and a live key was refused 429 (an independent
        review, December 2026)."""
        while (self._loading is not None and not self._loading.done()
               and self._loading.get_loop() is asyncio.get_running_loop()):
            began = self._loading_generation
            await asyncio.shield(self._loading)
            if self._generation == began:
                return
            # a key was made while it loaded: that load may lack it, so load again (below)
        if time.monotonic() - self._live_at >= LIVE_SECONDS:
            self._live_at = time.monotonic()
            self._loading_generation = self._generation
            loading = asyncio.ensure_future(load())

            def loaded(task: asyncio.Future[frozenset[str]]) -> None:  # before any waiter resumes
                if not task.cancelled() and task.exception() is None:
                    self._live = task.result()

            loading.add_done_callback(loaded)
            self._loading = loading
            await asyncio.shield(loading)

    def expire_live(self) -> None:
        """A key was made or changed somewhere: the next check reloads the live keys."""
        self._live_at = -LIVE_SECONDS
        self._generation += 1

    def learn_live(self, secret_hash: str) -> None:
        """A key that authenticated is live (until the next load says otherwise)."""
        if secret_hash not in self._live:
            self._live = self._live | {secret_hash}

    async def blocked_for(self, address: str) -> int | None:
        """Seconds until `address` may fail again, if it has used up its failures."""
        key = address_key(address)
        if self._breaker.is_open:
            return None
        try:
            if await self._strategy.test(self.limit, _KEY, key):
                return None
            reset_at, _ = await self._strategy.get_window_stats(self.limit, _KEY, key)
        except Exception:  # the shared storage is down: throttle nothing rather than fail
            self._breaker.trip()
            return None
        if len(self._blocked) >= MAX_UNKNOWN:
            self._blocked.clear()
        self._blocked[key] = reset_at
        return max(1, math.ceil(reset_at - time.time()))

    def early_refusal(self, address: str, secret_hash: str, cached: bool) -> AuthenticationThrottled | None:
        """The refusal for a request from an address this process found throttled, unless its
        key passes (cached, or live): decided from memory, before routing."""
        if not self._blocked:
            return None
        key = address_key(address)
        until = self._blocked.get(key)
        if until is None:
            return None
        wait = until - time.time()
        if wait <= 0:
            del self._blocked[key]
            return None
        if cached or self.is_live(secret_hash):
            return None
        return throttled(max(1, math.ceil(wait)))

    async def failed(self, address: str, secret_hash: str, *, unknown: bool = True) -> None:
        """Count a failure of `address` and (`unknown`) remember that no key has `secret_hash`:
        a revoked or expired key is counted but not remembered, so it is still refused as what
        it is."""
        if not unknown:
            await self._hit(address)
            return
        now = time.monotonic()
        if len(self._unknown) >= MAX_UNKNOWN:
            self._unknown = {h: t for h, t in self._unknown.items() if t > now}
            if len(self._unknown) >= MAX_UNKNOWN:
                self._unknown.clear()
        self._unknown[secret_hash] = now + UNKNOWN_SECONDS
        await self._hit(address)

    async def _hit(self, address: str) -> None:
        if self._breaker.is_open:
            return
        try:
            await self._strategy.hit(self.limit, _KEY, address_key(address))
        except Exception:
            self._breaker.trip()
