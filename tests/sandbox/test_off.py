"""Outside sandbox mode the clock cannot move: its endpoints answer 404, no answer carries the
sandbox header, and production refuses to start with sandbox mode on."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from services.voucher.settings import Settings
from tests.support import assert_problem, auth, fresh_key


async def test_the_clock_endpoints_answer_404_when_sandbox_mode_is_off(client: httpx.AsyncClient,
                                                                        operator_key: str) -> None:
    read = await client.get("/v1/sandbox/clock", headers=auth(operator_key))
    assert_problem(read, 404, "sandbox_disabled")
    assert "voucher-sandbox-clock" not in read.headers
    moved = await client.post("/v1/sandbox/clock", json={"advance": "P1D"}, headers=auth(operator_key, **fresh_key()))
    assert_problem(moved, 404, "sandbox_disabled")
    me = (await client.get("/v1/me", headers=auth(operator_key))).json()
    assert me["sandbox"] is False
    # Before any other check: no key, no Idempotency-Key, a key that could never move it.
    assert_problem(await client.get("/v1/sandbox/clock"), 404, "sandbox_disabled")
    assert_problem(await client.post("/v1/sandbox/clock", json={"advance": "P1D"}, headers=auth(operator_key)),
                   404, "sandbox_disabled")
    assert_problem(await client.post("/v1/sandbox/clock", json={}), 404, "sandbox_disabled")


def test_production_refuses_sandbox_mode() -> None:
    with pytest.raises(ValidationError, match="VOUCHER_SANDBOX"):
        Settings(environment="production", database_url="postgresql://u:p@db/voucher", sandbox=True,
                 audit_signing_key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                 secrets_key="ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=")
