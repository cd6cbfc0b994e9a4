"""Usage reconciliation: a provider uploads its own records of a period; the service answers
with what matches our books and what does not, and keeps the report for auditors."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.audit import service as audit
from services.voucher.db import PageRequest
from services.voucher.errors import Forbidden, NotFound, ValidationFailed, field_error
from services.voucher.i18n import msg
from services.voucher.programmes import service as programmes
from services.voucher.settlement.rules import (
    PERIOD_ZONE,
    period_bounds,
    period_problems,
    still_committing,
)
from services.voucher.tables import UsageReconciliation
from services.voucher.usage import repository
from services.voucher.usage import rules as usage_rules
from services.voucher.usage.rules import Record, RecordsInvalid, check_records, compare, parse_csv


async def reconcile(
    session: AsyncSession, actor: Actor, *, programme_id: uuid.UUID, period_start: date, period_end: date,
    records: list[dict[str, Any]] | None, csv_text: str | None, now: datetime,
) -> UsageReconciliation:
    if actor.provider_id is None:
        raise Forbidden(msg("a provider reconciles its own usage, with its own key"))
    today = now.astimezone(ZoneInfo(PERIOD_ZONE)).date()
    problems = [(f, m) for f, m in period_problems(period_start, period_end, today)]
    if problems:
        raise ValidationFailed([field_error(f, m) for f, m in problems])
    starts_at, ends_at = period_bounds(period_start, period_end)
    # As a settlement does: a capture begun before the period's end may commit after it, and
    # the kept report would call that order missing from our books (a review, December 2026).
    committing = still_committing(ends_at, now, reconciling=True)
    if committing is not None:
        raise ValidationFailed([field_error("period_end", committing)])
    programme = await programmes.get_programme(session, actor, programme_id)
    try:
        if csv_text is not None:
            theirs, where = parse_csv(csv_text), "/csv"
            source = csv_text.encode("utf-8")
        else:
            theirs = [Record(r["order_reference"], r["amount"], r["subsidy"]) for r in records or []]
            where = "/records"
            source = json.dumps(records, sort_keys=True, separators=(",", ":")).encode("utf-8")
        check_records(theirs, where)
    except RecordsInvalid as exc:
        raise ValidationFailed([field_error(p, m, "usage_record") for p, m in exc.errors[:100]]) from exc
    # At most one more of our orders than an upload may hold: a period with more could never be
    # matched by one file, and its report (kept twice, with the Idempotency-Key's answer) had
    # grown with every order of up to a year, however small the upload (an independent review).
    limit = usage_rules.MAX_RECORDS
    ours = [Record(*row) for row in await repository.our_orders(session, actor.provider_id, programme.id,
                                                                 starts_at, ends_at, limit=limit + 1)]
    if len(ours) > limit:
        raise ValidationFailed([field_error("period_end", msg(
            "you have more than {count} orders captured in this period, more than one upload can hold; reconcile "
            "a shorter period", count=format(limit, ",")))])
    result = compare(theirs, ours)
    report = UsageReconciliation(
        provider_id=actor.provider_id, programme_id=programme.id, period_start=period_start, period_end=period_end,
        source_format="csv" if csv_text is not None else "json", source_sha256=hashlib.sha256(source).hexdigest(),
        record_count=len(theirs), summary=result["summary"],
        report={k: v for k, v in result.items() if k != "summary"}, principal_id=actor.principal_id, created_at=now,
    )
    await repository.add(session, report)
    await audit.record(
        session, "usage_reconciliation.created", "usage_reconciliation", report.id, now=now,
        after={**audit.fields(report, "period_start period_end source_format source_sha256 record_count"),
               "summary": report.summary},
        programme_id=programme.id, provider_id=actor.provider_id,
    )
    return report


async def get(session: AsyncSession, actor: Actor, report_id: uuid.UUID) -> UsageReconciliation:
    found = await repository.get(session, actor, report_id)
    if found is None:
        raise NotFound(msg("no usage reconciliation with id {report_id}", report_id=report_id))
    return found


async def list_reports(
    session: AsyncSession, actor: Actor, page: PageRequest, *, programme_id: uuid.UUID | None
) -> tuple[list[UsageReconciliation], str | None]:
    return await repository.list_page(session, actor, page, programme_id=programme_id)
