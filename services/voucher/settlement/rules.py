"""The settlement lifecycle and its period. Pure: stdlib only.

    draft → submitted (the provider confirms) | cancelled
    submitted → approved (operator) | disputed (provider, with a reason) | cancelled
    disputed → submitted (operator resolves, with a note)
    approved → paid (operator, with the payment reference): immutable from then on

Lines are events: each capture (+captured amount) and each refund (−amount) of the provider's
redemptions. A refund follows its capture: it is settled with it, or — when the capture was
settled already — as an adjustment in a later settlement.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from services.voucher.errors import InvalidTransition
from services.voucher.i18n import Message, Status, msg


class SettlementStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    DISPUTED = "disputed"
    APPROVED = "approved"
    PAID = "paid"
    CANCELLED = "cancelled"


class ItemKind(StrEnum):
    CAPTURE = "capture"
    REFUND = "refund"


S = SettlementStatus
TRANSITIONS: dict[SettlementStatus, frozenset[SettlementStatus]] = {
    S.DRAFT: frozenset({S.SUBMITTED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.APPROVED, S.DISPUTED, S.CANCELLED}),
    S.DISPUTED: frozenset({S.SUBMITTED}),
    S.APPROVED: frozenset({S.PAID}),
    S.PAID: frozenset(),
    S.CANCELLED: frozenset(),
}

#: The zone settlement periods are counted in, as programmes publish them.
PERIOD_ZONE = "Asia/Shanghai"
#: A settlement covers at most this many days (a quarter and then some).
MAX_PERIOD_DAYS = 366
#: No programme of this kind predates it; it also keeps every period convertible to UTC.
EARLIEST_DAY = date(2000, 1, 1)
#: How long after a period ends it may be settled. A capture stamps `captured_at` with the
#: instant its request began, before it waits on any lock, and a settlement reads the captures
#: committed when it starts: one begun before the period's end and committed after its
#: settlement would be left out of it. Every statement is bounded (`statement_timeout` 60 s,
#: `lock_timeout` 10 s) and a capture sends three at most, so five minutes covers every request
#: that is not stalled; the reconciliation shows one that was (`settlement_differences`).
SETTLE_AFTER = timedelta(minutes=5)


def still_committing(ends_at: datetime, now: datetime, *, reconciling: bool = False) -> Message | None:
    """Why a period that ended less than `SETTLE_AFTER` ago cannot be read as whole yet — to be
    settled, or (`reconciling`) to have a provider's usage compared with it — or None."""
    if now >= ends_at + SETTLE_AFTER:
        return None
    at = (ends_at + SETTLE_AFTER).astimezone(ZoneInfo(PERIOD_ZONE)).strftime("%Y-%m-%d %H:%M")
    if reconciling:
        return msg("the period has only just ended, and captures begun before its end may still be committing: "
                   "its usage can be reconciled from {at} ({zone})", at=at, zone=PERIOD_ZONE)
    return msg("the period has only just ended, and captures begun before its end may still be committing: it can "
               "be settled from {at} ({zone})", at=at, zone=PERIOD_ZONE)


def check_transition(current: SettlementStatus, target: SettlementStatus) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(
            msg("a settlement that is {current} cannot become {target}", current=Status(current),
                target=Status(target)),
            current_status=current.value,
            allowed=sorted(s.value for s in TRANSITIONS[current]),
        )


def period_bounds(first_day: date, last_day: date, zone: str = PERIOD_ZONE) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the days `first_day`..`last_day` inclusive, in `zone`."""
    tz = ZoneInfo(zone)
    start = datetime.combine(first_day, time(), tz).astimezone(UTC)
    end = datetime.combine(last_day + timedelta(days=1), time(), tz).astimezone(UTC)
    return start, end


def previous_month(now: datetime, zone: str = PERIOD_ZONE) -> tuple[date, date]:
    """The first and last day of the calendar month before `now`'s, in `zone`."""
    last = now.astimezone(ZoneInfo(zone)).date().replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


def month_after(first_day: date) -> date:
    """The first day of the calendar month after the one starting on `first_day`."""
    return (first_day + timedelta(days=31)).replace(day=1)


def month_part(month: date, first_day: date, last_day: date) -> tuple[date, date]:
    """The days from `first_day` to `last_day` that fall in the calendar month starting on `month`."""
    return max(first_day, month), min(last_day, month_after(month) - timedelta(days=1))


def settle_window(first_capture: datetime, now: datetime, zone: str = PERIOD_ZONE) -> tuple[date, date] | None:
    """The days the schedule may have to settle, however long it did not run: from the first day
    of the month `first_capture` fell in (in `zone`) to the last day of the last month that
    ended at least `SETTLE_AFTER` before `now`; None while that first month has not."""
    first = first_capture.astimezone(ZoneInfo(zone)).date().replace(day=1)
    _, last = previous_month(now, zone)
    if now < period_bounds(last, last, zone)[1] + SETTLE_AFTER:  # it only just ended: the one before
        last = last.replace(day=1) - timedelta(days=1)
    return (first, last) if last >= first else None


def uncovered(first: date, last: date, periods: Iterable[tuple[date, date]]) -> list[tuple[date, date]]:
    """The runs of days from `first` to `last` (inclusive) that no period (start, end inclusive)
    covers, oldest first."""
    runs: list[tuple[date, date]] = []
    day = first
    for start, end in sorted(periods):
        if end < day:
            continue
        if start > last:
            break
        if start > day:
            runs.append((day, start - timedelta(days=1)))
        day = max(day, end + timedelta(days=1))
        if day > last:
            return runs
    if day <= last:
        runs.append((day, last))
    return runs


def period_problems(first_day: date, last_day: date, today: date) -> list[tuple[str, Message]]:
    """(field, message) for a period that cannot be settled."""
    problems: list[tuple[str, Message]] = []
    if first_day < EARLIEST_DAY:
        problems.append(("period_start", msg("periods start on {earliest} or later", earliest=EARLIEST_DAY)))
        return problems
    if last_day < first_day:
        problems.append(("period_end", msg("the period ends before it starts")))
    elif (last_day - first_day).days >= MAX_PERIOD_DAYS:
        problems.append(("period_end", msg("a settlement covers at most {days} days", days=MAX_PERIOD_DAYS)))
    if last_day >= today:
        problems.append(("period_end", msg("only days that are over can be settled "
                                           "(the period must end before today)")))
    return problems


def payment_day_problem(paid_on: date, approved_at: datetime | None, now: datetime) -> Message | None:
    """What is wrong with the day a payment is recorded as made, if anything (days in
    Asia/Shanghai): a settlement or a claim is paid once it is approved, so a statement never
    shows a payment older than its approval (a review recorded one on 1999-01-01), and a payment
    is recorded once it is made, never ahead of the day (a review recorded one on 2099-12-31)."""
    zone = ZoneInfo(PERIOD_ZONE)
    today = now.astimezone(zone).date()
    if paid_on > today:
        return msg("the payment day {paid_on} is after today ({today}, Beijing time): record a payment once it is made",
                   paid_on=paid_on, today=today)
    if approved_at is not None and paid_on < approved_at.astimezone(zone).date():
        return msg("the payment day {paid_on} is before the approval ({approved}, Beijing time)",
                   paid_on=paid_on, approved=approved_at.astimezone(zone).date())
    return None
