"""Response models of anomaly reports."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.voucher.anomalies.rules import AnomalyRule, Finding
from services.voucher.money import MINOR_UNITS

_E = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e11"
_P = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e13"
_G = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20"
_V = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e30"
_R = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e50"


class SharedPartyPublic(BaseModel):
    party_id: str = Field(description="The party both sides name (ids match whatever their letter case); "
                                      "`uscc:<USCC>` when the enterprise and the provider are one legal entity.")
    enterprise_roles: list[str] = Field(description="legal_representative, shareholder, or self (its own USCC)")
    provider_roles: list[str] = Field(description="legal_representative, shareholder, or self (its own USCC)")


class Evidence(BaseModel):
    redemption_ids: list[uuid.UUID] = Field(description="The redemptions that triggered the finding, oldest first.")
    order_references: list[str] = Field(description="Their order references, one per redemption.")
    amounts: list[int] = Field(description="The subsidy each redemption carries now (captured − refunded, or "
                                           "the live hold), one per redemption, in the unit's minor unit (" + MINOR_UNITS + ").")
    order_amounts: list[int] = Field(description="Each redemption's order amount.")
    units: list[str] = Field(default_factory=list, description=(
        "Each redemption's unit, one per redemption: its amount and order amount are in that unit's minor "
        "unit (" + MINOR_UNITS + "); a finding across programmes may mix units, and then `unit` is null."))
    claim_ids: list[uuid.UUID] = Field(default_factory=list, description="Claims, for a shared invoice.")
    invoice_numbers: list[str] = Field(default_factory=list, description="Their invoice numbers, one per claim.")
    count: int = Field(description="How many redemptions (or claims) are listed.")
    total_amount: int | None = Field(description="Sum of `amounts` (or of the claims' subsidies); null when "
                                                 "they are in different units.")
    unit: str | None = Field(description="The unit of every amount listed; null when they are in different units "
                                         "(each row's is in `units`).")
    window_start: datetime | None = Field(description="Start of the window the detector looked at.")
    window_end: datetime | None = Field(description="End of that window.")
    figures: dict[str, int] = Field(description="The numbers the detector compared, named per rule (see the "
                                                "anomaly reports section of the docs).")
    shared_parties: list[SharedPartyPublic] = Field(default_factory=list)


class FindingPublic(BaseModel):
    rule: AnomalyRule
    programme_ids: list[uuid.UUID]
    enterprise_ids: list[uuid.UUID]
    provider_ids: list[uuid.UUID]
    voucher_ids: list[uuid.UUID]
    evidence: Evidence
    explanation: str = Field(description="Why this was flagged, in the language chosen by Accept-Language "
                                         "(zh-CN or English).")

    @classmethod
    def of(cls, finding: Finding, language: str) -> FindingPublic:
        rows, claims = finding.rows, finding.claims
        return cls(
            rule=finding.rule, programme_ids=finding.programme_ids, enterprise_ids=finding.enterprise_ids,
            provider_ids=finding.provider_ids, voucher_ids=finding.voucher_ids,
            evidence=Evidence(
                redemption_ids=[r.redemption_id for r in rows], order_references=[r.order_reference for r in rows],
                amounts=[r.amount for r in rows], order_amounts=[r.order_amount for r in rows],
                units=[r.unit for r in rows], claim_ids=[c.claim_id for c in claims], invoice_numbers=[c.invoice_number for c in claims],
                count=len(rows) + len(claims), total_amount=finding.total_amount, unit=finding.unit,
                window_start=finding.window_start, window_end=finding.window_end, figures=dict(finding.figures),
                shared_parties=[SharedPartyPublic(party_id=p.party_id, enterprise_roles=list(p.enterprise_roles),
                                                  provider_roles=list(p.provider_roles))
                                for p in finding.shared_parties],
            ),
            explanation=finding.explanation(language),
        )


class Parameters(BaseModel):
    """What the report was computed with: the caller's values or the defaults."""

    programme_id: uuid.UUID | None
    since: datetime | None
    until: datetime | None
    as_of: datetime = Field(description="The service's clock when the report ran (which holds were live).")
    rules: list[AnomalyRule]
    split_min_orders: int
    split_margin_bps: int
    split_threshold: int | None = Field(description="null: each programme's max_per_voucher.")
    split_window_days: int
    velocity_window_days: int
    velocity_factor: int
    velocity_min_windows: int
    expiry_days: int
    expiry_share_bps: int
    expiry_min_amount: int
    limit: int


class AnomalyReport(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "parameters": {
            "programme_id": _G, "since": None, "until": None, "as_of": "2026-03-20T02:00:00Z",
            "rules": ["related_party", "order_splitting", "velocity_spike", "expiry_burst", "shared_reference"],
            "split_min_orders": 3, "split_margin_bps": 1000, "split_threshold": None, "split_window_days": 7,
            "velocity_window_days": 7, "velocity_factor": 3, "velocity_min_windows": 2, "expiry_days": 3,
            "expiry_share_bps": 5000, "expiry_min_amount": 100000, "limit": 500},
        "findings": [{
            "rule": "related_party", "programme_ids": [_G], "enterprise_ids": [_E], "provider_ids": [_P],
            "voucher_ids": [_V],
            "evidence": {"redemption_ids": [_R], "order_references": ["PO-1"], "amounts": [300000],
                         "order_amounts": [1000000], "units": ["CNY"], "claim_ids": [], "invoice_numbers": [], "count": 1,
                         "total_amount": 300000, "unit": "CNY", "window_start": "2026-03-02T01:00:00Z",
                         "window_end": "2026-03-02T01:00:00Z",
                         "figures": {"redemptions": 1, "shared_parties": 1},
                         "shared_parties": [{"party_id": "sha256:9f2c1a7b3e5d8c40",
                                             "enterprise_roles": ["legal_representative"],
                                             "provider_roles": ["shareholder"]}]},
            "explanation": "The enterprise and the provider share 1 related party: …"}],
        "counts": {"related_party": 1, "order_splitting": 0, "velocity_spike": 0, "expiry_burst": 0,
                   "shared_reference": 0},
        "truncated": False}]})

    parameters: Parameters
    findings: list[FindingPublic] = Field(description="Ordered by rule, then by the first redemption's time.")
    counts: dict[str, int] = Field(description="Findings per rule that ran, before `limit` was applied.")
    truncated: bool = Field(description="True when there were more findings than `limit`.")
