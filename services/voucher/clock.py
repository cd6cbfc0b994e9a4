"""Time is injected: services receive `now`, the app holds the clock, tests replace it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class FrozenClock:
    """A clock tests can move by hand."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self.current = start.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current = self.current + timedelta(**delta)
        return self.current


class SandboxClock:
    """Sandbox time (docs/sandbox.md): the real clock plus an offset that only grows. The
    offset lives in the database (`sandbox_clock`), so every process shares one time; each
    request and each worker round reads it first (sandbox/service.py `refresh`), and what this
    object returns between reads is the base clock plus the offset last read."""

    def __init__(self, base: Clock = system_clock) -> None:
        self.base = base
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return self.base() + self.offset

    def real(self) -> datetime:
        return self.base()
