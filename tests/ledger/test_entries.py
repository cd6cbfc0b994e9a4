"""The ledger entries list (auditors): every posting once, in posting order, page by page with
an integer cursor; the same filters as the export; cursors from elsewhere are refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest

from services.voucher.db import encode_cursor, encode_int_cursor
from tests.exports.helpers import (
    assert_same_rows,
    database_rows,
    ledger_rows_statement,
    load_postings,
)
from tests.support import assert_problem, auth
from tests.world import World, build_world

AT = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
async def world(app, client: httpx.AsyncClient, request: pytest.FixtureRequest) -> World:
    request.node.add_marker(pytest.mark.ledger_tampered)  # the loaded journals are the test's: `load_postings`
    world = await build_world(app, client)
    await load_postings(app, world.programme["id"], world.provider["id"], 60, at=AT)
    return world


async def pages(client: httpx.AsyncClient, key: str, **params: str) -> tuple[list[dict], int]:
    items, cursor, count = [], None, 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/ledger/entries", params=query, headers=auth(key))
        assert response.status_code == 200, response.text
        body = response.json()
        count += 1
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items, count


async def test_paging_through_every_posting(app, client: httpx.AsyncClient, world: World) -> None:
    items, count = await pages(client, world.auditor, limit="25")
    expected = await database_rows(app, ledger_rows_statement())
    assert len(expected) > 120
    assert count == -(-len(expected) // 25)
    assert_same_rows(items, expected, "jsonl")


async def test_filters(app, client: httpx.AsyncClient, world: World) -> None:
    expected = await database_rows(app, ledger_rows_statement())
    provider = world.provider["id"]
    items, _ = await pages(client, world.auditor, provider_id=provider, limit="50")
    assert_same_rows(items, [r for r in expected if str(r["provider_id"]) == provider], "jsonl")
    since, until = "2026-03-01T00:00:10Z", "2026-03-01T00:00:20Z"
    items, _ = await pages(client, world.auditor, since=since, until=until)
    assert len(items) == 20 and {i["kind"] for i in items} == {"bulk_test"}
    account = items[0]["account_id"]
    items, _ = await pages(client, world.auditor, account_id=account)
    assert_same_rows(items, [r for r in expected if str(r["account_id"]) == account], "jsonl")
    items, _ = await pages(client, world.auditor, programme_id=str(uuid.uuid4()))
    assert items == []


@pytest.mark.parametrize("params", [
    {"cursor": "not-a-cursor"},
    {"cursor": encode_cursor(uuid.uuid4())},  # another list's cursor
    {"cursor": encode_int_cursor(5)[:-2]},
])
async def test_foreign_cursors_are_refused(client: httpx.AsyncClient, world: World, params) -> None:
    response = await client.get("/v1/ledger/entries", params=params, headers=auth(world.auditor))
    assert_problem(response, 422, "invalid_cursor")


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"since": "2026-03-01T00:00:00"}, {"voucher_id": "x"},
    {"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
])
async def test_bad_filters_are_422(client: httpx.AsyncClient, world: World, params) -> None:
    response = await client.get("/v1/ledger/entries", params=params, headers=auth(world.auditor))
    assert_problem(response, 422, "validation_failed")


def test_int_cursors_round_trip() -> None:
    from services.voucher.db import decode_int_cursor

    for value in (0, 1, 2**63 - 1):
        assert decode_int_cursor(encode_int_cursor(value)) == value
