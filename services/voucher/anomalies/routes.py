"""Anomaly reports over HTTP, for operators and auditors (scope `audit:read`)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.anomalies import service
from services.voucher.anomalies.repository import Scope as ReportScope
from services.voucher.anomalies.rules import (
    BOUNDS,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    AnomalyRule,
    Thresholds,
)
from services.voucher.anomalies.schemas import AnomalyReport, FindingPublic, Parameters
from services.voucher.apikeys.rules import Scope
from services.voucher.http.auth import require
from services.voucher.http.deps import Now, Session
from services.voucher.http.language import Language
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.instants import Instant
from services.voucher.money import MINOR_UNITS

router = APIRouter(prefix="/v1/audit/anomalies", tags=["audit"])
Auditor = Annotated[Actor, Depends(require(Scope.AUDIT_READ))]
_D = Thresholds()


def _bounded(name: str, description: str) -> Any:
    low, high = BOUNDS[name]
    return Query(ge=low, le=high, description=f"{description} ({low}–{high}; default {getattr(_D, name)}).")


@router.get(
    "",
    operation_id="anomaly_report",
    summary="Anomaly report: redemptions an auditor should look at, each with its evidence and why",
    description=(
        "Operators and auditors (`audit:read`); it changes nothing. "
        "Runs the chosen detectors (all by default) over every value-carrying redemption made in "
        "[`since`, `until`) — captured net of refunds, or held while the hold lives — and, for "
        "shared invoices, over standing claims. Detectors: `related_party` (enterprise and provider "
        "share a legal representative or shareholder as recorded now), `order_splitting` (≥ "
        "`split_min_orders` orders of one pair, each within `split_margin_bps` below the threshold, "
        "within `split_window_days`), `velocity_spike` (a pair's last `velocity_window_days` > "
        "`velocity_factor` × its average window before, with ≥ `velocity_min_windows` earlier active "
        "windows), `expiry_burst` (a voucher's last `expiry_days` before expiry ≥ `expiry_share_bps` "
        "of all it redeemed and ≥ `expiry_min_amount`), `shared_reference` (one order reference or "
        "invoice under two or more enterprises). Explanations follow Accept-Language (zh-CN or English). "
        "Answers `not_found` for an unknown programme and `validation_failed` for a threshold out of bounds."
    ),
    response_model=AnomalyReport,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.ValidationFailed),
)
async def anomaly_report(
    session: Session, now: Now, actor: Auditor, language: Language, response: Response,
    programme_id: Annotated[uuid.UUID | None, Query(description="Only this programme.")] = None,
    since: Annotated[Instant | None, Query(description="Redemptions made at or after this time.")] = None,
    until: Annotated[Instant | None, Query(
        description="Redemptions made before this time; the velocity window ends here (default: now).")] = None,
    rule: Annotated[list[AnomalyRule] | None, Query(description="Detectors to run (repeatable); default all.")] = None,
    split_min_orders: Annotated[int, _bounded("split_min_orders", "Orders that make a split")] = _D.split_min_orders,
    split_margin_bps: Annotated[int, _bounded(
        "split_margin_bps", "How far below the threshold counts as just under, in basis points")] = _D.split_margin_bps,
    split_threshold: Annotated[int | None, Query(
        ge=BOUNDS["split_threshold"][0], le=BOUNDS["split_threshold"][1],
        description=f"The order amount orders stay under, in the unit's minor unit ({MINOR_UNITS}; "
                    "default: each programme's max_per_voucher).")] = None,
    split_window_days: Annotated[int, _bounded("split_window_days", "Days the orders fall within")] = _D.split_window_days,
    velocity_window_days: Annotated[int, _bounded(
        "velocity_window_days", "Length of the recent window and of each earlier one, in days")] = _D.velocity_window_days,
    velocity_factor: Annotated[int, _bounded(
        "velocity_factor", "How many times the earlier average the recent window must exceed")] = _D.velocity_factor,
    velocity_min_windows: Annotated[int, _bounded(
        "velocity_min_windows", "Earlier windows with redemptions needed to judge")] = _D.velocity_min_windows,
    expiry_days: Annotated[int, _bounded("expiry_days", "Days before a voucher's expiry that count")] = _D.expiry_days,
    expiry_share_bps: Annotated[int, _bounded(
        "expiry_share_bps", "Share of the voucher's redeemed total, in basis points")] = _D.expiry_share_bps,
    expiry_min_amount: Annotated[int, _bounded(
        "expiry_min_amount", f"Least amount redeemed in those days, in the unit's minor unit ({MINOR_UNITS})")] = _D.expiry_min_amount,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Most findings returned (default {DEFAULT_LIMIT}).")]
    = DEFAULT_LIMIT,
) -> AnomalyReport:
    rules = list(dict.fromkeys(rule)) if rule else list(AnomalyRule)
    thresholds = Thresholds(
        split_min_orders=split_min_orders, split_margin_bps=split_margin_bps, split_threshold=split_threshold,
        split_window_days=split_window_days, velocity_window_days=velocity_window_days,
        velocity_factor=velocity_factor, velocity_min_windows=velocity_min_windows, expiry_days=expiry_days,
        expiry_share_bps=expiry_share_bps, expiry_min_amount=expiry_min_amount,
    )
    scope = ReportScope(now=now, programme_id=programme_id, since=since, until=until)
    found = await service.report(session, actor, scope=scope, rules=set(rules), thresholds=thresholds, limit=limit)
    response.headers["Content-Language"] = "zh-CN" if language == "zh" else "en"
    return AnomalyReport(
        parameters=Parameters(
            programme_id=programme_id, since=since, until=until, as_of=now,
            rules=[r for r in AnomalyRule if r in rules], limit=limit, **asdict(thresholds),
        ),
        findings=[FindingPublic.of(f, language) for f in found.findings],
        counts=found.counts, truncated=found.truncated,
    )
