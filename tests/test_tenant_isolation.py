"""DESIGN invariant 8: one tenant never sees or touches another's data; auditors read all and
write nothing. Another tenant's record answers 404, exactly like a missing one, so that not even
its existence leaks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support import (
    assert_problem,
    auth,
    create,
    enterprise_payload,
    programme_payload,
    provider_payload,
)


@dataclass
class Tenant:
    id: str
    key: str
    record: dict[str, Any]


@dataclass
class World:
    ent_a: Tenant
    ent_b: Tenant
    prov_a: Tenant
    prov_b: Tenant
    draft: dict[str, Any]
    open: dict[str, Any]


async def _tenant(client: httpx.AsyncClient, operator_key: str, kind: str) -> Tenant:
    payload = enterprise_payload() if kind == "enterprise" else provider_payload()
    record = await create(client, operator_key, f"/v1/{kind}s", payload)
    issued = await create(
        client, operator_key, "/v1/api-keys", {"role": kind, "name": "tenant", f"{kind}_id": record["id"]}
    )
    return Tenant(record["id"], issued["key"], record)


@pytest.fixture
async def world(client: httpx.AsyncClient, operator_key: str) -> World:
    draft = await create(client, operator_key, "/v1/programmes", programme_payload())
    opened = await create(client, operator_key, "/v1/programmes", programme_payload())
    response = await client.post(f"/v1/programmes/{opened['id']}/open", headers=auth(operator_key))
    assert response.status_code == 200, response.text
    return World(
        ent_a=await _tenant(client, operator_key, "enterprise"),
        ent_b=await _tenant(client, operator_key, "enterprise"),
        prov_a=await _tenant(client, operator_key, "provider"),
        prov_b=await _tenant(client, operator_key, "provider"),
        draft=draft,
        open=response.json(),
    )


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def assert_hidden(response: httpx.Response, missing: httpx.Response) -> None:
    """Another tenant's record looks exactly like one that does not exist."""
    a = assert_problem(response, 404, "not_found")
    b = assert_problem(missing, 404, "not_found")
    assert a["title"] == b["title"]
    assert set(a) == set(b)


# -- enterprises ---------------------------------------------------------------------------------


async def test_an_enterprise_reads_only_itself(client: httpx.AsyncClient, world: World) -> None:
    a, b = world.ent_a, world.ent_b
    own = await client.get(f"/v1/enterprises/{a.id}", headers=auth(a.key))
    assert own.status_code == 200
    assert own.json()["uscc"] == a.record["uscc"]
    other = await client.get(f"/v1/enterprises/{b.id}", headers=auth(a.key))
    missing = await client.get(f"/v1/enterprises/{uuid.uuid4()}", headers=auth(a.key))
    assert_hidden(other, missing)
    assert b.record["uscc"] not in other.text and b.record["name"] not in other.text


async def test_an_enterprise_lists_only_itself_whatever_the_filter(
    client: httpx.AsyncClient, world: World
) -> None:
    a, b = world.ent_a, world.ent_b
    assert ids(await client.get("/v1/enterprises", headers=auth(a.key))) == [a.id]
    assert ids(await client.get("/v1/enterprises", headers=auth(b.key))) == [b.id]
    by_uscc = await client.get("/v1/enterprises", params={"uscc": b.record["uscc"]}, headers=auth(a.key))
    assert ids(by_uscc) == []
    by_region = await client.get("/v1/enterprises", params={"region_code": "330110"}, headers=auth(a.key))
    assert ids(by_region) == [a.id]


async def test_an_enterprise_cannot_edit_any_enterprise(client: httpx.AsyncClient, world: World) -> None:
    a, b = world.ent_a, world.ent_b
    for target in (a.id, b.id):  # the same answer for its own and another's: nothing leaks
        response = await client.patch(
            f"/v1/enterprises/{target}", json={"headcount": 1}, headers=auth(a.key, **{"If-Match": "*"})
        )
        assert_problem(response, 403, "insufficient_scope")
    assert_problem(
        await client.post("/v1/enterprises", json=enterprise_payload(), headers=auth(a.key)),
        403, "insufficient_scope",
    )


# -- providers -----------------------------------------------------------------------------------


async def test_a_provider_reads_only_itself(client: httpx.AsyncClient, world: World) -> None:
    a, b = world.prov_a, world.prov_b
    own = await client.get(f"/v1/providers/{a.id}", headers=auth(a.key))
    assert own.status_code == 200
    assert own.json()["uscc"] == a.record["uscc"]
    other = await client.get(f"/v1/providers/{b.id}", headers=auth(a.key))
    missing = await client.get(f"/v1/providers/{uuid.uuid4()}", headers=auth(a.key))
    assert_hidden(other, missing)
    assert ids(await client.get("/v1/providers", headers=auth(a.key))) == [a.id]
    assert ids(await client.get("/v1/providers", params={"status": "pending"}, headers=auth(a.key))) == [a.id]
    assert ids(await client.get("/v1/providers", params={"status": "approved"}, headers=auth(a.key))) == []


async def test_a_provider_cannot_change_any_provider(
    client: httpx.AsyncClient, operator_key: str, world: World
) -> None:
    a, b = world.prov_a, world.prov_b
    for target in (a.id, b.id):
        approve = await client.post(
            f"/v1/providers/{target}/approve", json={"reason": "self-approval"}, headers=auth(a.key)
        )
        assert_problem(approve, 403, "insufficient_scope")
        edit = await client.patch(
            f"/v1/providers/{target}", json={"name": "x"}, headers=auth(a.key, **{"If-Match": "*"})
        )
        assert_problem(edit, 403, "insufficient_scope")
    shown = await client.get(f"/v1/providers/{a.id}", headers=auth(operator_key))
    assert shown.json()["status"] == "pending" and shown.json()["version"] == 1


async def test_an_enterprise_key_cannot_read_providers(client: httpx.AsyncClient, world: World) -> None:
    key = world.ent_a.key
    for path in ("/v1/providers", f"/v1/providers/{world.prov_a.id}"):
        problem = assert_problem(await client.get(path, headers=auth(key)), 403, "insufficient_scope")
        assert problem["required_scopes"] == ["providers:read"]


async def test_a_provider_key_cannot_read_enterprises(client: httpx.AsyncClient, world: World) -> None:
    key = world.prov_a.key
    for path in ("/v1/enterprises", f"/v1/enterprises/{world.ent_a.id}"):
        problem = assert_problem(await client.get(path, headers=auth(key)), 403, "insufficient_scope")
        assert problem["required_scopes"] == ["enterprises:read"]


# -- programmes: drafts are staff-only -------------------------------------------------------------


@pytest.mark.parametrize("who", ["ent_a", "prov_a"])
async def test_tenants_do_not_see_draft_programmes(client: httpx.AsyncClient, world: World, who: str) -> None:
    key = getattr(world, who).key
    draft = await client.get(f"/v1/programmes/{world.draft['id']}", headers=auth(key))
    missing = await client.get(f"/v1/programmes/{uuid.uuid4()}", headers=auth(key))
    assert_hidden(draft, missing)
    assert world.draft["code"] not in draft.text
    enrolments = await client.get(f"/v1/programmes/{world.draft['id']}/enrolments", headers=auth(key))
    assert_problem(enrolments, 404, "not_found")
    opened = await client.get(f"/v1/programmes/{world.open['id']}", headers=auth(key))
    assert opened.status_code == 200
    assert ids(await client.get("/v1/programmes", headers=auth(key))) == [world.open["id"]]
    assert ids(await client.get("/v1/programmes", params={"status": "draft"}, headers=auth(key))) == []


async def test_staff_see_draft_programmes(
    client: httpx.AsyncClient, world: World, operator_key: str, auditor_key: str
) -> None:
    for key in (operator_key, auditor_key):
        assert (await client.get(f"/v1/programmes/{world.draft['id']}", headers=auth(key))).status_code == 200
        listed = ids(await client.get("/v1/programmes", headers=auth(key)))
        assert listed == [world.draft["id"], world.open["id"]]


# -- auditors: read everything, write nothing ------------------------------------------------------


async def test_an_auditor_reads_everything(
    client: httpx.AsyncClient, world: World, auditor_key: str
) -> None:
    key = auth(auditor_key)
    assert set(ids(await client.get("/v1/enterprises", headers=key))) == {world.ent_a.id, world.ent_b.id}
    assert set(ids(await client.get("/v1/providers", headers=key))) == {world.prov_a.id, world.prov_b.id}
    for path in (f"/v1/enterprises/{world.ent_b.id}", f"/v1/providers/{world.prov_b.id}",
                 f"/v1/programmes/{world.draft['id']}/enrolments"):
        assert (await client.get(path, headers=key)).status_code == 200, path
    keys = await client.get("/v1/api-keys", params={"limit": 200}, headers=key)
    roles = {k["role"] for k in keys.json()["items"]}
    assert {"operator", "auditor", "enterprise", "provider"} <= roles


async def test_an_auditor_cannot_write_anything(
    client: httpx.AsyncClient, world: World, operator_key: str, auditor_key: str
) -> None:
    programme, draft = world.open["id"], world.draft["id"]
    ent, prov = world.ent_a.id, world.prov_a.id
    own_key_id = (await client.get("/v1/me", headers=auth(auditor_key))).json()["key_id"]
    writes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/v1/programmes", programme_payload()),
        ("PATCH", f"/v1/programmes/{draft}", {"name": "audited"}),
        ("POST", f"/v1/programmes/{draft}/open", None),
        ("POST", f"/v1/programmes/{programme}/close", None),
        ("PUT", f"/v1/programmes/{draft}/enrolments/{prov}", None),
        ("DELETE", f"/v1/programmes/{draft}/enrolments/{prov}", None),
        ("POST", "/v1/enterprises", enterprise_payload()),
        ("PATCH", f"/v1/enterprises/{ent}", {"headcount": 1}),
        ("POST", "/v1/providers", provider_payload()),
        ("PATCH", f"/v1/providers/{prov}", {"name": "audited"}),
        ("POST", f"/v1/providers/{prov}/approve", {"reason": "audit"}),
        ("POST", f"/v1/providers/{prov}/suspend", {"reason": "audit"}),
        ("POST", "/v1/api-keys", {"role": "auditor", "name": "x", "principal_name": "me"}),
        ("POST", f"/v1/api-keys/{own_key_id}/revoke", {"reason": "audit"}),
        ("POST", f"/v1/api-keys/{own_key_id}/rotate", {"grace_seconds": 0}),
    ]
    for method, path, body in writes:
        response = await client.request(
            method, path, json=body, headers=auth(auditor_key, **{"If-Match": "*"})
        )
        assert_problem(response, 403, "insufficient_scope")

    # Nothing changed.
    op = auth(operator_key)
    assert (await client.get(f"/v1/programmes/{draft}", headers=op)).json()["status"] == "draft"
    assert (await client.get(f"/v1/programmes/{programme}", headers=op)).json()["status"] == "open"
    assert ids(await client.get(f"/v1/programmes/{draft}/enrolments", headers=op)) == []
    assert (await client.get(f"/v1/enterprises/{ent}", headers=op)).json()["version"] == 1
    assert (await client.get(f"/v1/providers/{prov}", headers=op)).json()["status"] == "pending"
    assert len(ids(await client.get("/v1/enterprises", headers=op))) == 2
    assert len(ids(await client.get("/v1/providers", headers=op))) == 2
    assert (await client.get("/v1/me", headers=auth(auditor_key))).status_code == 200


async def test_tenants_cannot_write_programmes(client: httpx.AsyncClient, world: World) -> None:
    for tenant in (world.ent_a, world.prov_a):
        assert_problem(
            await client.post("/v1/programmes", json=programme_payload(), headers=auth(tenant.key)),
            403, "insufficient_scope",
        )
        assert_problem(
            await client.put(f"/v1/programmes/{world.open['id']}/enrolments/{world.prov_a.id}",
                             headers=auth(tenant.key)),
            403, "insufficient_scope",
        )
