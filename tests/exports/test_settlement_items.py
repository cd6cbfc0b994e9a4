"""The `settlement-items` dataset: every line of every settlement (each capture it pays for and
each refund it takes back), so an auditor proves each settlement's total line by line under one
chain head. Until December 2026 the lines were only in each settlement's statement, one request
per settlement and outside any export's snapshot and manifest."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.voucher.tables import Settlement, SettlementItem
from tests.exports.helpers import (
    FORMATS,
    assert_same_rows,
    database_rows,
    export,
    manifest_of,
    rows_of,
    time_columns,
)
from tests.exports.history import History, build_history, settle_february, utc
from tests.support import assert_problem, auth

S, ITEMS = Settlement.__table__, SettlementItem.__table__
COLUMNS = ("id", "settlement_id", "kind", "redemption_id", "refund_id", "order_reference", "amount", "unit",
           "occurred_at", "released_at", "programme_id", "provider_id", "period_start", "period_end",
           "settlement_status", "settlement_created_at")


def expected_statement() -> Any:
    """The dataset as its description in the OpenAPI document words it, written here apart from
    the code under test."""
    return (select(ITEMS.c.id, ITEMS.c.settlement_id, ITEMS.c.kind, ITEMS.c.redemption_id, ITEMS.c.refund_id, ITEMS.c.order_reference,
                   ITEMS.c.amount, S.c.unit, ITEMS.c.occurred_at, ITEMS.c.released_at, S.c.programme_id, S.c.provider_id,
                   S.c.period_start, S.c.period_end, S.c.status.label("settlement_status"),
                   S.c.created_at.label("settlement_created_at"))
            .join_from(ITEMS, S, S.c.id == ITEMS.c.settlement_id).order_by(ITEMS.c.settlement_id, ITEMS.c.id))


@pytest.fixture
async def history(app, client: httpx.AsyncClient, clock) -> History:
    """The scripted history, whose February settlement is then cancelled and made again: the same
    captures and refunds are lines of two settlements, the first's released."""
    history = await build_history(app, client, clock)
    world = history.world
    assert history.settlement is not None
    cancelled = await world.post(f"/v1/settlements/{history.settlement['id']}/cancel",
                                 {"reason": "bank details were wrong"}, key=world.operator)
    assert cancelled.status_code == 200, cancelled.text
    clock.current = utc("2026-03-04T02:00:00+00:00")
    await settle_february(world)
    return history


async def test_every_line_in_every_format_matches_the_database(
    app, client: httpx.AsyncClient, history: History
) -> None:
    auditor = history.world.auditor
    stmt = expected_statement()
    expected = await database_rows(app, stmt)
    assert [tuple(r) for r in expected[:1]] == [COLUMNS]
    assert len({r["settlement_id"] for r in expected}) == 2
    for fmt in FORMATS:
        response = await export(client, auditor, "settlement-items", fmt)
        assert response.status_code == 200, response.text
        rows = rows_of(fmt, response.content)
        assert_same_rows(rows, expected, fmt, time_columns(stmt))
        manifest = await manifest_of(client, auditor, response)
        assert manifest["dataset"] == "settlement-items" and manifest["row_count"] == len(rows)
        assert manifest["sha256"] == hashlib.sha256(response.content).hexdigest()


async def test_each_settlement_total_is_the_sum_of_its_exported_lines(
    client: httpx.AsyncClient, history: History
) -> None:
    """What the dataset is for: the two files of one request prove every settlement's figures."""
    auditor = history.world.auditor
    settlements = rows_of("jsonl", (await export(client, auditor, "settlements")).content)
    lines = rows_of("jsonl", (await export(client, auditor, "settlement-items")).content)
    by_settlement: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_settlement[line["settlement_id"]].append(line)
    assert set(by_settlement) == {s["id"] for s in settlements}
    kinds = set()
    for settlement in settlements:
        mine = by_settlement[settlement["id"]]
        assert sum(line["amount"] for line in mine) == settlement["total"]
        assert sum(line["amount"] for line in mine if line["amount"] > 0) == settlement["captured_total"]
        assert -sum(line["amount"] for line in mine if line["amount"] < 0) == settlement["refunded_total"]
        assert len(mine) == settlement["line_count"]
        released = {line["released_at"] is not None for line in mine}
        assert released == {settlement["status"] == "cancelled"}
        assert {line["settlement_status"] for line in mine} == {settlement["status"]}
        kinds |= {line["kind"] for line in mine}
    assert kinds == {"capture", "refund"}


async def test_lines_take_the_settlements_filters(app, client: httpx.AsyncClient, history: History) -> None:
    world, auditor = history.world, history.world.auditor
    everything = await database_rows(app, expected_statement())
    second = max(r["settlement_created_at"] for r in everything)

    async def ids(**params: Any) -> tuple[set[str], set[str]]:
        items = await export(client, auditor, "settlement-items", **params)
        settlements = await export(client, auditor, "settlements", **params)
        assert items.status_code == 200 and settlements.status_code == 200, (items.text, settlements.text)
        return ({r["settlement_id"] for r in rows_of("jsonl", items.content)},
                {r["id"] for r in rows_of("jsonl", settlements.content)})

    every = {str(r["settlement_id"]) for r in everything}
    assert await ids(provider_id=world.provider["id"]) == (every, every)
    assert await ids(programme_id=world.programme["id"]) == (every, every)
    assert await ids(programme_id=history.other_programme["id"]) == (set(), set())
    newest = {str(r["settlement_id"]) for r in everything if r["settlement_created_at"] == second}
    assert await ids(since=second.isoformat()) == (newest, newest)
    assert await ids(until=second.isoformat()) == (every - newest, every - newest)


@pytest.mark.parametrize("name", ["voucher_id", "enterprise_id", "account_id"])
async def test_a_filter_a_settlement_has_not_is_refused(client: httpx.AsyncClient, auditor_key: str, name: str) -> None:
    response = await export(client, auditor_key, "settlement-items", **{name: "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e31"})
    body = assert_problem(response, 422, "validation_failed")
    assert [e["pointer"] for e in body["errors"]] == [f"/{name}"]


async def test_only_operators_and_auditors_export_the_lines(client: httpx.AsyncClient, history: History) -> None:
    world = history.world
    assert (await export(client, world.operator, "settlement-items")).status_code == 200
    for key in (world.provider_key, world.enterprise_key):
        response = await client.get("/v1/exports/settlement-items", headers=auth(key))
        assert_problem(response, 403, "insufficient_scope")
