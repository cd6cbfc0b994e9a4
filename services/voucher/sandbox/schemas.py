"""The sandbox clock's request and answer."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.voucher.i18n import msg
from services.voucher.instants import Instant

MAX_DAYS = 3660


class ClockMove(BaseModel):
    """Move the sandbox clock forward: by a duration or to a time, never back."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"advance": "P2D"}, {"advance": "PT31M"}, {"advance_to": "next_month"},
                                        {"to": "2027-01-01T00:00:00+08:00"}]},
    )

    advance: timedelta | None = Field(
        default=None,
        description="How far to move the clock: an ISO 8601 duration in weeks, days, hours, minutes and "
                    f"seconds (`P2D`, `PT31M`, `P1DT12H`), more than zero and at most {MAX_DAYS} days. "
                    "Months and years are not durations of fixed length: move `to` a time instead.",
    )
    to: Instant | None = Field(default=None, description="The time to move the clock to (RFC 3339 with its offset); "
                                                         "not earlier than the clock's time now.")
    advance_to: Literal["next_day", "next_month", "next_year"] | None = Field(
        default=None,
        description="Move to the start of the next calendar day, month or year in the service's time zone "
                    "(`VOUCHER_DEFAULT_TIMEZONE`, Asia/Shanghai): the day, month or year now running is then over "
                    "(settlement periods, cap years).")

    @field_validator("advance", mode="before")
    @classmethod
    def _iso_duration(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not value.startswith("P")):
            raise ValueError(msg("must be an ISO 8601 duration such as P2D or PT30M"))
        if isinstance(value, str) and ("Y" in value or "M" in value.split("T", 1)[0]):
            raise ValueError(msg("months and years have no fixed length: move the clock `to` a time instead"))
        return value

    @field_validator("advance")
    @classmethod
    def _forward(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not timedelta(0) < value <= timedelta(days=MAX_DAYS):
            raise ValueError(msg("must be more than zero and at most {max_days} days", max_days=MAX_DAYS))
        return value

    @model_validator(mode="after")
    def _one(self) -> ClockMove:
        if sum(v is not None for v in (self.advance, self.to, self.advance_to)) != 1:
            raise ValueError(msg("give exactly one of advance, advance_to and to"))
        return self


class ClockState(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sandbox": True,
                    "now": "2026-12-04T02:15:00.123456Z",
                    "real_time": "2026-12-02T02:15:00.123456Z",
                    "offset_seconds": 172800.0,
                    "moved_at": "2026-12-02T02:14:58.000000Z",
                }
            ]
        }
    )

    sandbox: bool = Field(description="Always true: outside sandbox mode these endpoints answer 404.")
    now: datetime = Field(description="The service's time: what every rule, audit event and journal uses.")
    real_time: datetime = Field(description="The machine's time.")
    offset_seconds: float = Field(description="How far the sandbox clock is ahead of real time.")
    moved_at: datetime | None = Field(description="When (in real time) the clock was last moved; null if never.")
