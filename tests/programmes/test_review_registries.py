"""An independent review of the registries (programmes, vouchers outside redemption, enterprises,
providers), December 2026: each test failed before its fix."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import auth, create, fresh_key, make_key, programme_payload, provider_payload
from tests.world import World, build_world, hold_body


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client)


async def _etag(client: httpx.AsyncClient, key: str, path: str) -> str:
    response = await client.get(path, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.headers["etag"]


async def test_a_provider_that_no_longer_offers_the_kind_cannot_redeem_it(world: World) -> None:
    """Enrolment needs the provider to offer the programme's kind (docs/decisions.md, Registries);
    dropping the kind afterwards must not leave it redeeming vouchers of that kind."""
    path = f"/v1/providers/{world.provider['id']}"
    patched = await world.client.patch(path, json={"kinds": ["model"]},
                                       headers=auth(world.operator, **{"If-Match": await _etag(world.client, world.operator, path)}))
    assert patched.status_code == 409 and patched.json()["code"] == "provider_kind_mismatch", patched.text
    assert patched.json()["programme_ids"] == [world.programme["id"]]
    voucher = await world.issue(1_000_000)
    held = await world.hold(voucher, 100_000, order="after-kind-kept")  # it still offers compute
    assert held.status_code == 201, held.text


async def test_changing_a_draft_programmes_kind_keeps_enrolments_consistent(app, world: World) -> None:
    """A compute-only provider enrolled in a draft compute programme; the draft becomes a model
    programme; once open, that provider must not redeem its model vouchers."""
    op, client = world.operator, world.client
    programme = await create(client, op, "/v1/programmes", programme_payload())
    provider = await create(client, op, "/v1/providers", provider_payload(kinds=["compute"]))
    approved = await client.post(f"/v1/providers/{provider['id']}/approve", json={"reason": "ok"},
                                 headers=auth(op, **fresh_key()))
    assert approved.status_code == 200, approved.text
    enrolled = await client.put(f"/v1/programmes/{programme['id']}/enrolments/{provider['id']}", headers=auth(op))
    assert enrolled.status_code == 201, enrolled.text
    path = f"/v1/programmes/{programme['id']}"
    patched = await client.patch(path, json={"kind": "model", "rate_table": {"model:registered": 3000}, "tiers": []},
                                 headers=auth(op, **{"If-Match": await _etag(client, op, path)}))
    opened = await client.post(f"{path}/open", headers=auth(op, **fresh_key()))
    assert opened.status_code == 200, opened.text
    voucher = await create(client, op, "/v1/vouchers", {"programme_id": programme["id"],
                                                         "enterprise_id": world.enterprise["id"], "face_value": 1_000_000})
    provider_key = await make_key(app, "provider", provider_id=uuid.UUID(provider["id"]))
    held = await client.post("/v1/redemptions/holds",
                             json=hold_body(voucher["code"], world.enterprise["uscc"], "kind-switch",
                                            [("model:registered", 100_000)]),
                             headers=auth(provider_key, **fresh_key()))
    assert patched.status_code == 409 and patched.json()["code"] == "provider_kind_mismatch", patched.text
    assert patched.json()["provider_ids"] == [provider["id"]]
    assert held.status_code != 201, "a compute-only provider just held a model voucher: " + held.text[:200]


async def test_a_bulk_refusal_of_valid_from_names_its_grant(world: World) -> None:
    """`issue_vouchers_bulk` promises that one refusal names the grant (`grant_index`)."""
    grants = [{"enterprise_id": world.enterprise["id"], "face_value": 100_000} for _ in range(3)]
    grants[2]["valid_from"] = "2020-01-01T00:00:00Z"  # more than a day back
    response = await world.client.post("/v1/vouchers/bulk", json={"programme_id": world.programme["id"], "grants": grants},
                                       headers=auth(world.operator, **fresh_key()))
    assert response.status_code == 422, response.text
    body = response.json()
    pointers = [e.get("pointer") or e.get("field") or str(e.get("loc")) for e in body.get("errors", [])]
    assert pointers == ["/grants/2/valid_from"], body


@pytest.mark.parametrize("verb", ["suspend", "revoke"])
async def test_a_voucher_status_change_needs_a_reason_that_shows(world: World, verb: str) -> None:
    """DESIGN §2: revocation is 'with a reason'; WrittenText exists so that '  \\n ' is never a
    recorded reason (decisions.md, Settlement) — the voucher's reasons do not use it."""
    voucher = await world.issue(1_000_000)
    response = await world.post(f"/v1/vouchers/{voucher['id']}/{verb}", {"reason": " \n "}, key=world.operator)
    assert response.status_code == 422, response.text


async def test_a_providers_webhook_url_must_be_public(world: World) -> None:
    """DESIGN §8: webhook targets must be public addresses, checked at registration."""
    response = await world.client.post("/v1/providers", json=provider_payload(webhook_url="http://127.0.0.1:6379/"),
                                       headers=auth(world.operator, **fresh_key()))
    assert response.status_code == 422, response.text


async def test_a_money_term_is_a_json_integer_not_true(world: World) -> None:
    """`voucher_validity_days` freezes with the money terms; JSON `true` is not 1 day (the
    schema's own rule: 'true is not 1 fen and 3000.0 is not 3000 bps')."""
    response = await world.client.post("/v1/programmes", json=programme_payload(voucher_validity_days=True),
                                       headers=auth(world.operator, **fresh_key()))
    assert response.status_code == 422, response.json().get("voucher_validity_days")


async def test_an_archived_programmes_enrolments_are_history(world: World) -> None:
    """Archived is a closed book: a withdrawal had been recorded on one (a suspicion of the same review)."""
    path = f"/v1/programmes/{world.programme['id']}"
    for verb in ("close", "archive"):
        moved = await world.client.post(f"{path}/{verb}", headers=auth(world.operator, **fresh_key()))
        assert moved.status_code == 200, moved.text
    withdrawn = await world.client.delete(f"{path}/enrolments/{world.provider['id']}", headers=auth(world.operator))
    assert withdrawn.status_code == 409 and withdrawn.json()["code"] == "enrolment_closed", withdrawn.text
    enrolments = await world.client.get(f"{path}/enrolments", headers=auth(world.operator))
    assert [e["provider_id"] for e in enrolments.json()["items"]] == [world.provider["id"]]


# A review of these fixes (December 2026) ---------------------------------------------------


async def _set_webhook_url(database_url: str, uscc: str, url: str) -> None:
    """What a row written before 47c5f98 may hold: the old schema took any http(s) URL."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE provider SET webhook_url = :u WHERE uscc = :uscc"), {"u": url, "uscc": uscc})
    finally:
        await engine.dispose()


@pytest.mark.parametrize("url", ["http://provider.example.com/voucher-events", "https://10.0.0.8/hook"])
async def test_a_provider_recorded_before_the_webhook_rule_still_reads(world: World, database_url: str, url: str) -> None:
    """ProviderPublic inherits ContactUrl from ProviderFields: a stored URL the old schema accepted
    must still be readable (the office needs to read a provider to fix it)."""
    await _set_webhook_url(database_url, world.provider["uscc"], url)
    one = await world.client.get(f"/v1/providers/{world.provider['id']}", headers=auth(world.operator))
    assert one.status_code == 200, one.text
    listing = await world.client.get("/v1/providers", headers=auth(world.operator))
    assert listing.status_code == 200, listing.text
    # and renaming it (a PATCH that does not touch webhook_url) still works
    etag = one.headers.get("etag", '"v2"')
    renamed = await world.client.patch(f"/v1/providers/{world.provider['id']}", json={"name": "renamed"},
                                       headers=auth(world.operator, **{"If-Match": etag}))
    assert renamed.status_code == 200, renamed.text


async def test_a_provider_page_of_another_provider_is_not_broken_by_one_legacy_row(world: World, database_url: str) -> None:
    """The console's dashboard and settlements pages list every provider (`/v1/providers`)."""
    await _set_webhook_url(database_url, world.provider["uscc"], "http://127.0.0.1:8080/hook")
    listing = await world.client.get("/v1/providers", headers=auth(world.operator))
    assert listing.status_code == 200, listing.text[:300]


@pytest.mark.parametrize("url", ["https://localhost./hook", "https://foo.localhost./hook", "https://LOCALHOST/hook"])
async def test_localhost_with_a_trailing_dot_is_refused(world: World, url: str) -> None:
    """The rule refuses `localhost` and `*.localhost`; the FQDN spelling is the same host."""
    response = await world.client.post("/v1/providers", json=provider_payload(webhook_url=url),
                                       headers=auth(world.operator, **fresh_key()))
    assert response.status_code == 422, response.text
