"""The value engine answers and inserts a redemption as a plain record (rules.RedemptionRecord),
not an ORM instance: its fields must be exactly the table's columns, in the table's types, or an
insert would miss a column or an answer a field."""

from __future__ import annotations

import dataclasses
import typing
import uuid

import httpx
import pytest
from sqlalchemy import Uuid, literal, select
from sqlalchemy.dialects import postgresql

from services.voucher.db import table_of
from services.voucher.ledger.rules import (
    AccountKind,
    enterprise_code,
    programme_code,
    provider_code,
)
from services.voucher.redemption import repository, rules
from services.voucher.redemption.rules import RedemptionRecord
from services.voucher.tables import OrderSubsidy, Redemption
from tests.world import World, build_world


def test_the_record_has_every_column_of_the_redemption_table_and_nothing_else() -> None:
    columns = [c.key for c in table_of(Redemption).c]
    assert [f.name for f in dataclasses.fields(RedemptionRecord)] == columns


def test_the_record_types_are_the_table_models_types() -> None:
    model = typing.get_type_hints(Redemption)
    record = typing.get_type_hints(RedemptionRecord, vars(rules))
    assert record == {name: model[name] for name in record}


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=500_000_000,
                             max_per_voucher=100_000_000, rate_table={"accelerator:domestic": 5000})


async def test_an_existing_redemptions_accounts_are_found_by_the_codes_the_ledger_names_them(app, world: World) -> None:
    """A capture or a refund finds its accounts by codes spelled in SQL from the redemption's row
    (repository._ACCOUNTS_OF), on both engines: they must be the codes ledger/rules.py gives."""
    voucher = await world.issue(10_000_000)
    held = await world.hold(voucher, 1_000_000, order="PO-A")
    assert (await world.post(f"/v1/redemptions/{held.json()['id']}/capture", {})).status_code == 200
    programme, provider = uuid.UUID(world.programme["id"]), uuid.UUID(world.provider["id"])
    async with app.state.database.unit_of_work(write=True) as session:
        locks = await repository.lock_hold(session, uuid.UUID(held.json()["id"]), provider)
    assert set(locks.counters.account_ids()) == {
        programme_code(programme, AccountKind.PROGRAMME_SPENT),
        programme_code(programme, AccountKind.PROGRAMME_AVAILABLE),
        provider_code(provider, programme, AccountKind.PROVIDER_PAYABLE),
    }
    assert locks.counters.order(provider, "PO-A").subsidised == 500_000


@pytest.mark.parametrize("kind", [AccountKind.PROGRAMME_SPENT, AccountKind.PROGRAMME_AVAILABLE,
                                  AccountKind.PROVIDER_PAYABLE, AccountKind.ENTERPRISE_PAYABLE])
async def test_every_account_code_spelled_in_sql_is_the_ledgers(app, kind: AccountKind) -> None:
    """Each shape of code the accounts are read by (the enterprise's payable is a claim's), spelled
    by the database from uuid columns, is the ledger's own spelling."""
    first, second = uuid.uuid4(), uuid.uuid4()
    make = {AccountKind.PROGRAMME_SPENT: programme_code, AccountKind.PROGRAMME_AVAILABLE: programme_code,
            AccountKind.PROVIDER_PAYABLE: provider_code, AccountKind.ENTERPRISE_PAYABLE: enterprise_code}[kind]
    ids = (first,) if make is programme_code else (first, second)
    spelled = repository._code_in_sql(make(*repository._MARKS[:len(ids)], kind),  # noqa: SLF001
                                      *[literal(i, Uuid()) for i in ids])
    async with app.state.database.unit_of_work(write=False) as session:
        assert (await session.execute(select(spelled))).scalar_one() == make(*ids, kind)


def test_a_providers_statements_on_an_existing_redemption_see_only_its_own() -> None:
    """Every statement `lock_hold` sends for a provider's key is limited to that provider's own
    redemptions, never a claim's: none may lock or read another tenant's rows."""
    for statements in (repository._LOCK_VOUCHER_OF, repository._LOCK_REDEMPTION,  # noqa: SLF001
                       repository._BALANCES_OF, repository._LOCK_ORDER_OF,  # noqa: SLF001
                       repository._LOCK_USAGE_OF, repository._ACCOUNTS_OF):  # noqa: SLF001
        sql = str(statements[True].compile(dialect=postgresql.dialect()))
        scoped = sql.count("redemption.provider_id = %(provider_id)s")
        assert scoped >= 1 and scoped == sql.count("redemption.id = %(redemption_id)s"), sql
        assert sql.count("redemption.payee = ") >= scoped, sql


async def test_the_rows_a_redemption_creates_have_time_ordered_ids(app, world: World) -> None:
    """Ids are UUIDv7 (docs/decisions.md, "Ids and pagination"), the order an engine's hold
    opens included: B-tree inserts stay at the right edge of each primary key."""
    voucher = await world.issue(10_000_000)
    held = await world.hold(voucher, 1_000_000, order="PO-V7")
    assert held.status_code == 201, held.text
    orders = table_of(OrderSubsidy)
    async with app.state.database.unit_of_work(write=False) as session:
        order_id = (await session.execute(select(orders.c.id).where(orders.c.order_reference == "PO-V7"))).scalar_one()
        redemption_ids = (await session.execute(select(table_of(Redemption).c.id))).scalars().all()
    assert uuid.UUID(str(order_id)).version == 7
    assert [uuid.UUID(str(i)).version for i in redemption_ids] == [7]
