"""A key revoked while one of its requests is still arriving does not finish it (an independent
review, December 2026): a leaked key had sent the start of a body, waited out the office's
revocation and then finished a key creation, or a rotation that took the owner's key from it.
A body that took its time has its key checked again once read; a key-management operation reads
its calling key again inside its transaction, held FOR SHARE against a revocation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.voucher.http import unit_of_work
from services.voucher.tables import ApiKey, Redemption
from tests.http.test_body_limits import Call
from tests.support import auth
from tests.world import build_world, hold_body

KEYS = "/v1/api-keys"


class Trickle(Call):
    """A body in two parts; `between` runs after the first part is handed over."""

    def __init__(self, body: bytes, between: Callable[[], Awaitable[None]]) -> None:
        super().__init__([body[:10], body[10:]])
        self.between = between

    async def receive(self) -> dict[str, Any]:
        if self.read == 1:
            await self.between()
        return await super().receive()


async def send(app: Any, path: str, body: dict[str, Any], key: str, between: Callable[[], Awaitable[None]]) -> Trickle:
    raw = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"idempotency-key", b"in-flight-1"),
               (b"authorization", f"Bearer {key}".encode()), (b"content-length", str(len(raw)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 5000), "server": ("test", 80)}
    made = Trickle(raw, between)
    await asyncio.wait_for(app(scope, made.receive, made.send), timeout=30)
    return made


async def count(app: Any, table: Any) -> int:
    async with app.state.database.unit_of_work(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())


def revoking(client: httpx.AsyncClient, operator_key: str, key_id: str, *, then_wait: float = 0.0
             ) -> Callable[[], Awaitable[None]]:
    async def revoke() -> None:
        revoked = await client.post(f"{KEYS}/{key_id}/revoke", json={"reason": "leaked"}, headers=auth(operator_key))
        assert revoked.status_code == 200, revoked.text
        await asyncio.sleep(then_wait)
    return revoke


async def leaked_operator_key(client: httpx.AsyncClient, operator_key: str) -> dict[str, Any]:
    created = await client.post(KEYS, json={"role": "operator", "name": "leaked", "principal_name": "desk 2"},
                                headers=auth(operator_key))
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("slow", [True, False], ids=["body-read-slowly", "body-read-at-once"])
async def test_a_key_revoked_mid_request_creates_no_key(
    app: Any, client: httpx.AsyncClient, operator_key: str, monkeypatch: pytest.MonkeyPatch, slow: bool
) -> None:
    """Slow: the key is checked again after the body (401 before any transaction). At once: the
    check after the body is skipped, and the key creation's own read of its caller refuses."""
    monkeypatch.setattr(unit_of_work, "RECHECK_AFTER_SECONDS", 0.2 if slow else 3600.0, raising=False)
    leaked = await leaked_operator_key(client, operator_key)
    before = await count(app, ApiKey)
    made = await send(app, KEYS, {"role": "operator", "name": "persistence", "principal_name": "attacker"},
                      leaked["key"], revoking(client, operator_key, leaked["id"], then_wait=0.4 if slow else 0))
    assert made.status == 401 and made.body["code"] == "api_key_revoked", made.body
    assert await count(app, ApiKey) == before


async def test_a_key_revoked_mid_rotation_keeps_the_owners_key(
    app: Any, client: httpx.AsyncClient, operator_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unit_of_work, "RECHECK_AFTER_SECONDS", 3600.0, raising=False)
    leaked = await leaked_operator_key(client, operator_key)
    owners = await client.post(KEYS, json={"role": "auditor", "name": "owner's", "principal_name": "audit office"},
                               headers=auth(operator_key))
    assert owners.status_code == 201, owners.text
    made = await send(app, f"{KEYS}/{owners.json()['id']}/rotate", {"grace_seconds": 0}, leaked["key"],
                      revoking(client, operator_key, leaked["id"]))
    assert made.status == 401 and made.body["code"] == "api_key_revoked", made.body
    assert (await client.get("/v1/me", headers=auth(owners.json()["key"]))).status_code == 200


async def test_a_provider_key_revoked_while_its_redeem_arrives_moves_nothing(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unit_of_work, "RECHECK_AFTER_SECONDS", 0.2, raising=False)
    world = await build_world(app, client)
    voucher = await world.issue(1_000_000)
    me = (await client.get("/v1/me", headers=auth(world.provider_key))).json()
    made = await send(app, "/v1/redemptions", hold_body(voucher["code"], world.enterprise["uscc"], "PO-LATE",
                                                       [("accelerator:domestic", 10_000)]),
                      world.provider_key, revoking(client, world.operator, me["key_id"], then_wait=0.4))
    assert made.status == 401 and made.body["code"] == "api_key_revoked", made.body
    assert await count(app, Redemption) == 0


async def test_two_keys_revoking_each_other_at_once_do_not_deadlock(
    app: Any, client: httpx.AsyncClient, operator_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each locks the key it changes, then reads its own row again (FOR SHARE): in opposite
    orders, two keys revoking each other deadlocked and one was answered 409 (a review of the
    change). Both rows are now locked in id order: the first revocation commits, and the second
    key, revoked by then, is refused as revoked."""
    from services.voucher.apikeys import service as apikeys_service

    a, b = await leaked_operator_key(client, operator_key), await leaked_operator_key(client, operator_key)
    real, arrived, both = apikeys_service._key_to_change, 0, asyncio.Event()

    async def held(session: Any, actor: Any, key_id: Any) -> Any:
        nonlocal arrived
        key = await real(session, actor, key_id)
        arrived += 1
        if arrived == 2:
            both.set()
        try:  # with the rows locked in order, the other request waits inside `real` instead
            await asyncio.wait_for(both.wait(), 1)
        except TimeoutError:
            pass
        return key

    monkeypatch.setattr(apikeys_service, "_key_to_change", held)
    answers = await asyncio.gather(
        client.post(f"{KEYS}/{b['id']}/revoke", json={"reason": "x"}, headers=auth(a["key"])),
        client.post(f"{KEYS}/{a['id']}/revoke", json={"reason": "x"}, headers=auth(b["key"])))
    codes = sorted((r.status_code, r.json().get("code")) for r in answers)
    assert codes == [(200, None), (401, "api_key_revoked")], [r.text for r in answers]
