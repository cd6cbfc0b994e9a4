"""API keys over HTTP: shown once, stored as a hash, scoped by role, expiring, revocable,
rotatable, and each tenant manages only its own principal's keys."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.voucher.apikeys.rules import ROLE_SCOPES, Role, Scope
from services.voucher.tables import ApiKey
from tests.conftest import T0
from tests.support import assert_problem, auth, create, enterprise_payload, provider_payload

KEYS = "/v1/api-keys"


async def new_enterprise(client: httpx.AsyncClient, operator_key: str) -> dict[str, Any]:
    return await create(client, operator_key, "/v1/enterprises", enterprise_payload())


async def new_provider(client: httpx.AsyncClient, operator_key: str) -> dict[str, Any]:
    return await create(client, operator_key, "/v1/providers", provider_payload())


async def issue(client: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "integration")
    response = await client.post(KEYS, json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def enterprise_key(client: httpx.AsyncClient, operator_key: str, **body: Any) -> dict[str, Any]:
    enterprise = await new_enterprise(client, operator_key)
    return await issue(client, operator_key, role="enterprise", enterprise_id=enterprise["id"], **body)


async def api_key_row(app: Any, key_id: str) -> dict[str, Any]:
    async with app.state.database.unit_of_work(write=False) as session:
        row = (await session.execute(select(ApiKey.__table__).where(ApiKey.id == uuid.UUID(key_id)))).one()
        return dict(row._mapping)


async def status_of(client: httpx.AsyncClient, key: str) -> int:
    return (await client.get("/v1/me", headers=auth(key))).status_code


# -- creation -----------------------------------------------------------------------------------


async def test_operator_creates_a_key_for_every_role(client: httpx.AsyncClient, operator_key: str) -> None:
    enterprise = await new_enterprise(client, operator_key)
    provider = await new_provider(client, operator_key)
    bodies = {
        "enterprise": {"enterprise_id": enterprise["id"]},
        "provider": {"provider_id": provider["id"]},
        "auditor": {"principal_name": "District audit bureau"},
        "operator": {"principal_name": "Programme office, desk 2"},
    }
    for role, extra in bodies.items():
        created = await issue(client, operator_key, role=role, **extra)
        assert created["role"] == role
        assert created["status"] == "active"
        assert created["key"].startswith(created["prefix"] + "_")
        assert created["scopes"] == sorted(s.value for s in ROLE_SCOPES[Role(role)])
        assert created["enterprise_id"] == extra.get("enterprise_id")
        assert created["provider_id"] == extra.get("provider_id")
        me = await client.get("/v1/me", headers=auth(created["key"]))
        assert me.status_code == 200, me.text
        assert me.json()["role"] == role
    # The tenant principals are named after the tenant.
    ent = await issue(client, operator_key, role="enterprise", enterprise_id=enterprise["id"])
    assert ent["principal_name"] == enterprise["name"]


async def test_secret_is_returned_once_and_never_listed_or_read(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    created = await enterprise_key(client, operator_key)
    secret = created["key"]
    secret_half = secret.split("_", 2)[2]

    one = await client.get(f"{KEYS}/{created['id']}", headers=auth(operator_key))
    assert one.status_code == 200
    assert "key" not in one.json()
    assert one.json()["prefix"] == created["prefix"]
    listing = await client.get(KEYS, headers=auth(operator_key), params={"limit": 200})
    assert listing.status_code == 200
    assert created["id"] in {k["id"] for k in listing.json()["items"]}
    own = await client.get(KEYS, headers=auth(secret))
    for response in (one, listing, own):
        assert secret_half not in response.text
        assert all("key" not in item for item in response.json().get("items", []))


async def test_database_holds_only_the_sha256_of_the_key(
    app: Any, client: httpx.AsyncClient, operator_key: str
) -> None:
    created = await enterprise_key(client, operator_key)
    secret = created["key"]
    row = await api_key_row(app, created["id"])
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    secret_half = secret.split("_", 2)[2]
    for column, value in row.items():
        assert secret_half not in str(value), f"column {column} holds the secret"
    assert row["prefix"] == created["prefix"]


async def test_scopes_default_to_the_role_and_a_subset_can_be_requested(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    enterprise = await new_enterprise(client, operator_key)
    narrow = await issue(
        client, operator_key, role="enterprise", enterprise_id=enterprise["id"], scopes=["programmes:read"]
    )
    assert narrow["scopes"] == ["programmes:read"]
    me = (await client.get("/v1/me", headers=auth(narrow["key"]))).json()
    assert me["scopes"] == ["programmes:read"]
    # The narrowed key really lacks what it was not given.
    response = await client.get(f"/v1/enterprises/{enterprise['id']}", headers=auth(narrow["key"]))
    problem = assert_problem(response, 403, "insufficient_scope")
    assert problem["required_scopes"] == ["enterprises:read"]
    assert (await client.get("/v1/programmes", headers=auth(narrow["key"]))).status_code == 200


async def test_a_scope_outside_the_role_is_422(client: httpx.AsyncClient, operator_key: str) -> None:
    enterprise = await new_enterprise(client, operator_key)
    response = await client.post(
        KEYS,
        json={"role": "enterprise", "name": "x", "enterprise_id": enterprise["id"],
              "scopes": ["enterprises:read", "providers:read"]},
        headers=auth(operator_key),
    )
    problem = assert_problem(response, 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/scopes"]
    assert "providers:read" in problem["errors"][0]["message"]
    auditor = await client.post(
        KEYS,
        json={"role": "auditor", "name": "x", "principal_name": "audit", "scopes": ["keys:write"]},
        headers=auth(operator_key),
    )
    assert_problem(auditor, 422, "validation_failed")
    unknown = await client.post(
        KEYS,
        json={"role": "operator", "name": "x", "principal_name": "ops", "scopes": ["root"]},
        headers=auth(operator_key),
    )
    assert_problem(unknown, 422, "validation_failed")


async def test_tenant_keys_must_name_their_tenant(client: httpx.AsyncClient, operator_key: str) -> None:
    for role, field in (("enterprise", "enterprise_id"), ("provider", "provider_id")):
        response = await client.post(KEYS, json={"role": role, "name": "x"}, headers=auth(operator_key))
        problem = assert_problem(response, 422, "validation_failed")
        assert [e["pointer"] for e in problem["errors"]] == [f"/{field}"]


async def test_a_key_cannot_be_bound_to_a_tenant_of_another_role(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    enterprise = await new_enterprise(client, operator_key)
    response = await client.post(
        KEYS,
        json={"role": "provider", "name": "x", "provider_id": str(uuid.uuid4()),
              "enterprise_id": enterprise["id"]},
        headers=auth(operator_key),
    )
    problem = assert_problem(response, 422, "validation_failed")
    assert "/enterprise_id" in {e["pointer"] for e in problem["errors"]}


async def test_unknown_tenant_is_404(client: httpx.AsyncClient, operator_key: str) -> None:
    missing = str(uuid.uuid4())
    assert_problem(
        await client.post(KEYS, json={"role": "enterprise", "name": "x", "enterprise_id": missing},
                          headers=auth(operator_key)),
        404, "not_found",
    )
    assert_problem(
        await client.post(KEYS, json={"role": "provider", "name": "x", "provider_id": missing},
                          headers=auth(operator_key)),
        404, "not_found",
    )


async def test_staff_keys_need_a_principal_name_or_an_existing_principal(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    response = await client.post(KEYS, json={"role": "auditor", "name": "x"}, headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/principal_name"]

    first = await issue(client, operator_key, role="auditor", principal_name="Audit bureau")
    second = await issue(client, operator_key, role="auditor", principal_id=first["principal_id"])
    assert second["principal_id"] == first["principal_id"]
    assert second["principal_name"] == "Audit bureau"
    # An auditor principal cannot be given an operator key.
    wrong_role = await client.post(
        KEYS, json={"role": "operator", "name": "x", "principal_id": first["principal_id"]},
        headers=auth(operator_key),
    )
    assert_problem(wrong_role, 404, "not_found")


async def test_two_keys_of_one_enterprise_share_its_principal(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    enterprise = await new_enterprise(client, operator_key)
    a = await issue(client, operator_key, role="enterprise", enterprise_id=enterprise["id"])
    b = await issue(client, operator_key, role="enterprise", enterprise_id=enterprise["id"])
    assert a["principal_id"] == b["principal_id"]
    assert a["id"] != b["id"] and a["key"] != b["key"] and a["prefix"] != b["prefix"]


async def test_expiry_in_the_past_or_without_a_time_zone_is_422(client: httpx.AsyncClient, operator_key: str) -> None:
    response = await client.post(
        KEYS,
        json={"role": "auditor", "name": "x", "principal_name": "a",
              "expires_at": (T0 - timedelta(seconds=1)).isoformat()},
        headers=auth(operator_key),
    )
    problem = assert_problem(response, 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/expires_at"]
    naive = await client.post(
        KEYS,
        json={"role": "auditor", "name": "x", "principal_name": "a", "expires_at": "2027-01-01T00:00:00"},
        headers=auth(operator_key),
    )
    problem = assert_problem(naive, 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/expires_at"]


# -- expiry, revocation, rotation -------------------------------------------------------------


async def test_a_key_stops_working_when_it_expires(
    client: httpx.AsyncClient, operator_key: str, clock: Any
) -> None:
    expires = T0 + timedelta(hours=1)
    created = await enterprise_key(client, operator_key, expires_at=expires.isoformat())
    assert created["expires_at"].startswith("2026-03-02T02:00:00")
    clock.advance(minutes=59, seconds=59)
    assert await status_of(client, created["key"]) == 200
    clock.advance(seconds=1)
    response = await client.get("/v1/me", headers=auth(created["key"]))
    assert_problem(response, 401, "api_key_expired")
    assert response.headers["www-authenticate"] == "Bearer"
    shown = (await client.get(f"{KEYS}/{created['id']}", headers=auth(operator_key))).json()
    assert shown["status"] == "expired"


async def test_a_revoked_key_is_refused_at_once(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await enterprise_key(client, operator_key)
    assert await status_of(client, created["key"]) == 200
    response = await client.post(
        f"{KEYS}/{created['id']}/revoke", json={"reason": "laptop lost"}, headers=auth(operator_key)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "revoked"
    assert body["revoked_reason"] == "laptop lost"
    assert body["revoked_at"].startswith("2026-03-02T01:00:00")
    assert "key" not in body
    assert_problem(await client.get("/v1/me", headers=auth(created["key"])), 401, "api_key_revoked")
    # Revoking again changes nothing: the first reason stays.
    again = await client.post(
        f"{KEYS}/{created['id']}/revoke", json={"reason": "second thoughts"}, headers=auth(operator_key)
    )
    assert again.status_code == 200
    assert again.json()["revoked_reason"] == "laptop lost"


async def test_revocation_needs_a_reason(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await enterprise_key(client, operator_key)
    response = await client.post(f"{KEYS}/{created['id']}/revoke", json={}, headers=auth(operator_key))
    assert_problem(response, 422, "validation_failed")
    assert await status_of(client, created["key"]) == 200


async def test_rotation_without_grace_stops_the_old_key_at_once(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    old = await enterprise_key(client, operator_key, scopes=["enterprises:read", "keys:self"])
    response = await client.post(
        f"{KEYS}/{old['id']}/rotate", json={"grace_seconds": 0}, headers=auth(operator_key)
    )
    assert response.status_code == 201, response.text
    new = response.json()
    assert response.headers["location"] == f"{KEYS}/{new['id']}"
    assert new["key"] != old["key"]
    assert new["rotated_from_id"] == old["id"]
    assert new["principal_id"] == old["principal_id"]
    assert new["scopes"] == old["scopes"]
    assert_problem(await client.get("/v1/me", headers=auth(old["key"])), 401, "api_key_revoked")
    me = await client.get("/v1/me", headers=auth(new["key"]))
    assert me.status_code == 200
    assert me.json()["key_id"] == new["id"]
    shown = (await client.get(f"{KEYS}/{old['id']}", headers=auth(operator_key))).json()
    assert shown["status"] == "revoked"
    assert shown["revoked_reason"] == "rotated"


async def test_rotation_defaults_to_no_grace(client: httpx.AsyncClient, operator_key: str) -> None:
    old = await enterprise_key(client, operator_key)
    response = await client.post(f"{KEYS}/{old['id']}/rotate", json={}, headers=auth(operator_key))
    assert response.status_code == 201
    assert await status_of(client, old["key"]) == 401


async def test_rotation_with_grace_keeps_the_old_key_until_the_grace_ends(
    client: httpx.AsyncClient, operator_key: str, clock: Any
) -> None:
    old = await enterprise_key(client, operator_key)
    response = await client.post(
        f"{KEYS}/{old['id']}/rotate", json={"grace_seconds": 3600}, headers=auth(operator_key)
    )
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["expires_at"] is None  # the new key keeps the old key's (absent) expiry
    assert await status_of(client, old["key"]) == 200
    assert await status_of(client, new["key"]) == 200
    clock.advance(seconds=3599)
    assert await status_of(client, old["key"]) == 200
    clock.advance(seconds=1)
    assert_problem(await client.get("/v1/me", headers=auth(old["key"])), 401, "api_key_expired")
    assert await status_of(client, new["key"]) == 200


async def test_grace_never_extends_an_earlier_expiry(
    client: httpx.AsyncClient, operator_key: str, clock: Any
) -> None:
    old = await enterprise_key(client, operator_key, expires_at=(T0 + timedelta(minutes=10)).isoformat())
    response = await client.post(
        f"{KEYS}/{old['id']}/rotate", json={"grace_seconds": 3600}, headers=auth(operator_key)
    )
    assert response.status_code == 201
    clock.advance(minutes=10)
    assert_problem(await client.get("/v1/me", headers=auth(old["key"])), 401, "api_key_expired")


async def test_grace_is_bounded(client: httpx.AsyncClient, operator_key: str) -> None:
    old = await enterprise_key(client, operator_key)
    for grace in (-1, 7 * 24 * 3600 + 1):
        response = await client.post(
            f"{KEYS}/{old['id']}/rotate", json={"grace_seconds": grace}, headers=auth(operator_key)
        )
        assert_problem(response, 422, "validation_failed")
    assert await status_of(client, old["key"]) == 200


async def test_a_revoked_or_expired_key_cannot_be_rotated(
    client: httpx.AsyncClient, operator_key: str, clock: Any
) -> None:
    revoked = await enterprise_key(client, operator_key)
    await client.post(f"{KEYS}/{revoked['id']}/revoke", json={"reason": "gone"}, headers=auth(operator_key))
    response = await client.post(f"{KEYS}/{revoked['id']}/rotate", json={}, headers=auth(operator_key))
    problem = assert_problem(response, 409, "conflict")
    assert "revoked" in problem["detail"]

    expiring = await enterprise_key(client, operator_key, expires_at=(T0 + timedelta(minutes=1)).isoformat())
    clock.advance(minutes=1)
    response = await client.post(f"{KEYS}/{expiring['id']}/rotate", json={}, headers=auth(operator_key))
    assert_problem(response, 409, "conflict")


async def test_unknown_key_id_is_404(client: httpx.AsyncClient, operator_key: str) -> None:
    missing = uuid.uuid4()
    assert_problem(await client.get(f"{KEYS}/{missing}", headers=auth(operator_key)), 404, "not_found")
    assert_problem(
        await client.post(f"{KEYS}/{missing}/revoke", json={"reason": "x"}, headers=auth(operator_key)),
        404, "not_found",
    )
    assert_problem(
        await client.post(f"{KEYS}/{missing}/rotate", json={}, headers=auth(operator_key)), 404, "not_found"
    )


# -- tenants manage only their own keys --------------------------------------------------------


async def test_an_enterprise_lists_only_its_own_principals_keys(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    mine = await enterprise_key(client, operator_key)
    second_of_mine = await issue(client, operator_key, role="enterprise", enterprise_id=mine["enterprise_id"])
    theirs = await enterprise_key(client, operator_key)
    response = await client.get(KEYS, headers=auth(mine["key"]))
    assert response.status_code == 200
    assert {k["id"] for k in response.json()["items"]} == {mine["id"], second_of_mine["id"]}
    # Asking for another principal's keys shows nothing rather than widening the view.
    other = await client.get(KEYS, headers=auth(mine["key"]), params={"principal_id": theirs["principal_id"]})
    assert other.json()["items"] == []


async def test_operators_list_every_key_and_can_filter_by_principal(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    a = await enterprise_key(client, operator_key)
    b = await enterprise_key(client, operator_key)
    everything = await client.get(KEYS, headers=auth(operator_key), params={"limit": 200})
    assert {a["id"], b["id"]} <= {k["id"] for k in everything.json()["items"]}
    only_a = await client.get(KEYS, headers=auth(operator_key), params={"principal_id": a["principal_id"]})
    assert [k["id"] for k in only_a.json()["items"]] == [a["id"]]


async def test_an_enterprise_cannot_read_revoke_or_rotate_another_tenants_key(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    mine = await enterprise_key(client, operator_key)
    theirs = await enterprise_key(client, operator_key)
    me = auth(mine["key"])
    assert_problem(await client.get(f"{KEYS}/{theirs['id']}", headers=me), 404, "not_found")
    assert_problem(
        await client.post(f"{KEYS}/{theirs['id']}/revoke", json={"reason": "x"}, headers=me), 404, "not_found"
    )
    assert_problem(await client.post(f"{KEYS}/{theirs['id']}/rotate", json={}, headers=me), 404, "not_found")
    # Nor an operator's key.
    op_key = await issue(client, operator_key, role="operator", principal_name="ops")
    assert_problem(
        await client.post(f"{KEYS}/{op_key['id']}/revoke", json={"reason": "x"}, headers=me), 404, "not_found"
    )
    # All of them still work.
    assert await status_of(client, theirs["key"]) == 200
    assert await status_of(client, op_key["key"]) == 200


async def test_an_enterprise_revokes_and_rotates_its_own_keys(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    mine = await enterprise_key(client, operator_key)
    spare = await issue(client, operator_key, role="enterprise", enterprise_id=mine["enterprise_id"])
    me = auth(mine["key"])
    got = await client.get(f"{KEYS}/{spare['id']}", headers=me)
    assert got.status_code == 200
    revoked = await client.post(f"{KEYS}/{spare['id']}/revoke", json={"reason": "unused"}, headers=me)
    assert revoked.status_code == 200, revoked.text
    assert await status_of(client, spare["key"]) == 401

    rotated = await client.post(f"{KEYS}/{mine['id']}/rotate", json={"grace_seconds": 60}, headers=me)
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["principal_id"] == mine["principal_id"]
    assert new["enterprise_id"] == mine["enterprise_id"]
    assert await status_of(client, new["key"]) == 200


async def test_an_enterprise_cannot_create_keys(client: httpx.AsyncClient, operator_key: str) -> None:
    mine = await enterprise_key(client, operator_key)
    response = await client.post(
        KEYS, json={"role": "enterprise", "name": "x", "enterprise_id": mine["enterprise_id"]},
        headers=auth(mine["key"]),
    )
    problem = assert_problem(response, 403, "insufficient_scope")
    assert problem["required_scopes"] == ["keys:write"]


async def test_a_key_without_key_scopes_cannot_list_or_manage_keys(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    narrow = await enterprise_key(client, operator_key, scopes=["programmes:read"])
    assert_problem(await client.get(KEYS, headers=auth(narrow["key"])), 403, "insufficient_scope")
    assert_problem(
        await client.post(f"{KEYS}/{narrow['id']}/revoke", json={"reason": "x"}, headers=auth(narrow["key"])),
        403, "insufficient_scope",
    )
    assert_problem(
        await client.post(f"{KEYS}/{narrow['id']}/rotate", json={}, headers=auth(narrow["key"])),
        403, "insufficient_scope",
    )
    assert await status_of(client, narrow["key"]) == 200


async def test_an_auditor_reads_keys_but_cannot_create_revoke_or_rotate(
    client: httpx.AsyncClient, operator_key: str, auditor_key: str
) -> None:
    target = await enterprise_key(client, operator_key)
    assert (await client.get(KEYS, headers=auth(auditor_key))).status_code == 200
    assert (await client.get(f"{KEYS}/{target['id']}", headers=auth(auditor_key))).status_code == 200
    create_ = await client.post(
        KEYS, json={"role": "auditor", "name": "x", "principal_name": "me too"}, headers=auth(auditor_key)
    )
    assert_problem(create_, 403, "insufficient_scope")
    revoke = await client.post(
        f"{KEYS}/{target['id']}/revoke", json={"reason": "x"}, headers=auth(auditor_key)
    )
    assert_problem(revoke, 403, "insufficient_scope")
    rotate = await client.post(f"{KEYS}/{target['id']}/rotate", json={}, headers=auth(auditor_key))
    assert_problem(rotate, 403, "insufficient_scope")
    assert await status_of(client, target["key"]) == 200


# -- /v1/me ------------------------------------------------------------------------------------


async def test_me_describes_the_calling_key(client: httpx.AsyncClient, operator_key: str) -> None:
    enterprise = await new_enterprise(client, operator_key)
    provider = await new_provider(client, operator_key)
    ent = await issue(client, operator_key, role="enterprise", enterprise_id=enterprise["id"])
    prov = await issue(client, operator_key, role="provider", provider_id=provider["id"])

    me = (await client.get("/v1/me", headers=auth(ent["key"]))).json()
    assert me == {
        "principal_id": ent["principal_id"],
        "role": "enterprise",
        "key_id": ent["id"],
        "scopes": ["applications:read", "applications:write", "claims:read", "claims:write", "enterprises:read",
                   "events:read", "keys:self", "programmes:read",
                   "redemptions:read", "vouchers:read", "webhooks:manage"],
        "enterprise_id": enterprise["id"],
        "provider_id": None,
        "sandbox": False,
        "now": "2026-03-02T01:00:00Z",
    }
    me = (await client.get("/v1/me", headers=auth(prov["key"]))).json()
    assert me["role"] == "provider"
    assert me["provider_id"] == provider["id"]
    assert me["enterprise_id"] is None
    assert me["scopes"] == [
        "events:read", "keys:self", "programmes:read", "providers:read", "redemptions:read", "redemptions:write",
        "settlements:confirm", "settlements:read", "vouchers:lookup", "webhooks:manage",
    ]

    me = (await client.get("/v1/me", headers=auth(operator_key))).json()
    assert me["role"] == "operator"
    assert me["enterprise_id"] is None and me["provider_id"] is None
    assert set(me["scopes"]) == {s.value for s in ROLE_SCOPES[Role.OPERATOR]}


async def test_me_needs_a_valid_key(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/me"), 401, "unauthenticated")
    assert_problem(await client.get("/v1/me", headers=auth("vk_0123456789_nope")), 401, "invalid_api_key")


async def test_a_staff_key_narrowed_to_keys_self_manages_only_its_own_principals_keys(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    """keys:self means "my principal's keys" for an operator too: a narrowed operator key must not
    revoke, rotate or even list other principals' keys."""
    narrow = await issue(client, operator_key, role="operator", principal_name="desk 3", scopes=["keys:self"])
    sibling = await issue(client, operator_key, role="operator", principal_id=narrow["principal_id"])
    other = await enterprise_key(client, operator_key)
    me = auth(narrow["key"])
    assert_problem(await client.post(f"{KEYS}/{other['id']}/revoke", json={"reason": "x"}, headers=me),
                   404, "not_found")
    assert_problem(await client.post(f"{KEYS}/{other['id']}/rotate", json={}, headers=me), 404, "not_found")
    assert await status_of(client, other["key"]) == 200
    assert_problem(await client.get(f"{KEYS}/{other['id']}", headers=me), 404, "not_found")
    listed = await client.get(KEYS, headers=me, params={"limit": 200})
    assert {k["id"] for k in listed.json()["items"]} == {narrow["id"], sibling["id"]}
    revoked = await client.post(f"{KEYS}/{sibling['id']}/revoke", json={"reason": "spare"}, headers=me)
    assert revoked.status_code == 200, revoked.text
    assert await status_of(client, sibling["key"]) == 401


async def test_a_staff_key_with_keys_read_and_keys_self_reads_all_but_manages_only_its_own(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    reader = await issue(
        client, operator_key, role="operator", principal_name="desk 4", scopes=["keys:read", "keys:self"]
    )
    other = await enterprise_key(client, operator_key)
    me = auth(reader["key"])
    assert (await client.get(f"{KEYS}/{other['id']}", headers=me)).status_code == 200
    listed = await client.get(KEYS, headers=me, params={"limit": 200})
    assert {reader["id"], other["id"]} <= {k["id"] for k in listed.json()["items"]}
    assert_problem(await client.post(f"{KEYS}/{other['id']}/revoke", json={"reason": "x"}, headers=me),
                   404, "not_found")
    assert_problem(await client.post(f"{KEYS}/{other['id']}/rotate", json={}, headers=me), 404, "not_found")
    assert await status_of(client, other["key"]) == 200
    rotated = await client.post(f"{KEYS}/{reader['id']}/rotate", json={}, headers=me)
    assert rotated.status_code == 201, rotated.text


# -- no escalation through key management (issue 19, finding 1; DESIGN §8) -----------------------


async def key_count(app: Any) -> int:
    async with app.state.database.unit_of_work(write=False) as session:
        return len((await session.execute(select(ApiKey.id))).all())


async def test_a_keys_write_only_key_cannot_mint_an_operator_or_tenant_key(
    app: Any, client: httpx.AsyncClient, operator_key: str
) -> None:
    narrow = await issue(client, operator_key, role="operator", principal_name="desk 5", scopes=["keys:write"])
    me = auth(narrow["key"])
    assert_problem(await client.get("/v1/programmes", headers=me), 403, "insufficient_scope")
    provider = await new_provider(client, operator_key)
    before = await key_count(app)
    for body in ({"role": "operator", "name": "e", "principal_name": "e"},
                 {"role": "operator", "name": "e", "principal_id": narrow["principal_id"]},
                 {"role": "provider", "name": "e", "provider_id": provider["id"]},
                 {"role": "auditor", "name": "e", "principal_name": "a", "scopes": ["audit:read"]}):
        problem = assert_problem(await client.post(KEYS, json=body, headers=me), 403, "scope_escalation")
        assert "keys:write" not in problem["scopes_not_held"] and problem["scopes_not_held"]
    assert await key_count(app) == before
    # Within its own scopes it still works: another key-management-only key.
    same = await issue(client, narrow["key"], role="operator", principal_name="desk 6", scopes=["keys:write"])
    assert same["scopes"] == ["keys:write"]


async def test_a_keys_write_only_key_cannot_rotate_a_key_with_more_reach(
    app: Any, client: httpx.AsyncClient, operator_key: str
) -> None:
    narrow = await issue(client, operator_key, role="operator", principal_name="desk 7", scopes=["keys:write"])
    provider = await new_provider(client, operator_key)
    target = await issue(client, operator_key, role="provider", provider_id=provider["id"])
    full_operator = await issue(client, operator_key, role="operator", principal_name="desk 8")
    before = await key_count(app)
    for victim in (target, full_operator):
        rotated = await client.post(f"{KEYS}/{victim['id']}/rotate", json={"grace_seconds": 0},
                                    headers=auth(narrow["key"]))
        assert_problem(rotated, 403, "scope_escalation")
        assert "key" not in rotated.json()
        assert await status_of(client, victim["key"]) == 200
    assert await key_count(app) == before
    row = await api_key_row(app, target["id"])
    assert row["revoked_at"] is None and row["expires_at"] is None


async def test_a_narrowed_staff_key_grants_only_subsets_of_its_own_scopes(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    narrow = await issue(client, operator_key, role="operator", principal_name="desk 9",
                         scopes=["keys:write", "programmes:read", "audit:read"])
    me = auth(narrow["key"])
    reader = await issue(client, narrow["key"], role="auditor", principal_name="reader",
                         scopes=["programmes:read", "audit:read"])
    assert (await client.get("/v1/programmes", headers=auth(reader["key"]))).status_code == 200
    problem = assert_problem(
        await client.post(KEYS, json={"role": "auditor", "name": "x", "principal_name": "x",
                                      "scopes": ["audit:read", "audit:verify"]}, headers=me),
        403, "scope_escalation")
    assert problem["scopes_not_held"] == ["audit:verify"]
    # Rotating the key it made is within its authority.
    rotated = await client.post(f"{KEYS}/{reader['id']}/rotate", json={}, headers=me)
    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["scopes"] == ["audit:read", "programmes:read"]


async def test_an_operator_key_short_of_one_scope_cannot_provision_tenants(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    almost = sorted(s.value for s in ROLE_SCOPES[Role.OPERATOR] - {Scope.SETTLEMENTS_WRITE})
    nearly = await issue(client, operator_key, role="operator", principal_name="desk 10", scopes=almost)
    provider = await new_provider(client, operator_key)
    problem = assert_problem(
        await client.post(KEYS, json={"role": "provider", "name": "x", "provider_id": provider["id"]},
                          headers=auth(nearly["key"])), 403, "scope_escalation")
    assert "redemptions:write" in problem["scopes_not_held"]
    # The full operator key provisions it.
    await issue(client, operator_key, role="provider", provider_id=provider["id"])



# -- one key does not multiply itself (issue 19, finding 6) ------------------------------------


async def test_a_key_in_its_grace_period_cannot_be_rotated_again(client: httpx.AsyncClient, operator_key: str) -> None:
    old = await enterprise_key(client, operator_key)
    first = await client.post(f"{KEYS}/{old['id']}/rotate", json={"grace_seconds": 604800}, headers=auth(old["key"]))
    assert first.status_code == 201, first.text
    for key in (old["key"], operator_key):  # neither the key itself nor an operator
        again = await client.post(f"{KEYS}/{old['id']}/rotate", json={"grace_seconds": 604800}, headers=auth(key))
        problem = assert_problem(again, 409, "key_being_replaced")
        assert problem["successor_id"] == first.json()["id"]
    successor = await client.post(f"{KEYS}/{first.json()['id']}/rotate", json={"grace_seconds": 60},
                                  headers=auth(first.json()["key"]))
    assert successor.status_code == 201, successor.text
    listed = (await client.get(f"{KEYS}", headers=auth(successor.json()["key"]))).json()["items"]
    assert len([k for k in listed if k["revoked_at"] is None]) == 3  # not 2^n: each key rotated once


async def test_a_principal_holds_at_most_the_configured_live_keys(
    app: Any, client: httpx.AsyncClient, operator_key: str
) -> None:
    limit = app.state.settings.max_live_keys_per_principal
    first = await enterprise_key(client, operator_key)
    enterprise_id = first["enterprise_id"]
    for _ in range(limit - 1):
        made = await client.post(KEYS, json={"role": "enterprise", "name": "more", "enterprise_id": enterprise_id},
                                 headers=auth(operator_key, **{"Idempotency-Key": str(uuid.uuid4())}))
        assert made.status_code == 201, made.text
    refused = await client.post(KEYS, json={"role": "enterprise", "name": "one too many", "enterprise_id": enterprise_id},
                                headers=auth(operator_key, **{"Idempotency-Key": str(uuid.uuid4())}))
    problem = assert_problem(refused, 409, "too_many_live_keys")
    assert problem["live_keys"] == limit and problem["max_live_keys"] == limit
    graced = await client.post(f"{KEYS}/{first['id']}/rotate", json={"grace_seconds": 60}, headers=auth(operator_key))
    assert_problem(graced, 409, "too_many_live_keys")  # the old key would stay live beside the new one
    swapped = await client.post(f"{KEYS}/{first['id']}/rotate", json={"grace_seconds": 0}, headers=auth(operator_key))
    assert swapped.status_code == 201, swapped.text  # one out, one in
    await client.post(f"{KEYS}/{swapped.json()['id']}/revoke", json={"reason": "spare"}, headers=auth(operator_key))
    again = await client.post(KEYS, json={"role": "enterprise", "name": "now fits", "enterprise_id": enterprise_id},
                              headers=auth(operator_key, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert again.status_code == 201, again.text


@pytest.mark.parametrize("expires_at", [1_900_000_000, 1_900_000_000_000, "9999-12-31T23:59:59-01:00"])
async def test_a_key_expiry_is_an_rfc3339_instant_within_range(
    client: httpx.AsyncClient, operator_key: str, expires_at: object
) -> None:
    """A number had been read as a Unix time (seconds and milliseconds alike, both 2030), and a
    time past 9999 in UTC answered 'numbers must fit in 64 bits' with no pointer (an independent
    review): as every other instant, it is RFC 3339 text within range, refused at its field."""
    response = await client.post("/v1/api-keys", json={"role": "auditor", "name": "x", "principal_name": "audit",
                                                       "expires_at": expires_at}, headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/expires_at"]
