"""When a request may be sent again, and how long to wait first.

A tiny loop in `_transport.py` uses this instead of tenacity: the rules depend on the HTTP
answer (status, Retry-After) and on whether the operation carries an Idempotency-Key, the same
loop is needed sync and async, and tests must be able to replace the sleep. Written out, the
whole policy fits on one screen and the client needs nothing beyond httpx and the stdlib.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

#: Statuses that say "not now", never "no": worth another attempt of a read or a keyed write
#: (a gateway's 504 may come after the request was applied: only those are ever retried).
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})  # 408: the body came too slowly; nothing ran

#: Problem codes worth another attempt of a read or of a write with its Idempotency-Key: the
#: service is still running the first attempt (typically after our side timed out) and will
#: answer the repeat with its answer once that finishes; or the attempt lost a race for a lock
#: (a lock timeout, a deadlock), changed nothing and stored no answer under its key, so the
#: same request again usually goes through.
RETRY_CODES = frozenset({"idempotency_request_in_progress", "concurrent_update"})

#: Failures where the request certainly never reached the server: safe for any method.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

#: Failures after which the request may or may not have been applied (an answer whose body
#: could not be decoded, e.g. a proxy's bad Content-Encoding, included).
MAYBE_SENT = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError, httpx.DecodingError)


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries. `RetryPolicy(max_attempts=1)` (or `retries=None`) disables it.

    Waits grow exponentially (`backoff_base` × 2^n, at most `backoff_max`) with full jitter;
    a Retry-After from the service is a minimum: it is waited for, plus up to a tenth of it
    (at most a second) of jitter, so that clients told the same instant do not all come back
    at it; when it asks for longer than `max_retry_after` the client gives up at once instead
    of hanging. No attempt starts later than `max_elapsed` seconds after the call began: when
    the wait before the next one would end past that, the last answer or failure is final, so a
    call takes at most `max_elapsed` plus one attempt's timeout (None: no bound). `sleep`
    replaces the real sleep (tests pass a function that records the delay); it may return an
    awaitable.
    """

    max_attempts: int = 3
    backoff_base: float = 0.2
    backoff_max: float = 5.0
    max_retry_after: float = 30.0
    max_elapsed: float | None = 60.0
    jitter: bool = True
    sleep: Callable[[float], None | Awaitable[None]] | None = None

    def backoff(self, retry_number: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (retry_number - 1))
        if not self.jitter or ceiling <= 0:
            return max(ceiling, 0.0)
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret

    def after(self, seconds: float) -> float:
        """The wait for a Retry-After of `seconds`: never shorter, with jitter if on."""
        if not self.jitter or seconds <= 0:
            return seconds
        return seconds + random.uniform(0, min(1.0, seconds / 10))  # noqa: S311 - jitter, not a secret

    def allows(self, delay: float, started: float) -> bool:
        """Whether an attempt after `delay` more seconds starts within `max_elapsed` of `started`
        (a `monotonic()` reading taken when the call began)."""
        return self.max_elapsed is None or monotonic() - started + delay <= self.max_elapsed


#: The clock `max_elapsed` is measured with (tests replace it).
monotonic = time.monotonic

NO_RETRIES = RetryPolicy(max_attempts=1)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def problem_code(response: httpx.Response) -> str | None:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def delay_for_response(
    policy: RetryPolicy, response: httpx.Response, retry_number: int, *, retry_safe: bool, started: float
) -> float | None:
    """Seconds to wait before sending again, or None when this answer is final."""
    if retry_number >= policy.max_attempts or not retry_safe:
        return None
    delay = None
    if response.status_code in RETRY_STATUSES:
        after = retry_after_seconds(response)
        if after is None:
            delay = policy.backoff(retry_number)
        elif after <= policy.max_retry_after:
            delay = policy.after(after)
    elif response.status_code == 409 and problem_code(response) in RETRY_CODES:
        delay = policy.backoff(retry_number)
    return delay if delay is not None and policy.allows(delay, started) else None


def delay_for_failure(
    policy: RetryPolicy, error: Exception, retry_number: int, *, retry_safe: bool, started: float
) -> float | None:
    """Seconds to wait before sending again after a transport failure, or None to give up."""
    if retry_number >= policy.max_attempts:
        return None
    if isinstance(error, NOT_SENT) or (retry_safe and isinstance(error, MAYBE_SENT)):
        delay = policy.backoff(retry_number)
        return delay if policy.allows(delay, started) else None
    return None
