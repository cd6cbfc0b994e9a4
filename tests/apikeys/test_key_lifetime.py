"""A key lives no longer than the key that made or rotated it, and a rotated key manages no
keys (an independent review of API keys, December 2026: each test failed before its fix)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from services.voucher.clock import FrozenClock
from tests.conftest import T0
from tests.support import assert_problem, auth, create, enterprise_payload, make_key

KEYS = "/v1/api-keys"


async def _me(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.get("/v1/me", headers=auth(key))


async def _enterprise(app: Any, client: httpx.AsyncClient) -> str:
    operator = await make_key(app, "operator")
    return (await create(client, operator, "/v1/enterprises", enterprise_payload()))["id"]


async def test_a_key_in_its_grace_period_cannot_rotate_or_revoke_its_successor(
    app: Any, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    """The owner rotates a leaked key with an hour's grace. The leaked key had rotated the
    owner's new key (grace 0: revoked) and been handed a successor that never expires."""
    enterprise_id = await _enterprise(app, client)
    leaked = await make_key(app, "enterprise", enterprise_id=enterprise_id)
    leaked_id = (await _me(client, leaked)).json()["key_id"]
    rotated = await client.post(f"{KEYS}/{leaked_id}/rotate", json={"grace_seconds": 3600}, headers=auth(leaked))
    assert rotated.status_code == 201, rotated.text
    owners = rotated.json()
    stolen = await client.post(f"{KEYS}/{owners['id']}/rotate", json={"grace_seconds": 0}, headers=auth(leaked))
    assert_problem(stolen, 403, "replaced_key_manages_no_keys")
    assert owners["prefix"] in stolen.json()["detail"]
    revoked = await client.post(f"{KEYS}/{owners['id']}/revoke", json={"reason": "x"}, headers=auth(leaked))
    assert_problem(revoked, 403, "replaced_key_manages_no_keys")
    minted = await client.post(KEYS, json={"role": "enterprise", "name": "x", "enterprise_id": enterprise_id},
                               headers=auth(leaked))
    assert minted.status_code == 403, minted.text  # no keys:write, as before
    assert (await _me(client, owners["key"])).status_code == 200
    # It may still end its own grace early.
    itself = await client.post(f"{KEYS}/{leaked_id}/revoke", json={"reason": "done"}, headers=auth(leaked))
    assert itself.status_code == 200, itself.text
    assert (await _me(client, leaked)).status_code == 401
    assert (await _me(client, owners["key"])).status_code == 200


async def test_an_expiring_key_mints_no_key_that_outlives_it(
    app: Any, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    temporary = await make_key(app, "operator", expires_at=T0 + timedelta(hours=1))
    later = await client.post(KEYS, json={"role": "operator", "name": "later", "principal_name": "x",
                                          "expires_at": (T0 + timedelta(days=365)).isoformat()},
                              headers=auth(temporary))
    body = assert_problem(later, 422, "validation_failed")
    assert [e["pointer"] for e in body["errors"]] == ["/expires_at"], body
    earlier = await client.post(KEYS, json={"role": "auditor", "name": "earlier", "principal_name": "y",
                                            "expires_at": (T0 + timedelta(minutes=30)).isoformat()},
                                headers=auth(temporary))
    assert earlier.status_code == 201, earlier.text
    assert earlier.json()["expires_at"].startswith("2026-03-02T01:30:00")
    unbounded = await client.post(KEYS, json={"role": "operator", "name": "forever", "principal_name": "x"},
                                  headers=auth(temporary))
    assert unbounded.status_code == 201, unbounded.text
    assert unbounded.json()["expires_at"].startswith("2026-03-02T02:00:00")  # the creating key's own
    clock.advance(hours=2)
    assert (await _me(client, temporary)).status_code == 401
    assert (await _me(client, unbounded.json()["key"])).status_code == 401
    # A key without an expiry is bound by nothing, as before.
    office = await make_key(app, "operator")
    free = await client.post(KEYS, json={"role": "auditor", "name": "z", "principal_name": "z"}, headers=auth(office))
    assert free.status_code == 201 and free.json()["expires_at"] is None, free.text


async def test_an_expiring_key_cannot_rotate_a_sibling_into_a_key_that_never_expires(
    app: Any, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    enterprise_id = await _enterprise(app, client)
    everyday = await make_key(app, "enterprise", enterprise_id=enterprise_id)
    contractor = await make_key(app, "enterprise", enterprise_id=enterprise_id, expires_at=T0 + timedelta(days=1))
    everyday_id = (await _me(client, everyday)).json()["key_id"]
    taken = await client.post(f"{KEYS}/{everyday_id}/rotate", json={"grace_seconds": 0}, headers=auth(contractor))
    assert taken.status_code == 201, taken.text
    assert taken.json()["expires_at"].startswith("2026-03-03T01:00:00")
    clock.advance(days=2)
    assert (await _me(client, contractor)).status_code == 401
    assert (await _me(client, taken.json()["key"])).status_code == 401
    # The owner's own rotation of a key without an expiry keeps it without one.
    owner = await make_key(app, "enterprise", enterprise_id=enterprise_id)
    owner_id = (await _me(client, owner)).json()["key_id"]
    again = await client.post(f"{KEYS}/{owner_id}/rotate", json={"grace_seconds": 0}, headers=auth(owner))
    assert again.status_code == 201 and again.json()["expires_at"] is None, again.text


async def test_the_keys_a_revoked_key_made_are_found_by_it_and_revoked(app: Any, client: httpx.AsyncClient) -> None:
    """Revoking a key does not revoke the keys it made (an office key revoked when its holder
    leaves must not take every tenant key it provisioned with it); the office finds them by
    `created_by_key_id` and decides (an independent review of keys, December 2026: nothing had
    used the recorded creator)."""
    root = await make_key(app, "operator")
    leaked = await make_key(app, "operator", scopes=["keys:write", "keys:read"])
    minted = await client.post(KEYS, json={"role": "operator", "name": "backdoor", "principal_name": "x",
                                           "scopes": ["keys:read"]}, headers=auth(leaked))
    assert minted.status_code == 201, minted.text
    leaked_id = (await _me(client, leaked)).json()["key_id"]
    assert minted.json()["created_by_key_id"] == leaked_id
    revoked = await client.post(f"{KEYS}/{leaked_id}/revoke", json={"reason": "leaked"}, headers=auth(root))
    assert revoked.status_code == 200, revoked.text
    made = await client.get(KEYS, params={"created_by_key_id": leaked_id}, headers=auth(root))
    assert made.status_code == 200, made.text
    assert [k["id"] for k in made.json()["items"]] == [minted.json()["id"]]
    gone = await client.post(f"{KEYS}/{minted.json()['id']}/revoke", json={"reason": "made by a leaked key"},
                             headers=auth(root))
    assert gone.status_code == 200 and gone.json()["created_by_key_id"] == leaked_id, gone.text
    assert (await _me(client, minted.json()["key"])).status_code == 401
