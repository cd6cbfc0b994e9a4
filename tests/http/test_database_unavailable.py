"""A lost database connection (issue 19, finding 8): 503 `database_unavailable` with
Retry-After, never a 500; the request changed nothing (or, lost at its commit, the retry with
the same Idempotency-Key answers with the first outcome), and the next request works."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.voucher.clock import system_clock
from services.voucher.db import is_transient, is_unavailable
from services.voucher.settings import sync_database_url
from services.voucher.tables import Redemption
from tests.conftest import ENGINE
from tests.live_server import LiveServer
from tests.support import auth
from tests.world import World, build_world, hold_body


class _Orig(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _wrapped(orig: Exception, *, invalidated: bool = False) -> DBAPIError:
    return DBAPIError.instance("SELECT 1", None, orig, Exception, connection_invalidated=invalidated)


LOST = _wrapped(psycopg.OperationalError("server closed the connection unexpectedly"), invalidated=True)


@pytest.mark.parametrize(("exc", "unavailable"), [
    (LOST, True),
    (_wrapped(psycopg.OperationalError("connection failed: Connection refused")), True),  # no SQLSTATE
    (_wrapped(_Orig("08006")), True),   # connection failure
    (_wrapped(_Orig("08001")), True),   # could not connect
    (_wrapped(_Orig("57P01")), True),   # terminated by an administrator
    (_wrapped(_Orig("57P03")), True),   # the server is starting up
    (_wrapped(_Orig("53300")), True),   # too many connections
    (PoolTimeout("QueuePool limit reached, connection timed out"), True),
    (_wrapped(_Orig("40001")), False),  # a lost race: 409 concurrent_update, not 503
    (_wrapped(_Orig("23505")), False),
    (_wrapped(_Orig(None)), False),     # not psycopg's, no SQLSTATE: unexpected, a 500
    (IntegrityError("INSERT", None, _Orig("23505")), False),
    (ValueError("x"), False),
])
def test_which_failures_are_the_database_being_away(exc: Exception, unavailable: bool) -> None:
    assert is_unavailable(exc) is unavailable
    if unavailable:
        assert not is_transient(exc)


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client)


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "database_unavailable" and body["status"] == 503
    assert "Traceback" not in response.text and "psycopg" not in response.text


async def test_a_connection_lost_at_commit_is_a_503_and_the_retry_applies_once(
    app, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.voucher.http.unit_of_work import RequestUnit

    voucher = await world.issue(1_000_000)
    database = app.state.database

    async def lost(*_: Any, **__: Any) -> None:
        raise LOST  # the request's COMMIT never reached the database

    with monkeypatch.context() as patch:
        patch.setattr(RequestUnit, "commit", lost)
        _assert_unavailable(await world.hold(voucher, 100_000, order="PO-LOST", path="/v1/redemptions"))
    async with database.unit_of_work(write=False) as session:
        assert (await session.execute(select(func.count()).select_from(Redemption))).scalar_one() == 0
    assert (await world.voucher(voucher["id"]))["balances"]["available"] == 1_000_000

    retried = await world.hold(voucher, 100_000, order="PO-LOST", path="/v1/redemptions")
    assert retried.status_code == 201, retried.text
    again = await world.hold(voucher, 100_000, order="PO-LOST", path="/v1/redemptions")
    assert again.json()["id"] == retried.json()["id"] and again.headers["idempotent-replayed"] == "true"


async def test_a_connection_lost_just_after_the_commit_replays_the_committed_answer(
    app, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dangerous case: the change committed, then the connection went before the answer.
    The client is told 503; its retry with the same key gets the committed answer, and the
    voucher was charged once."""
    from services.voucher.http.unit_of_work import RequestUnit

    voucher = await world.issue(1_000_000)
    database = app.state.database
    real_commit = RequestUnit.commit

    async def committed_then_lost(unit: RequestUnit, *args: Any) -> None:
        await real_commit(unit, *args)  # the request's own transaction, with its answer
        raise LOST

    with monkeypatch.context() as patch:
        patch.setattr(RequestUnit, "commit", committed_then_lost)
        _assert_unavailable(await world.hold(voucher, 100_000, order="PO-AFTER", path="/v1/redemptions"))
    async with database.unit_of_work(write=False) as session:
        assert (await session.execute(select(func.count()).select_from(Redemption))).scalar_one() == 1  # it did
    retried = await world.hold(voucher, 100_000, order="PO-AFTER", path="/v1/redemptions")
    assert retried.status_code == 201 and retried.headers["idempotent-replayed"] == "true", retried.text
    async with database.unit_of_work(write=False) as session:
        assert (await session.execute(select(func.count()).select_from(Redemption))).scalar_one() == 1
    assert (await world.voucher(voucher["id"]))["balances"]["used"] == 30_000


async def test_a_read_that_loses_its_connection_is_a_503(
    world: World, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.voucher.vouchers import service

    voucher = await world.issue(1_000_000)

    async def lost(*_: Any, **__: Any) -> None:
        raise LOST

    with monkeypatch.context() as patch:
        patch.setattr(service, "read_voucher", lost)
        response = await client.get(f"/v1/vouchers/{voucher['id']}", headers=auth(world.operator, **{
            "Accept-Language": "zh-CN"}))
        _assert_unavailable(response)
        assert response.headers["content-language"] == "zh-CN"
    assert (await world.voucher(voucher["id"]))["id"] == voucher["id"]


# -- a real server whose database connections are cut while it works --------------------------

ORDERS = 120


@pytest.fixture
def clock():  # the live server runs on the real clock; so does this test's app
    return system_clock


@pytest.mark.skipif(ENGINE != "postgresql", reason="terminating backends is PostgreSQL's")
@pytest.mark.timeout(240)
async def test_terminated_backends_answer_503_never_500_and_retries_charge_once(
    app: Any, world: World, database_url: str
) -> None:
    voucher = await world.issue(100_000_000)
    name = f"lost-{uuid.uuid4().hex[:8]}"
    url = make_url(database_url).update_query_dict({"application_name": name}).render_as_string(hide_password=False)
    admin = create_engine(sync_database_url(database_url), isolation_level="AUTOCOMMIT")
    stop = threading.Event()
    terminated = 0

    def cut() -> None:  # every 200 ms, every connection the server holds
        nonlocal terminated
        with admin.connect() as conn:
            while not stop.is_set():
                terminated += len(conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
                    {"name": name}).all())
                time.sleep(0.2)

    def send(http: httpx.AsyncClient, order: str) -> Any:
        body = hold_body(voucher["code"], world.enterprise["uscc"], order, [("accelerator:domestic", 100_000)])
        return http.post("/v1/redemptions", json=body, headers=auth(world.provider_key, **{"Idempotency-Key": order}))

    orders = [f"CUT-{n}" for n in range(ORDERS)]
    with LiveServer(url, workers=1) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            cutter = threading.Thread(target=cut)
            cutter.start()
            try:
                gate = asyncio.Semaphore(8)

                async def one(order: str) -> tuple[httpx.Response, httpx.Response]:
                    async with gate:
                        return await send(http, order), await http.get(
                            f"/v1/vouchers/{voucher['id']}", headers=auth(world.operator))

                answers = await asyncio.gather(*(one(order) for order in orders))
            finally:
                stop.set()
                cutter.join()
            statuses = [(w.status_code, r.status_code) for w, r in answers]
            assert terminated > 0
            assert {s for pair in statuses for s in pair} <= {200, 201, 503}, [
                a.text for pair in answers for a in pair if a.status_code not in (200, 201, 503)]
            lost = [order for order, (w, _) in zip(orders, answers, strict=True) if w.status_code == 503]
            for w, r in answers:
                for response in (w, r):
                    if response.status_code == 503:
                        _assert_unavailable(response)
            print(f"{terminated} backends terminated; {len(lost)} of {ORDERS} redeems and "
                  f"{sum(r.status_code == 503 for _, r in answers)} reads answered 503")
            refused_again = 0
            for order in lost:  # the same key and body, the database back: applied once
                for _ in range(5):  # as a client does: wait Retry-After, send again
                    retried = await send(http, order)
                    if retried.status_code != 503:
                        break
                    refused_again += 1
                    await asyncio.sleep(int(retried.headers["retry-after"]))
                assert retried.status_code == 201, retried.text
            # a connection the cutter ended just before it stopped fails once; its failure
            # replaces every older pooled connection, so the retries are not refused for long
            assert refused_again <= 3, refused_again
            print(f"{refused_again} retries answered 503 again")
            replays = await asyncio.gather(*(send(http, order) for order in orders))
            assert all(r.status_code == 201 and r.headers.get("idempotent-replayed") == "true" for r in replays)
    admin.dispose()
    async with app.state.database.unit_of_work(write=False) as session:
        rows = (await session.execute(select(Redemption.order_reference, func.count()).group_by(
            Redemption.order_reference))).all()
    assert sorted(rows) == sorted((order, 1) for order in orders)
    assert (await world.voucher(voucher["id"]))["balances"]["used"] == ORDERS * 30_000
    assert (await world.reconciliation())["is_clean"]
