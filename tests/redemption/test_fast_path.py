"""The redeem fast path (PostgreSQL) against the general path: the same requests, on two
databases, one with the fast path and one without, must leave the same rows — redemptions,
orders, period usage, journals, postings, balances, vouchers, audit events, outbox events —
and give the same answers, refusals included (docs/decisions.md, "Redeem fast path")."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.voucher.clock import FrozenClock
from services.voucher.ledger import service as ledger
from services.voucher.main import create_app
from services.voucher.redemption import fast
from services.voucher.settings import Settings
from tests.conftest import POSTGRES_URL, T0, _pg_url
from tests.support import auth
from tests.world import build_world, hold_body

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="the fast path is PostgreSQL's")

#: Rows the scenario writes, in a fixed order; columns that differ by nature (request ids,
#: sealing) are left out. Ids are compared by where they first appear (`_normalised`).
DUMP = {
    "voucher": "SELECT id, status, version, status_changed_at FROM voucher ORDER BY id",
    "order_subsidy": "SELECT * FROM order_subsidy ORDER BY id",
    "enterprise_period_usage": "SELECT * FROM enterprise_period_usage ORDER BY id",
    "redemption": "SELECT * FROM redemption ORDER BY id",
    "ledger_account": "SELECT id, code, kind, balance, is_materialised FROM ledger_account ORDER BY id",
    "ledger_transaction": "SELECT id, kind, programme_id, voucher_id, redemption_id, memo, created_at "
                          "FROM ledger_transaction ORDER BY id",
    "ledger_posting": "SELECT * FROM ledger_posting ORDER BY id",
    "audit_event": "SELECT id, occurred_at, actor_principal_id, actor_role, actor_key_id, action, resource_type, "
                   "resource_id, programme_id, enterprise_id, provider_id, voucher_id, before, after, "
                   "idempotency_key, rule_version, journal_id FROM audit_event WHERE id > :after ORDER BY id",
    "outbox_event": "SELECT id, type, occurred_at, programme_id, enterprise_id, provider_id, resource_type, "
                    "resource_id, data, dedupe_key FROM outbox_event WHERE id > :after ORDER BY id",
}
#: Ids, voucher and programme codes (random, so they differ between the two databases).
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|CV(?:-[0-9A-Z]{1,4}){4}"
                  r"|test-programme-\d+-[0-9a-f]{6}")


async def _scenario(app: Any, clock: FrozenClock) -> tuple[list[Any], dict[str, Any]]:
    """Common cases and every way out of the fast path; the answers and the rows after."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        world = await build_world(
            app, client, budget_total=1_000_000_000, enterprise_cap=5_000_000, max_per_voucher=4_000_000,
            rate_table={"accelerator:domestic": 3000, "accelerator:other": 2000},
            tiers=[{"spend_up_to": 4_000_000, "rate_bps": 5000, "categories": None}], cap_period="calendar_month",
        )
        small = await world.issue(1_000_000)
        large = await world.issue(3_000_000)
        spare = await world.issue(1_000_000)
        async with app.state.database.unit_of_work(write=False) as session:
            boundary = (await session.execute(text("SELECT id FROM audit_event ORDER BY id DESC LIMIT 1"))).scalar()
            outbox_boundary = (await session.execute(text("SELECT id FROM outbox_event ORDER BY id DESC LIMIT 1"))).scalar()
        answers: list[Any] = []

        async def redeem(voucher: dict[str, Any], order: str, items: list[tuple[str, int]], *,
                         uscc: str | None = None, key: str | None = None) -> None:
            response = await client.post(
                "/v1/redemptions", json=hold_body(voucher["code"], uscc or world.enterprise["uscc"], order, items),
                headers=auth(world.provider_key, **{"Idempotency-Key": key or f"redeem-{order}"}),
            )
            body = {k: v for k, v in response.json().items() if k != "request_id"}
            answers.append((order, response.status_code, body.get("code") or body.get("status"), body))

        await redeem(small, "PO-1", [("accelerator:domestic", 400_000)])  # first capture: opens payable
        await redeem(small, "PO-2", [("accelerator:domestic", 1_000_000)])  # the tier's rate
        # Limited by the voucher's balance: 80 % and 100 % marks, the voucher exhausted.
        await redeem(small, "PO-3", [("accelerator:other", 600_000), ("accelerator:domestic", 400_000)])
        await redeem(small, "PO-5", [("accelerator:domestic", 1_000_000)])  # refused: exhausted
        await redeem(large, "PO-2", [("accelerator:domestic", 1_000_000)], key="again-PO-2")  # known order
        await redeem(large, "PO-6", [("accelerator:domestic", 1_000_000)], uscc="91330100MA27XXXX0X")  # 404
        await redeem(large, "PO-7", [("model:llm", 1_000_000)])  # kind mismatch
        await redeem(large, "PO-8", [("accelerator:domestic", 2_000_000)])
        await redeem(large, "PO-8", [("accelerator:domestic", 2_000_000)])  # replay
        hold = await client.post(
            "/v1/redemptions/holds", json=hold_body(spare["code"], world.enterprise["uscc"], "PO-9",
                                                    [("accelerator:domestic", 1_000_000)]),
            headers=auth(world.provider_key, **{"Idempotency-Key": "hold-PO-9"}),
        )
        assert hold.status_code == 201, hold.text
        clock.advance(hours=2)  # the hold expires unposted: still counted in the period, void when read
        await redeem(large, "PO-10", [("accelerator:domestic", 2_000_000)])
        await redeem(spare, "PO-10a", [("accelerator:domestic", 400_000)])  # releases it first
        await redeem(large, "PO-11", [("accelerator:domestic", 30_000_000)])  # up to the enterprise cap
        await redeem(large, "PO-12", [("accelerator:domestic", 1_000_000)])  # refused: cap reached
        refund = await client.post(f"/v1/redemptions/{answers[-2][3]['id']}/refunds",
                                   json={"amount": 100_000, "reason": "returned"},
                                   headers=auth(world.provider_key, **{"Idempotency-Key": "refund-1"}))
        assert refund.status_code == 201, refund.text
        await redeem(large, "PO-13", [("accelerator:domestic", 1_000_000)])  # uses the refunded room
        clock.advance(days=40)  # next cap period (monthly): no usage row yet
        await redeem(spare, "PO-14", [("accelerator:domestic", 1_000_000)])
        await redeem(spare, "PO-15", [("accelerator:domestic", 1_000_000)])
        await redeem(spare, "PO-16", [("accelerator:domestic", 1)])  # a subsidy of 0: refused
        fresh, other = await world.issue(1_000_000), await world.issue(1_000_000)
        response = await client.post(
            "/v1/redemptions",
            json={**hold_body(fresh["code"], world.enterprise["uscc"], "PO-17", [("accelerator:domestic", 1_000)]),
                  "line_items": [{"category": "accelerator:domestic", "amount": 1_000, "description": "a\u0000b"}]},
            headers=auth(world.provider_key, **{"Idempotency-Key": "redeem-PO-17"}),
        )
        answers.append(("PO-17", response.status_code, response.json().get("code"), {}))
        suspended = await client.post(f"/v1/vouchers/{fresh['id']}/suspend", json={"reason": "review"},
                                      headers=auth(world.operator, **{"Idempotency-Key": "suspend"}))
        assert suspended.status_code == 200, suspended.text
        await redeem(fresh, "PO-18", [("accelerator:domestic", 1_000)])  # refused: suspended
        withdrawn = await client.delete(f"/v1/programmes/{world.programme['id']}/enrolments/{world.provider['id']}",
                                        headers=auth(world.operator))
        assert withdrawn.status_code in (200, 204), withdrawn.text
        await redeem(other, "PO-19", [("accelerator:domestic", 1_000)])  # refused: not enrolled
    dump = {}
    async with app.state.database.unit_of_work(write=False) as session:
        for table, sql in DUMP.items():
            after = outbox_boundary if table == "outbox_event" else boundary
            rows = await session.execute(text(sql), {"after": after})
            dump[table] = [dict(r._mapping) for r in rows]
    return answers, dump


def _normalised(value: Any) -> Any:
    """The same structure with every id and voucher code replaced by the order of its first
    appearance."""
    dumped = json.dumps(value, default=str, sort_keys=False)
    labels: dict[str, str] = {}
    return json.loads(UUID.sub(lambda m: labels.setdefault(m.group(0), f"<id{len(labels)}>"), dumped))


def _first_difference(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> Any:
    if len(ours) != len(theirs):
        return f"{len(ours)} rows against {len(theirs)}"
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if a != b:
            return index, {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    return None


@pytest.fixture
async def general_app(database_factory: Any) -> Any:
    name = database_factory.take()
    clock = FrozenClock(T0)
    settings = Settings(database_url=_pg_url(name), environment="test", log_level="WARNING", redeem_fast_path=False)
    application = create_app(settings, clock=clock)
    yield application, clock
    async with application.state.database.unit_of_work(write=False) as session:
        assert (await ledger.reconcile(session)).is_clean
    await application.state.database.dispose()
    database_factory.give_back(name)


async def test_the_fast_path_leaves_the_rows_the_general_path_leaves(
    app: Any, clock: FrozenClock, general_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[str] = []
    real = fast.redeem

    async def counted(*args: Any, **kwargs: Any) -> Any:
        done = await real(*args, **kwargs)
        taken.append("fast" if done is not None else "general")
        return done

    monkeypatch.setattr(fast, "redeem", counted)
    assert app.state.database.info["redeem_fast_path"] is True
    fast_answers, fast_rows = await _scenario(app, clock)
    general, general_clock = general_app
    general_answers, general_rows = await _scenario(general, general_clock)

    # The fast path did the common cases and handed every other one back.
    assert taken.count("fast") >= 5, taken
    assert taken.count("general") >= 8, taken
    # One labelling across answers and every table: an id must be the same one everywhere.
    ours, theirs = _normalised([fast_answers, fast_rows]), _normalised([general_answers, general_rows])
    assert [a[:3] for a in ours[0]] == [a[:3] for a in theirs[0]]
    assert ours[0] == theirs[0]
    for table in DUMP:
        assert ours[1][table] == theirs[1][table], (table, _first_difference(ours[1][table], theirs[1][table]))
    statuses = [a[2] for a in fast_answers]
    assert {"captured", "voucher_exhausted", "not_found", "nothing_to_subsidise", "voucher_suspended",
            "provider_not_enrolled"} <= set(statuses), statuses
    nul = next(a for a in fast_answers if a[0] == "PO-17")
    assert nul[1] == 422, nul  # a NUL the database refuses: 422, not 500
    events = {e["type"] for e in fast_rows["outbox_event"]}
    assert {"redemption.captured", "voucher.balance_low"} <= events, events
    assert "voucher.exhausted" in {e["action"] for e in fast_rows["audit_event"]}


async def test_a_database_error_in_the_fast_path_is_a_problem_not_a_500(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path talks to the driver directly; its errors still reach the problem
    handlers as SQLAlchemy's (a lock not obtained is a 409 to retry, like anywhere else), the
    request changes nothing, and its retry with the same key succeeds."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    ok = await client.post("/v1/redemptions", json=hold_body(voucher["code"], world.enterprise["uscc"], "PO-1",
                                                              [("accelerator:domestic", 1_000_000)]),
                           headers=auth(world.provider_key, **{"Idempotency-Key": "a"}))
    assert ok.status_code == 201, ok.text
    async with app.state.database.engine.connect() as blocker:
        await blocker.execute(text("BEGIN"))
        await blocker.execute(text("SELECT 1 FROM voucher WHERE id = :id FOR UPDATE"), {"id": uuid.UUID(voucher["id"])})
        monkeypatch.setattr(fast, "_CONTEXT", fast._CONTEXT.replace("FOR UPDATE OF v", "FOR UPDATE OF v NOWAIT"))
        blocked = await client.post(
            "/v1/redemptions", json=hold_body(voucher["code"], world.enterprise["uscc"], "PO-2",
                                              [("accelerator:domestic", 1_000_000)]),
            headers=auth(world.provider_key, **{"Idempotency-Key": "b"}),
        )
        await blocker.rollback()
    assert blocked.status_code in (409, 503), blocked.text
    assert blocked.headers["content-type"].startswith("application/problem+json")
    monkeypatch.undo()
    again = await client.post(
        "/v1/redemptions", json=hold_body(voucher["code"], world.enterprise["uscc"], "PO-2",
                                          [("accelerator:domestic", 1_000_000)]),
        headers=auth(world.provider_key, **{"Idempotency-Key": "b"}),
    )
    assert again.status_code == 201, again.text
    detail = await client.get(f"/v1/vouchers/{voucher['id']}", headers=auth(world.operator))
    assert detail.json()["balances"]["used"] == 600_000


async def test_a_connection_lost_in_the_fast_path_is_answered_and_releases_the_key(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database connection dies between the fast path's statements: the connection is
    invalidated (not handed out again), the answer is a problem, nothing was written, and a
    retry with the same Idempotency-Key runs afresh instead of waiting for a stuck claim."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    body = hold_body(voucher["code"], world.enterprise["uscc"], "PO-1", [("accelerator:domestic", 1_000_000)])
    warm = await client.post("/v1/redemptions", json={**body, "order_reference": "PO-0"},
                             headers=auth(world.provider_key, **{"Idempotency-Key": "warm"}))
    assert warm.status_code == 201, warm.text  # the provider's accounts exist: the next one is fast
    monkeypatch.setattr(fast, "_USAGE", "SELECT pg_terminate_backend(pg_backend_pid()), %s, %s, %s")
    lost = await client.post("/v1/redemptions", json=body, headers=auth(world.provider_key, **{"Idempotency-Key": "k"}))
    assert lost.status_code >= 500 and lost.headers["content-type"].startswith("application/problem+json"), lost.text
    monkeypatch.undo()
    again = await client.post("/v1/redemptions", json=body, headers=auth(world.provider_key, **{"Idempotency-Key": "k"}))
    assert again.status_code == 201, again.text
    detail = await client.get(f"/v1/vouchers/{voucher['id']}", headers=auth(world.operator))
    assert detail.json()["balances"]["used"] == 600_000  # the lost attempt moved nothing
