"""Where the rate limits and the failed-authentication throttle count: this process's memory
(`memory://`, the default), or a Redis every process shares (`redis://host:6379/0`), so a
service scaled out to N processes still gives each principal one allowance, not N."""

from __future__ import annotations

from limits.aio.storage import MemoryStorage, Storage
from limits.aio.storage.redis import RedisStorage

from services.voucher.settings import Settings


def storage_for(settings: Settings) -> Storage:
    uri = settings.rate_limit_storage
    if uri.startswith(("redis://", "rediss://")):
        # redis-py's asyncio client; keys are prefixed so one Redis can serve several services.
        return RedisStorage("async+" + uri, implementation="redispy", key_prefix="voucher")
    return MemoryStorage()
