"""What the benchmarks share: a fresh migrated database, and an open programme with an approved
provider, made through the services as production would."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def recreate_database(admin_url: str, target: URL) -> str:
    """Drop and create `target`'s database (connecting through `admin_url`), migrate it to head."""
    from alembic import command

    from services.voucher.cli import alembic_config
    from services.voucher.settings import sync_database_url
    from tests.support import drop_database

    admin = create_engine(sync_database_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        drop_database(conn, target.database)
        conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()
    rendered = target.render_as_string(hide_password=False)
    command.upgrade(alembic_config(rendered), "head")
    return rendered


def check_balanced_and_analyse(engine: Any) -> None:
    """After a set-wise load with the balance trigger off: every journal must still balance
    (checked once for the whole table), then fresh planner statistics."""
    with engine.begin() as conn:
        off = conn.execute(text(
            "SELECT count(*) FROM (SELECT transaction_id FROM ledger_posting GROUP BY transaction_id, unit "
            "HAVING sum(amount) <> 0) AS off")).scalar_one()
        if off:
            raise SystemExit(f"{off} loaded journals do not balance")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE ledger_posting"))
        conn.execute(text("VACUUM ANALYZE ledger_transaction"))


async def programme_with_provider(session: Any, code: str, now: datetime) -> tuple[Any, Any]:
    """An open compute programme (30 % subsidy, limits out of the way) and an approved provider."""
    from services.voucher.actor import SYSTEM
    from services.voucher.programmes import service as programmes
    from services.voucher.programmes.rules import ProgrammeStatus
    from services.voucher.programmes.schemas import ProgrammeCreate
    from services.voucher.providers import service as providers
    from services.voucher.providers.rules import ProviderStatus
    from tests.support import new_uscc

    terms = ProgrammeCreate(
        code=code, name=code, kind="compute", budget_total=10**14,
        rate_table={"accelerator:domestic": 3000}, enterprise_cap=10**12, max_per_voucher=10**12,
        stacking_ceiling_bps=10_000,
    ).model_dump()
    programme = await programmes.create_programme(session, terms, now)
    await programmes.transition(session, SYSTEM, programme.id, ProgrammeStatus.OPEN, now)
    provider = await providers.register(
        session, {"uscc": new_uscc("330100"), "name": "bench provider", "kinds": ["compute"],
                  "settlement_account": None, "webhook_url": None, "related_parties": []}, now)
    await providers.change_status(session, SYSTEM, provider.id, ProviderStatus.APPROVED, "bench", now)
    return programme, provider


async def load_world(database_url: str, vouchers: int, *, face_value: int = 10**11, code: str = "bench") -> dict[str, Any]:
    """Programme, provider, `vouchers` enterprises each with a voucher of `face_value`; returns
    what clients need: the provider's and an operator's key, (code, USCC) targets, voucher ids."""
    from services.voucher.actor import SYSTEM
    from services.voucher.apikeys import service as apikeys
    from services.voucher.apikeys.rules import Role
    from services.voucher.db import Database
    from services.voucher.enterprises import service as enterprises
    from services.voucher.programmes import service as programmes
    from services.voucher.settings import Settings
    from services.voucher.vouchers import service as vouchers_service
    from tests.support import new_uscc

    now = datetime.now(UTC)
    db = Database(Settings(database_url=database_url))
    async with db.unit_of_work() as s:
        programme, provider = await programme_with_provider(s, code, now)
        await programmes.enrol_provider(s, SYSTEM, programme.id, provider.id, now)
        key = await apikeys.issue_key(s, role=Role.PROVIDER, name=code, provider_id=provider.id, now=now)
        office = await apikeys.issue_key(s, role=Role.OPERATOR, name=code, principal_name=f"{code} office", now=now)
        targets, voucher_ids = [], []
        for _ in range(vouchers):
            enterprise = await enterprises.register(
                s, {"uscc": new_uscc(), "name": f"{code} SME", "region_code": "330110", "headcount": 10,
                    "annual_revenue": None, "founded_on": None, "industry_code": None, "certifications": [],
                    "blacklist_records": [], "related_parties": []}, now)
            voucher = await vouchers_service.issue_voucher(
                s, programme_id=programme.id, enterprise_id=enterprise.id, face_value=face_value, now=now)
            targets.append((voucher.code, enterprise.uscc))
            voucher_ids.append(str(voucher.id))
    await db.dispose()
    return {"key": key.secret, "operator": office.secret, "targets": targets, "voucher_ids": voucher_ids}
