"""The provider registry over HTTP: registration, filtered cursor pages, optimistic edits, and
the status machine pending → approved ⇄ suspended with a kept reason."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.voucher.uscc import ALPHABET, check_character
from tests.support import assert_problem, auth, create, new_uscc, provider_payload

PATH = "/v1/providers"
ACCOUNT = {"bank_name": "中国工商银行杭州余杭支行", "account_name": "杭州云算科技有限公司",
           "account_number": "1202020209000123456"}


async def register(client: httpx.AsyncClient, key: str, **overrides: Any) -> dict[str, Any]:
    return await create(client, key, PATH, provider_payload(**overrides))


async def read(client: httpx.AsyncClient, key: str, provider_id: str) -> httpx.Response:
    response = await client.get(f"{PATH}/{provider_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    return response


async def patch(
    client: httpx.AsyncClient, key: str, provider_id: str, body: dict[str, Any], if_match: str | None
) -> httpx.Response:
    headers = auth(key) if if_match is None else auth(key, **{"If-Match": if_match})
    return await client.patch(f"{PATH}/{provider_id}", json=body, headers=headers)


async def move(
    client: httpx.AsyncClient, key: str, provider_id: str, verb: str, reason: str = "checked"
) -> httpx.Response:
    return await client.post(f"{PATH}/{provider_id}/{verb}", json={"reason": reason}, headers=auth(key))


# -- registration --------------------------------------------------------------------------------


async def test_register_starts_pending_with_location_and_etag(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    body = provider_payload(
        settlement_account=ACCOUNT, webhook_url="https://provider.example.com/voucher-events"
    )
    response = await client.post(PATH, json=body, headers=auth(operator_key))
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"{PATH}/{created['id']}"
    assert response.headers["etag"] == '"v1"'
    assert created["status"] == "pending"
    assert created["status_reason"] is None
    assert created["version"] == 1
    assert created["kinds"] == ["compute", "model"]
    assert created["settlement_account"] == ACCOUNT
    assert created["webhook_url"] == "https://provider.example.com/voucher-events"
    assert (await read(client, operator_key, created["id"])).json() == created


async def test_duplicate_uscc_is_409(client: httpx.AsyncClient, operator_key: str) -> None:
    first = await register(client, operator_key)
    again = await client.post(PATH, json=provider_payload(uscc=first["uscc"].lower()), headers=auth(operator_key))
    assert_problem(again, 409, "already_exists")


async def test_lowercase_uscc_is_normalised(client: httpx.AsyncClient, operator_key: str) -> None:
    uscc = new_uscc("330100")
    created = await register(client, operator_key, uscc=uscc.lower())
    assert created["uscc"] == uscc


async def test_uscc_errors_are_field_errors(client: httpx.AsyncClient, operator_key: str) -> None:
    good = new_uscc("330100")
    right = check_character(good[:17])
    wrong = good[:17] + next(c for c in ALPHABET if c != right)
    cases = {good[:16]: "uscc_length", good[:9] + "I" + good[10:]: "uscc_character",
             good[:9] + "O" + good[10:]: "uscc_character", wrong: "uscc_check_character"}
    for bad, error_type in cases.items():
        response = await client.post(PATH, json=provider_payload(uscc=bad), headers=auth(operator_key))
        problem = assert_problem(response, 422, "validation_failed")
        assert [(e["pointer"], e["type"]) for e in problem["errors"]] == [("/uscc", error_type)]
        if error_type == "uscc_check_character":
            assert problem["errors"][0]["context"]["expected_check_character"] == right


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kinds", []),
        ("kinds", ["storage"]),
        ("kinds", ["compute", "model", "compute"]),
        ("name", ""),
        ("webhook_url", "not a url"),
        ("settlement_account", {"bank_name": "x", "account_name": "y", "account_number": "12"}),
        ("status", "approved"),
    ],
    ids=["no-kinds", "unknown-kind", "too-many-kinds", "empty-name", "bad-url", "short-account",
         "status-is-not-writable"],
)
async def test_bad_registration_fields_are_422(
    client: httpx.AsyncClient, operator_key: str, field: str, value: Any
) -> None:
    response = await client.post(PATH, json=provider_payload(**{field: value}), headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert all(e["pointer"].startswith(f"/{field}") for e in problem["errors"]), problem["errors"]


# -- listing -------------------------------------------------------------------------------------


async def test_list_filters_by_status(client: httpx.AsyncClient, operator_key: str) -> None:
    pending = await register(client, operator_key)
    approved = await register(client, operator_key)
    suspended = await register(client, operator_key)
    assert (await move(client, operator_key, approved["id"], "approve")).status_code == 200
    assert (await move(client, operator_key, suspended["id"], "approve")).status_code == 200
    assert (await move(client, operator_key, suspended["id"], "suspend")).status_code == 200
    for status, expected in (("pending", pending), ("approved", approved), ("suspended", suspended)):
        response = await client.get(PATH, params={"status": status}, headers=auth(operator_key))
        assert response.status_code == 200
        assert [p["id"] for p in response.json()["items"]] == [expected["id"]], status
    everything = await client.get(PATH, headers=auth(operator_key))
    assert [p["id"] for p in everything.json()["items"]] == [pending["id"], approved["id"], suspended["id"]]
    assert_problem(await client.get(PATH, params={"status": "deleted"}, headers=auth(operator_key)),
                   422, "validation_failed")


async def test_cursor_pages_walk_every_item_once(client: httpx.AsyncClient, operator_key: str) -> None:
    created = [(await register(client, operator_key))["id"] for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(PATH, params=params, headers=auth(operator_key))).json()
        assert len(page["items"]) <= 2
        seen.extend(p["id"] for p in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created
    assert_problem(await client.get(PATH, params={"cursor": "nonsense"}, headers=auth(operator_key)),
                   422, "invalid_cursor")


# -- editing -------------------------------------------------------------------------------------


async def test_patch_requires_a_current_if_match(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key)
    assert_problem(await patch(client, operator_key, created["id"], {"name": "新"}, None),
                   428, "precondition_required")
    ok = await patch(client, operator_key, created["id"], {"name": "新"}, '"v1"')
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == '"v2"'
    stale = await patch(client, operator_key, created["id"], {"name": "旧"}, '"v1"')
    problem = assert_problem(stale, 412, "precondition_failed")
    assert problem["current_etag"] == '"v2"'
    # `*` matches any version: it would skip the lost-update check, so it is refused (issue 19)
    for star in ("*", '*, "v2"', 'W/"v1", *'):
        assert_problem(await patch(client, operator_key, created["id"], {"name": "星"}, star),
                       428, "precondition_required")
    assert (await client.get(f"{PATH}/{created['id']}", headers=auth(operator_key))).json()["name"] == "新"


async def test_patch_sets_and_clears_nullable_fields(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key)
    set_ = await patch(
        client, operator_key, created["id"],
        {"settlement_account": ACCOUNT, "webhook_url": "https://p.example.com/hook"}, '"v1"',
    )
    assert set_.status_code == 200, set_.text
    assert set_.json()["settlement_account"] == ACCOUNT
    assert set_.json()["webhook_url"] == "https://p.example.com/hook"
    cleared = await patch(client, operator_key, created["id"],
                          {"settlement_account": None, "webhook_url": None}, '"v2"')
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["settlement_account"] is None
    assert cleared.json()["webhook_url"] is None
    assert cleared.json()["name"] == created["name"]
    assert cleared.headers["etag"] == '"v3"'


async def test_patch_null_on_required_and_unknown_fields_are_422(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    created = await register(client, operator_key)
    for field in ("name", "kinds", "related_parties"):
        problem = assert_problem(await patch(client, operator_key, created["id"], {field: None}, '"v1"'),
                                 422, "validation_failed")
        assert problem["errors"][0]["type"] == "null_not_allowed"
    for body in ({"colour": "red"}, {"status": "approved"}, {"uscc": new_uscc()}):
        assert_problem(await patch(client, operator_key, created["id"], body, '"v1"'), 422, "validation_failed")
    shown = (await read(client, operator_key, created["id"])).json()
    assert shown["version"] == 1 and shown["status"] == "pending"


# -- status machine ------------------------------------------------------------------------------


async def test_pending_approved_suspended_approved_keeps_each_reason(
    client: httpx.AsyncClient, operator_key: str, clock: Any
) -> None:
    created = await register(client, operator_key)
    clock.advance(minutes=5)
    approved = await move(client, operator_key, created["id"], "approve", "qualification documents verified")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["status_reason"] == "qualification documents verified"
    assert approved.json()["updated_at"].startswith("2026-03-02T01:05:00")
    assert approved.headers["etag"] == '"v2"'

    suspended = await move(client, operator_key, created["id"], "suspend", "billing complaints under review")
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended"
    assert suspended.json()["status_reason"] == "billing complaints under review"
    assert suspended.headers["etag"] == '"v3"'

    shown = (await read(client, operator_key, created["id"])).json()
    assert shown["status"] == "suspended"
    assert shown["status_reason"] == "billing complaints under review"

    again = await move(client, operator_key, created["id"], "approve", "complaints resolved")
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "approved"
    assert again.json()["status_reason"] == "complaints resolved"
    assert again.json()["version"] == 4


async def test_suspending_a_pending_provider_is_409(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key)
    problem = assert_problem(await move(client, operator_key, created["id"], "suspend"), 409, "invalid_transition")
    assert problem["current_status"] == "pending"
    assert problem["allowed"] == ["approved"]
    shown = (await read(client, operator_key, created["id"])).json()
    assert shown["status"] == "pending" and shown["status_reason"] is None and shown["version"] == 1


async def test_approving_an_approved_provider_is_409(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key)
    assert (await move(client, operator_key, created["id"], "approve", "first")).status_code == 200
    problem = assert_problem(await move(client, operator_key, created["id"], "approve", "second"),
                             409, "invalid_transition")
    assert problem["current_status"] == "approved"
    assert (await read(client, operator_key, created["id"])).json()["status_reason"] == "first"


async def test_suspending_a_suspended_provider_is_409(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key)
    await move(client, operator_key, created["id"], "approve")
    await move(client, operator_key, created["id"], "suspend", "first")
    problem = assert_problem(await move(client, operator_key, created["id"], "suspend", "second"),
                             409, "invalid_transition")
    assert problem["current_status"] == "suspended"


async def test_a_status_change_needs_a_reason(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key)
    for body in ({}, {"reason": ""}, {"reason": "x" * 501}):
        response = await client.post(f"{PATH}/{created['id']}/approve", json=body, headers=auth(operator_key))
        assert_problem(response, 422, "validation_failed")
    assert (await read(client, operator_key, created["id"])).json()["status"] == "pending"


async def test_status_changes_on_an_unknown_provider_are_404(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    missing = "0190d5d2-0000-7000-8000-000000000000"
    for verb in ("approve", "suspend"):
        assert_problem(await move(client, operator_key, missing, verb), 404, "not_found")
    assert_problem(await client.get(f"{PATH}/{missing}", headers=auth(operator_key)), 404, "not_found")


async def test_status_cannot_be_changed_by_patch(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key)
    response = await patch(client, operator_key, created["id"], {"status": "approved"}, '"v1"')
    assert_problem(response, 422, "validation_failed")
