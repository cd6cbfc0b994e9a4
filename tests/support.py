"""Helpers shared by the tests: keys, valid USCCs, payload builders, problem assertions."""

from __future__ import annotations

import contextlib
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from services.voucher.apikeys import service as apikeys
from services.voucher.apikeys.rules import Role
from services.voucher.uscc import ALPHABET, check_character

_counter = itertools.count(1)


def drop_database(conn: Any, name: str) -> None:
    """DROP DATABASE … WITH (FORCE) as the (non-superuser) test role. PostgreSQL 15 refuses it
    while an autovacuum worker is in that database ("must be a member of the role whose process
    is being terminated"); the worker ends within moments, so try again a few times."""
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    for attempt in range(20):
        try:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except ProgrammingError as exc:
            if "must be a member of the role" not in str(exc) or attempt == 19:
                raise
            time.sleep(0.25)


def new_uscc(region: str = "330110") -> str:
    """A fresh, valid unified social credit code in `region`."""
    rng = random.Random(uuid.uuid4().int)
    body = "91" + region + "".join(rng.choice(ALPHABET) for _ in range(9))
    return body + check_character(body)


def auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


async def make_key(app: Any, role: str, **kwargs: Any) -> str:
    """Issue a key directly through the service (as the CLI does) and return the secret."""
    database = app.state.database
    for name in ("enterprise_id", "provider_id", "principal_id"):
        if isinstance(kwargs.get(name), str):
            kwargs[name] = uuid.UUID(kwargs[name])
    async with database.unit_of_work(write=True) as session:
        role_ = Role(role)
        if role_ in (Role.OPERATOR, Role.AUDITOR) and "principal_id" not in kwargs:
            kwargs.setdefault("principal_name", f"test {role}")
        issued = await apikeys.issue_key(
            session, role=role_, name=kwargs.pop("name", "test"), now=app.state.clock(), **kwargs
        )
        return issued.secret


def programme_payload(**overrides: Any) -> dict[str, Any]:
    n = next(_counter)
    body: dict[str, Any] = {
        "code": f"test-programme-{n}-{uuid.uuid4().hex[:6]}",
        "name": f"Test compute programme {n}",
        "kind": "compute",
        "unit": "CNY",
        "mode": "provider_redemption",
        "budget_total": 25_000_000_000,
        "rate_table": {"accelerator:domestic": 3000, "accelerator:other": 2000},
        "tiers": [{"spend_up_to": 50_000_000, "rate_bps": 5000, "categories": None}],
        "stacking_ceiling_bps": 6000,
        "enterprise_cap": 800_000_000,
        "max_per_voucher": 800_000_000,
        "publicity_days": 5,
    }
    body.update(overrides)
    return body


def enterprise_payload(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uscc": new_uscc(),
        "name": "杭州测试科技有限公司",
        "region_code": "330110",
        "headcount": 20,
        "annual_revenue": 500_000_000,
        "founded_on": "2020-05-01",
        "certifications": ["sme"],
    }
    body.update(overrides)
    return body


def provider_payload(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uscc": new_uscc("330100"),
        "name": "杭州测试算力有限公司",
        "kinds": ["compute", "model"],
        "settlement_account": {"bank_name": "中国工商银行杭州分行", "account_name": "杭州测试算力有限公司",
                               "account_number": "1202020209000654321"},
    }
    body.update(overrides)
    return body


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and code, and carries a request id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["type"] == f"/v1/problems/{code}"
    assert body["title"] and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body  # type: ignore[no-any-return]


def fresh_key() -> dict[str, str]:
    """A new Idempotency-Key header."""
    return {"Idempotency-Key": str(uuid.uuid4())}


async def create(client: httpx.AsyncClient, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=auth(key, **fresh_key()))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def guard_lifted(session: Any, table: str, trigger: str) -> AsyncIterator[None]:
    """Within the block, a guard trigger of `table` lets a test write what the service never
    does (its own instants moved, to stand for time passing): disabled and enabled again on
    PostgreSQL (the test's role owns the table), dropped from the test's own SQLite file."""
    from sqlalchemy import text

    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}"))
        yield
        await session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}"))
    else:
        await session.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))
        yield
