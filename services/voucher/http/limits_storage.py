"""Where the rate limits and the failed-authentication throttle count: this process's memory
(`memory://`, the default), or a Redis every process shares (`redis://host:6379/0`), so a
service scaled out to N processes still gives each principal one allowance, not N."""

from __future__ import annotations

import logging
import time

from limits.aio.storage import MemoryStorage, Storage
from limits.aio.storage.redis import RedisStorage

from services.voucher.settings import Settings

log = logging.getLogger("voucher.http")

#: How long connecting to Redis, or one command, may take before the count is skipped: a Redis
#: that accepts connections and never answers had added redis-py's default of 5 s to each of a
#: request's two commands, 10 s on every authenticated request (an independent review).
REDIS_TIMEOUT_SECONDS = 0.25
#: After the storage failed, how long it is left alone before it is tried again.
PAUSE_SECONDS = 5.0


def storage_for(settings: Settings) -> Storage:
    uri = settings.rate_limit_storage
    if uri.startswith(("redis://", "rediss://")):
        # redis-py's asyncio client; keys are prefixed so one Redis can serve several services.
        return RedisStorage("async+" + uri, implementation="redispy", key_prefix="voucher",
                            socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
    return MemoryStorage()


class Breaker:
    """Leaves a failed storage alone for `PAUSE_SECONDS`: meanwhile nothing is counted and no
    request waits on it; then one try tells whether it is back."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._until = 0.0

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._until

    def trip(self) -> None:
        log.warning("%s storage unavailable; not counting for %.0f s", self.what, PAUSE_SECONDS, exc_info=True)
        self._until = time.monotonic() + PAUSE_SECONDS
