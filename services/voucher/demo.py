"""A demo programme office, loaded by `voucher demo` (and `make run`). Safe to run again:
existing demo records are kept, the previous demo keys are revoked and new ones printed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher.actor import SYSTEM
from services.voucher.apikeys import repository as keys_repository
from services.voucher.apikeys import service as apikeys
from services.voucher.apikeys.rules import Role
from services.voucher.enterprises import service as enterprises
from services.voucher.programmes import service as programmes
from services.voucher.programmes.rules import ProgrammeStatus
from services.voucher.providers import service as providers
from services.voucher.providers.rules import ProviderStatus
from services.voucher.tables import Enterprise, Principal, Programme, Provider, Voucher
from services.voucher.vouchers import service as vouchers

DEMO_KEY_NAME = "demo"
ENTERPRISE_USCC = "91330110MA2J7C3X1M"
PROVIDER_USCC = "91330110MA2K8D4Y21"
COMPUTE_CODE = "demo-yuhang-compute"
MODEL_CODE = "demo-yuhang-model"


DEMO_VOUCHER_VALUE = 100_000_000  # ¥1,000,000.00

#: Yuhang-style eligibility, in the rule language: registered in Yuhang (330110), an SME
#: (at most 1,000 staff and ¥400m revenue, or certified as one), founded at least a year
#: before applying, no 失信 record in the last three years, and within the yearly cap.
DEMO_RULES: dict[str, object] = {"all": [
    {"id": "registered-in-yuhang", "check": "region_in", "regions": ["330110"]},
    {"id": "is-sme", "any": [
        {"all": [{"check": "headcount_at_most", "value": 1000},
                 {"check": "revenue_at_most", "value": 40_000_000_000}]},
        {"check": "has_certifications", "certifications": ["sme"]},
    ]},
    {"id": "founded-a-year-ago", "check": "founded_at_least_years", "years": 1},
    {"id": "no-dishonesty-record-3y", "check": "no_blacklist_within_years", "years": 3},
    {"id": "within-yearly-cap", "check": "requested_within_remaining_cap"},
]}


@dataclass
class DemoResult:
    compute_programme: Programme
    model_programme: Programme
    enterprise: Enterprise
    provider: Provider
    voucher: Voucher
    keys: dict[str, str]


def _programme_terms(now: datetime, *, model: bool) -> dict[str, object]:
    year_start = datetime(now.year, 1, 1, tzinfo=now.tzinfo) - timedelta(hours=8)  # Asia/Shanghai
    common: dict[str, object] = {
        "description": "Demo programme modelled on Hangzhou's published rules.",
        "unit": "CNY",
        "mode": "provider_redemption",
        "budget_total": 25_000_000_000,  # ¥250,000,000.00
        "stacking_ceiling_bps": 6000,
        "enterprise_cap": 800_000_000,  # ¥8,000,000.00 per enterprise per year
        "cap_period": "calendar_year",
        "cap_timezone": "Asia/Shanghai",
        "max_per_voucher": 800_000_000,
        "application_opens_at": year_start,
        "application_closes_at": year_start + timedelta(days=730),
        "voucher_validity_days": 365,
        "publicity_days": 5,
        "hold_ttl_seconds": 1800,
        "expiry_disposition": "pool",
        "eligibility_rules": DEMO_RULES,
    }
    if model:
        return {**common, "code": MODEL_CODE, "name": "Demo Yuhang model voucher",
                "kind": "model", "rate_table": {"model:registered": 3000}, "tiers": []}
    return {
        **common,
        "code": COMPUTE_CODE,
        "name": "Demo Yuhang compute voucher",
        "kind": "compute",
        "rate_table": {"accelerator:domestic": 3000, "accelerator:other": 2000},
        # 50 % while the enterprise's subsidised spend this year is at most ¥500,000.00
        "tiers": [{"spend_up_to": 50_000_000, "rate_bps": 5000, "categories": None}],
    }


_Row = TypeVar("_Row")


async def _one(session: AsyncSession, stmt: Select[_Row]) -> _Row | None:
    return (await session.execute(stmt)).scalar_one_or_none()


async def load(session: AsyncSession, now: datetime) -> DemoResult:
    """Create whatever part of the demo is missing; rotate the demo keys."""
    found: dict[str, Programme] = {}
    for code, is_model in ((COMPUTE_CODE, False), (MODEL_CODE, True)):
        programme = await _one(session, select(Programme).where(col(Programme.code) == code))
        if programme is None:
            programme = await programmes.create_programme(session, _programme_terms(now, model=is_model), now)
            programme = await programmes.transition(session, SYSTEM, programme.id, ProgrammeStatus.OPEN, now)
        found[code] = programme

    enterprise = await _one(session, select(Enterprise).where(col(Enterprise.uscc) == ENTERPRISE_USCC))
    if enterprise is None:
        enterprise = await enterprises.register(
            session,
            {
                "uscc": ENTERPRISE_USCC,
                "name": "杭州示例智能科技有限公司 (demo SME)",
                "region_code": "330110",
                "headcount": 38,
                "annual_revenue": 1_200_000_000,
                "founded_on": date(2021, 6, 1),
                "industry_code": "I6513",
                "certifications": ["sme", "high_tech"],
                "blacklist_records": [],
                "related_parties": [
                    {"role": "legal_representative", "party_id": "demo:person:7f3a9c2e5b1d"}
                ],
            },
            now,
        )
    provider = await _one(session, select(Provider).where(col(Provider.uscc) == PROVIDER_USCC))
    if provider is None:
        provider = await providers.register(
            session,
            {
                "uscc": PROVIDER_USCC,
                "name": "杭州示例算力服务有限公司 (demo provider)",
                "kinds": ["compute", "model"],
                "settlement_account": {
                    "bank_name": "Demo Bank Yuhang branch",
                    "account_name": "Demo provider",
                    "account_number": "6222000000000001",
                },
                "webhook_url": None,
                "related_parties": [],
            },
            now,
        )
        provider = await providers.change_status(
            session, SYSTEM, provider.id, ProviderStatus.APPROVED, "demo provider", now
        )
    for programme in found.values():
        await programmes.enrol_provider(session, SYSTEM, programme.id, provider.id, now)
    # The demo's own voucher, by its reference: the SME may hold others by now (the README's
    # walkthrough issues it a second one), which made a second `make run` fail.
    voucher = await _one(
        session,
        select(Voucher).where(
            col(Voucher.enterprise_id) == enterprise.id,
            col(Voucher.programme_id) == found[COMPUTE_CODE].id,
            col(Voucher.issue_reference) == "demo",
        ).order_by(col(Voucher.id)).limit(1),
    )
    if voucher is None:
        voucher = await vouchers.issue_voucher(
            session, programme_id=found[COMPUTE_CODE].id, enterprise_id=enterprise.id,
            face_value=DEMO_VOUCHER_VALUE, now=now, reference="demo",
        )

    staff: dict[Role, dict[str, Any]] = {}
    for role, name in ((Role.OPERATOR, "Demo programme office"), (Role.AUDITOR, "Demo audit bureau")):
        existing = await _one(
            session, select(Principal).where(col(Principal.role) == role.value, col(Principal.name) == name)
        )
        staff[role] = {"principal_id": existing.id} if existing else {"principal_name": name}
    # The demo's own keys only, revoked as any key is (audited, announced to running servers): a
    # key an office had named "demo" for a principal of its own had been revoked too, unrecorded
    # (an independent review, December 2026).
    staff_ids = [s["principal_id"] for s in staff.values() if "principal_id" in s]
    for old in await keys_repository.active_demo_keys(
            session, DEMO_KEY_NAME, staff_ids=staff_ids, enterprise_id=enterprise.id, provider_id=provider.id):
        await apikeys.revoke_key(session, SYSTEM, old.id, "replaced by a newer demo run", now)
    issued = {
        "operator": await apikeys.issue_key(
            session, role=Role.OPERATOR, name=DEMO_KEY_NAME, now=now, **staff[Role.OPERATOR]
        ),
        "auditor": await apikeys.issue_key(
            session, role=Role.AUDITOR, name=DEMO_KEY_NAME, now=now, **staff[Role.AUDITOR]
        ),
        "enterprise": await apikeys.issue_key(
            session, role=Role.ENTERPRISE, name=DEMO_KEY_NAME, enterprise_id=enterprise.id, now=now
        ),
        "provider": await apikeys.issue_key(
            session, role=Role.PROVIDER, name=DEMO_KEY_NAME, provider_id=provider.id, now=now
        ),
    }
    return DemoResult(
        compute_programme=found[COMPUTE_CODE],
        model_programme=found[MODEL_CODE],
        enterprise=enterprise,
        provider=provider,
        voucher=voucher,
        keys={role: k.secret for role, k in issued.items()},
    )
