"""`Instant` and `Day`. `Instant`: an aware RFC 3339 time given by a client (a filter bound, an `as_of`, a kept
checkpoint's time), normalised to UTC and kept within years 1970–9000, so arithmetic on it
(a window of days, a conversion to UTC) can never overflow into a 500. Numbers are refused,
not read as Unix times."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator

from services.voucher.i18n import msg

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _bounded(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(msg("must be a time between 1970 and 9000")) from exc
    if not EARLIEST <= utc <= LATEST:
        raise ValueError(msg("must be a time between 1970 and 9000"))
    return utc


def _rfc3339_only(value: object) -> object:
    """A time is written as RFC 3339 text: a number (`0.5`, `1700000000`) is not read as a Unix
    time, which nobody who typed it meant."""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and _looks_numeric(value)):
        raise ValueError(msg("must be an RFC 3339 time with its offset, e.g. 2026-03-01T00:00:00+08:00, not a number"))
    return value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only), AfterValidator(_bounded)]


def _iso_day_only(value: object) -> object:
    """A day is written YYYY-MM-DD: a number (`0`, `1775347200`) is not read as a Unix time."""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and _looks_numeric(value)):
        raise ValueError(msg("must be a day written YYYY-MM-DD, e.g. 2026-03-01, not a number"))
    return value


#: A calendar day given by a client (a contract's dates, an invoice date, a settlement period).
Day = Annotated[date, BeforeValidator(_iso_day_only)]
