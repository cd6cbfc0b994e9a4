"""Anomaly reports for auditors: run the chosen detectors (rules.py) over the redemptions and
claims in scope (repository.py). Reads only; nothing is written, not even an audit event."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Hashable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.anomalies import repository
from services.voucher.anomalies.repository import Scope
from services.voucher.anomalies.rules import (
    AnomalyRule,
    Finding,
    Redeemed,
    Thresholds,
    expiry_burst,
    order_splitting,
    range_problems,
    related_party,
    shared_invoice,
    shared_parties,
    shared_reference,
    split_band,
    velocity_spike,
)
from services.voucher.errors import Forbidden, NotFound, ValidationFailed, field_error
from services.voucher.i18n import msg

T = TypeVar("T")


@dataclass(frozen=True)
class Report:
    findings: list[Finding]
    #: Findings per rule before the limit was applied.
    counts: dict[str, int]
    truncated: bool


#: How many enterprise–provider pairs one query of the related-party rule names.
PAIRS_PER_QUERY = 200


async def _groups(rows: AsyncIterator[T], key: Callable[[T], Hashable]) -> AsyncIterator[list[T]]:
    """Consecutive rows with the same key, one group at a time (rows come sorted by it)."""
    group: list[T] = []
    current: Hashable = None
    async for row in rows:
        k = key(row)
        if group and k != current:
            yield group
            group = []
        current = k
        group.append(row)
    if group:
        yield group


def _pair(row: Redeemed) -> Hashable:
    return row.programme_id, row.enterprise_id, row.provider_id


async def _related_parties(session: AsyncSession, scope: Scope, _: Thresholds) -> list[Finding]:
    shared = {}
    for enterprise_id, provider_id, ours, theirs, our_uscc, their_uscc in await repository.pairs_with_parties(
            session, scope):
        if parties := shared_parties(ours, theirs, our_uscc, their_uscc):
            shared[(enterprise_id, provider_id)] = parties
    if not shared:
        return []
    findings = []
    pairs = list(shared)
    # A few hundred pairs per query: SQLite refuses an expression tree deeper than 1,000, and
    # 1,000 pairs in one OR had been a 500 (an independent review, December 2026). Findings are
    # sorted once all rules ran, so the chunks' order does not matter.
    for start in range(0, len(pairs), PAIRS_PER_QUERY):
        chunk = pairs[start:start + PAIRS_PER_QUERY]
        async for rows in _groups(repository.rows_of_pairs(session, scope, chunk), _pair):
            found = related_party(rows, shared[(rows[0].enterprise_id, rows[0].provider_id)])
            if found is not None:
                findings.append(found)
    return findings


async def _order_splitting(session: AsyncSession, scope: Scope, t: Thresholds) -> list[Finding]:
    limits = await repository.programme_limits(session, scope.programme_id)
    thresholds = {p: t.split_threshold or limit for p, limit in limits.items()}
    bands = {p: split_band(threshold, t.split_margin_bps) for p, threshold in thresholds.items()}
    findings: list[Finding] = []
    async for rows in _groups(repository.rows_in_bands(session, scope, bands), _pair):
        findings.extend(order_splitting(
            rows, threshold=thresholds[rows[0].programme_id], margin_bps=t.split_margin_bps,
            min_orders=t.split_min_orders, window=timedelta(days=t.split_window_days),
            threshold_is_programme_max=t.split_threshold is None,
        ))
    return findings


async def _velocity(session: AsyncSession, scope: Scope, t: Thresholds) -> list[Finding]:
    end = scope.until or scope.now
    findings = []
    async for rows in _groups(repository.rows_by_pair(session, scope, end), _pair):
        found = velocity_spike(rows, end=end, window=timedelta(days=t.velocity_window_days),
                               factor=t.velocity_factor, min_windows=t.velocity_min_windows)
        if found is not None:
            findings.append(found)
    return findings


async def _expiry(session: AsyncSession, scope: Scope, t: Thresholds) -> list[Finding]:
    # Only vouchers whose last `expiry_days` have begun by the end of the report can burst.
    expiring_by = (scope.until or scope.now) + timedelta(days=t.expiry_days)
    findings = []
    # Each voucher's redemptions from its first (the share is of all it redeemed), the burst's
    # from the report's start: only vouchers expiring after the start can have one.
    rows = repository.rows_of_expiring_vouchers(session, replace(scope, since=None), expiring_by, scope.since)
    async for group in _groups(rows, lambda pair: pair[1].voucher_id):
        found = expiry_burst([row for _, row in group], expires_at=group[0][0], days=t.expiry_days,
                             share_bps=t.expiry_share_bps, min_amount=t.expiry_min_amount, since=scope.since)
        if found is not None:
            findings.append(found)
    return findings


async def _shared_references(session: AsyncSession, scope: Scope, _: Thresholds) -> list[Finding]:
    findings = []
    async for group in _groups(repository.rows_of_shared_references(session, scope), lambda pair: pair[0]):
        found = shared_reference([row for _, row in group])
        if found is not None:
            findings.append(found)
    async for claims in _groups(repository.claims_of_shared_invoices(session, scope), lambda c: c.invoice_key):
        found = shared_invoice(claims)
        if found is not None:
            findings.append(found)
    return findings


DETECTORS: dict[AnomalyRule, Callable[[AsyncSession, Scope, Thresholds], Awaitable[list[Finding]]]] = {
    AnomalyRule.RELATED_PARTY: _related_parties,
    AnomalyRule.ORDER_SPLITTING: _order_splitting,
    AnomalyRule.VELOCITY_SPIKE: _velocity,
    AnomalyRule.EXPIRY_BURST: _expiry,
    AnomalyRule.SHARED_REFERENCE: _shared_references,
}


async def report(
    session: AsyncSession, actor: Actor, *, scope: Scope, rules: Collection[AnomalyRule], thresholds: Thresholds,
    limit: int,
) -> Report:
    """The findings of the chosen detectors over every tenant's redemptions in scope; only
    operators and auditors read across tenants."""
    if not actor.sees_everything:
        raise Forbidden(msg("anomaly reports read every tenant's data: operators and auditors only"))
    problems = range_problems(scope.since, scope.until)
    if problems:
        raise ValidationFailed([field_error(name, message, "value_error", location="query") for name, message in problems])
    if scope.programme_id is not None and not await repository.programme_exists(session, scope.programme_id):
        raise NotFound(msg("no programme with id {programme_id}", programme_id=scope.programme_id))
    findings: list[Finding] = []
    for rule in AnomalyRule:  # a fixed order whatever order the caller named them in
        if rule in rules:
            findings.extend(await DETECTORS[rule](session, scope, thresholds))
    findings.sort(key=Finding.sort_key)
    counts = Counter(f.rule.value for f in findings)
    return Report(findings=findings[:limit], counts={r.value: counts[r.value] for r in AnomalyRule if r in rules},
                  truncated=len(findings) > limit)
