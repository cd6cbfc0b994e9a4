"""`Instant`: an aware RFC 3339 time given by a client (a filter bound, an `as_of`, a kept
checkpoint's time), normalised to UTC and kept within years 1970–9000, so arithmetic on it
(a window of days, a conversion to UTC) can never overflow into a 500."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _bounded(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("must be a time between 1970 and 9000") from exc
    if not EARLIEST <= utc <= LATEST:
        raise ValueError("must be a time between 1970 and 9000")
    return utc


Instant = Annotated[AwareDatetime, AfterValidator(_bounded)]
