"""The enterprise registry over HTTP: USCC checked per GB 32100-2015, one record per USCC,
filtered cursor pages, and optimistic concurrency on edits."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from services.voucher.uscc import ALPHABET, check_character
from tests.support import (
    assert_problem,
    auth,
    create,
    enterprise_payload,
    new_uscc,
    provider_payload,
)

PATH = "/v1/enterprises"


async def register(client: httpx.AsyncClient, key: str, **overrides: Any) -> dict[str, Any]:
    return await create(client, key, PATH, enterprise_payload(**overrides))


def wrong_check(uscc: str) -> tuple[str, str]:
    """The same code with a wrong check character, and the right one."""
    right = check_character(uscc[:17])
    wrong = next(c for c in ALPHABET if c != right)
    return uscc[:17] + wrong, right


async def read(client: httpx.AsyncClient, key: str, enterprise_id: str) -> httpx.Response:
    response = await client.get(f"{PATH}/{enterprise_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    return response


async def patch(
    client: httpx.AsyncClient, key: str, enterprise_id: str, body: dict[str, Any], if_match: str | None
) -> httpx.Response:
    headers = auth(key) if if_match is None else auth(key, **{"If-Match": if_match})
    return await client.patch(f"{PATH}/{enterprise_id}", json=body, headers=headers)


# -- registration --------------------------------------------------------------------------------


async def test_register_returns_201_location_and_etag(client: httpx.AsyncClient, operator_key: str) -> None:
    body = enterprise_payload(industry_code="I6513", related_parties=[
        {"role": "legal_representative", "party_id": "sha256:9f2c1a7b3e5d8c40"}
    ])
    response = await client.post(PATH, json=body, headers=auth(operator_key))
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"{PATH}/{created['id']}"
    assert response.headers["etag"] == '"v1"'
    assert created["version"] == 1
    assert created["created_at"].startswith("2026-03-02T01:00:00")
    for field in ("uscc", "name", "region_code", "headcount", "annual_revenue", "founded_on",
                  "industry_code", "certifications", "related_parties"):
        assert created[field] == body[field], field
    again = await read(client, operator_key, created["id"])
    assert again.json() == created
    assert again.headers["etag"] == '"v1"'


async def test_duplicate_uscc_is_409_already_exists(client: httpx.AsyncClient, operator_key: str) -> None:
    first = await register(client, operator_key)
    response = await client.post(
        PATH, json=enterprise_payload(uscc=first["uscc"], name="另一家公司"), headers=auth(operator_key)
    )
    assert_problem(response, 409, "already_exists")
    listed = await client.get(PATH, params={"uscc": first["uscc"]}, headers=auth(operator_key))
    assert [e["id"] for e in listed.json()["items"]] == [first["id"]]


async def test_lowercase_uscc_is_normalised_and_counts_as_the_same(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    uscc = new_uscc()
    while uscc.isdigit():  # make sure the code has a letter to lower-case
        uscc = new_uscc()
    created = await register(client, operator_key, uscc=f"  {uscc.lower()} ")
    assert created["uscc"] == uscc
    duplicate = await client.post(PATH, json=enterprise_payload(uscc=uscc), headers=auth(operator_key))
    assert_problem(duplicate, 409, "already_exists")
    found = await client.get(PATH, params={"uscc": uscc.lower()}, headers=auth(operator_key))
    assert [e["id"] for e in found.json()["items"]] == [created["id"]]


@pytest.mark.parametrize(
    ("make", "error_type"),
    [
        (lambda u: u[:17], "uscc_length"),
        (lambda u: u + "0", "uscc_length"),
        (lambda u: u[:10] + "I" + u[11:], "uscc_character"),
        (lambda u: u[:10] + "O" + u[11:], "uscc_character"),
        (lambda u: u[:10] + "Z" + u[11:], "uscc_character"),
        (lambda u: u[:4] + "A" + u[5:], "uscc_region"),
    ],
    ids=["17-chars", "19-chars", "letter-I", "letter-O", "letter-Z", "letter-in-region"],
)
async def test_malformed_uscc_is_a_field_error(
    client: httpx.AsyncClient, operator_key: str, make: Any, error_type: str
) -> None:
    bad = make(new_uscc())
    response = await client.post(PATH, json=enterprise_payload(uscc=bad), headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert [(e["pointer"], e["type"]) for e in problem["errors"]] == [("/uscc", error_type)]
    assert bad not in response.text


async def test_wrong_check_character_names_the_expected_one(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    bad, right = wrong_check(new_uscc())
    response = await client.post(PATH, json=enterprise_payload(uscc=bad), headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    (error,) = problem["errors"]
    assert error["pointer"] == "/uscc"
    assert error["type"] == "uscc_check_character"
    assert error["context"]["expected_check_character"] == right
    # The right character makes the same code acceptable.
    assert (await client.post(PATH, json=enterprise_payload(uscc=bad[:17] + right),
                              headers=auth(operator_key))).status_code == 201


@pytest.mark.parametrize("region", ["33011", "3301100", "33011A", "033011", "", 330110])
async def test_region_code_must_be_six_digits(
    client: httpx.AsyncClient, operator_key: str, region: Any
) -> None:
    response = await client.post(PATH, json=enterprise_payload(region_code=region), headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/region_code"]


async def test_missing_required_fields_and_unknown_fields_are_422(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    body = enterprise_payload(favourite_colour="blue")
    del body["name"]
    response = await client.post(PATH, json=body, headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert {e["pointer"] for e in problem["errors"]} == {"/name", "/favourite_colour"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("headcount", -1), ("annual_revenue", -1), ("annual_revenue", 1.5), ("founded_on", "2020-13-01"),
     ("name", ""), ("certifications", "sme")],
)
async def test_bad_facts_are_422(
    client: httpx.AsyncClient, operator_key: str, field: str, value: Any
) -> None:
    response = await client.post(PATH, json=enterprise_payload(**{field: value}), headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert {e["pointer"] for e in problem["errors"]} == {f"/{field}"}


# -- listing -------------------------------------------------------------------------------------


async def test_list_filters_by_region_and_uscc(client: httpx.AsyncClient, operator_key: str) -> None:
    yuhang = [await register(client, operator_key, uscc=new_uscc("330110"), region_code="330110")
              for _ in range(2)]
    xihu = await register(client, operator_key, uscc=new_uscc("330106"), region_code="330106")

    by_region = await client.get(PATH, params={"region_code": "330110"}, headers=auth(operator_key))
    assert by_region.status_code == 200
    assert [e["id"] for e in by_region.json()["items"]] == [e["id"] for e in yuhang]
    other = await client.get(PATH, params={"region_code": "330106"}, headers=auth(operator_key))
    assert [e["id"] for e in other.json()["items"]] == [xihu["id"]]
    by_uscc = await client.get(PATH, params={"uscc": yuhang[1]["uscc"]}, headers=auth(operator_key))
    assert [e["id"] for e in by_uscc.json()["items"]] == [yuhang[1]["id"]]
    both = await client.get(
        PATH, params={"uscc": xihu["uscc"], "region_code": "330110"}, headers=auth(operator_key)
    )
    assert both.json() == {"items": [], "next_cursor": None}
    bad = await client.get(PATH, params={"region_code": "3301"}, headers=auth(operator_key))
    assert_problem(bad, 422, "validation_failed")


async def test_cursor_pages_walk_every_item_once_in_a_stable_order(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    created = [(await register(client, operator_key))["id"] for _ in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(PATH, params=params, headers=auth(operator_key))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen.extend(e["id"] for e in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "pagination does not end"
    assert seen == created  # no gaps, no duplicates, oldest first
    assert pages == 4
    whole = await client.get(PATH, params={"limit": 100}, headers=auth(operator_key))
    assert [e["id"] for e in whole.json()["items"]] == created
    assert whole.json()["next_cursor"] is None


async def test_a_cursor_stays_valid_when_rows_are_added(client: httpx.AsyncClient, operator_key: str) -> None:
    first = [(await register(client, operator_key))["id"] for _ in range(3)]
    page = (await client.get(PATH, params={"limit": 2}, headers=auth(operator_key))).json()
    later = (await register(client, operator_key))["id"]
    rest = await client.get(PATH, params={"limit": 10, "cursor": page["next_cursor"]}, headers=auth(operator_key))
    assert [e["id"] for e in page["items"]] + [e["id"] for e in rest.json()["items"]] == first + [later]


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "YzE6bm90LWEtdXVpZA", "eDk6MDAwMA"])
async def test_a_garbage_cursor_is_422_invalid_cursor(
    client: httpx.AsyncClient, operator_key: str, cursor: str
) -> None:
    response = await client.get(PATH, params={"cursor": cursor}, headers=auth(operator_key))
    assert_problem(response, 422, "invalid_cursor")


@pytest.mark.parametrize("limit", [0, -1, 1001, "many"])
async def test_an_out_of_range_limit_is_422(client: httpx.AsyncClient, operator_key: str, limit: Any) -> None:
    response = await client.get(PATH, params={"limit": limit}, headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"][0]["location"] == "query"


# -- editing -------------------------------------------------------------------------------------


async def test_patch_without_if_match_is_428(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key)
    response = await patch(client, operator_key, created["id"], {"headcount": 30}, None)
    assert_problem(response, 428, "precondition_required")
    assert (await read(client, operator_key, created["id"])).json()["headcount"] == created["headcount"]


async def test_patch_with_a_stale_etag_is_412_and_names_the_current_one(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    created = await register(client, operator_key)
    ok = await patch(client, operator_key, created["id"], {"headcount": 30}, '"v1"')
    assert ok.status_code == 200, ok.text
    stale = await patch(client, operator_key, created["id"], {"headcount": 99}, '"v1"')
    problem = assert_problem(stale, 412, "precondition_failed")
    assert problem["current_etag"] == '"v2"'
    assert (await read(client, operator_key, created["id"])).json()["headcount"] == 30


async def test_patch_success_bumps_the_etag_and_changes_only_what_was_sent(
    client: httpx.AsyncClient, operator_key: str, clock: Any
) -> None:
    created = await register(client, operator_key)
    etag = (await read(client, operator_key, created["id"])).headers["etag"]
    clock.advance(hours=1)
    response = await patch(
        client, operator_key, created["id"], {"headcount": 55, "certifications": ["high_tech", "sme"]}, etag
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["etag"] == '"v2"'
    assert body["version"] == 2
    assert body["headcount"] == 55
    assert body["certifications"] == ["high_tech", "sme"]
    assert body["updated_at"].startswith("2026-03-02T02:00:00")
    assert body["created_at"] == created["created_at"]
    for field in ("name", "uscc", "region_code", "annual_revenue", "founded_on"):
        assert body[field] == created[field], field
    again = await read(client, operator_key, created["id"])
    assert again.headers["etag"] == '"v2"'
    assert again.json() == body


async def test_patch_with_nothing_new_keeps_the_version(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key)
    response = await patch(client, operator_key, created["id"], {"headcount": created["headcount"]}, '"v1"')
    assert response.status_code == 200
    assert response.headers["etag"] == '"v1"'


@pytest.mark.parametrize("if_match", ['W/"v1"', '"v7", "v1"'])
async def test_if_match_weak_and_lists_are_accepted(
    client: httpx.AsyncClient, operator_key: str, if_match: str
) -> None:
    created = await register(client, operator_key)
    response = await patch(client, operator_key, created["id"], {"name": "改名后的公司"}, if_match)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "改名后的公司"
    assert response.headers["etag"] == '"v2"'


async def test_patch_each_field_alone(client: httpx.AsyncClient, operator_key: str) -> None:
    """A partial update needs only the fields it changes (none of them is required)."""
    created = await register(client, operator_key)
    changes = [
        {"name": "新名字"},
        {"region_code": "330106"},
        {"headcount": 7},
        {"annual_revenue": 1},
        {"founded_on": "2019-01-01"},
        {"industry_code": "I6513"},
        {"certifications": []},
        {"blacklist_records": [{"recorded_on": "2024-01-02", "authority": "court"}]},
        {"related_parties": [{"role": "shareholder", "party_id": "sha256:0123456789abcdef"}]},
    ]
    etag = '"v1"'
    for change in changes:
        response = await patch(client, operator_key, created["id"], change, etag)
        assert response.status_code == 200, (change, response.text)
        (field, value), = change.items()
        shown = response.json()[field]
        if field == "blacklist_records":
            assert shown == [{"recorded_on": "2024-01-02", "authority": "court", "reason": "",
                              "lifted_on": None}]
        else:
            assert shown == value
        assert response.headers["etag"] != etag
        etag = response.headers["etag"]
    assert etag == f'"v{1 + len(changes)}"'


async def test_patch_null_on_a_required_field_is_422(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key)
    for field in ("name", "region_code", "certifications"):
        response = await patch(client, operator_key, created["id"], {field: None}, '"v1"')
        problem = assert_problem(response, 422, "validation_failed")
        assert problem["errors"][0]["type"] == "null_not_allowed"
        assert field in problem["errors"][0]["message"]
    shown = (await read(client, operator_key, created["id"])).json()
    assert shown["name"] == created["name"] and shown["version"] == 1


async def test_patch_null_on_a_nullable_field_clears_it(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key, industry_code="I6513")
    response = await patch(client, operator_key, created["id"], {"headcount": None, "industry_code": None}, '"v1"')
    assert response.status_code == 200, response.text
    assert response.json()["headcount"] is None
    assert response.json()["industry_code"] is None
    assert (await read(client, operator_key, created["id"])).json()["headcount"] is None


async def test_patch_unknown_or_immutable_fields_are_422(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key)
    for body in ({"nickname": "x"}, {"uscc": new_uscc()}, {"id": created["id"]}, {"version": 9}):
        response = await patch(client, operator_key, created["id"], body, '"v1"')
        problem = assert_problem(response, 422, "validation_failed")
        assert problem["errors"][0]["pointer"] == "/" + next(iter(body))
    assert (await read(client, operator_key, created["id"])).json()["version"] == 1


async def test_patch_invalid_value_is_422(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await register(client, operator_key)
    response = await patch(client, operator_key, created["id"], {"region_code": "12345"}, '"v1"')
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"][0]["pointer"] == "/region_code"


async def test_unknown_enterprise_is_404(client: httpx.AsyncClient, operator_key: str) -> None:
    missing = "0190d5d2-0000-7000-8000-000000000000"
    assert_problem(await client.get(f"{PATH}/{missing}", headers=auth(operator_key)), 404, "not_found")
    assert_problem(await patch(client, operator_key, missing, {"headcount": 1}, "*"), 404, "not_found")
    assert_problem(await client.get(f"{PATH}/not-a-uuid", headers=auth(operator_key)), 422, "validation_failed")


async def test_names_are_one_visible_line_without_invisible_formatting(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    """A name is printed on the public notice, statements and the console: blank, invisible,
    direction-overridden or multi-line text is refused on every registry, on create and on
    PATCH, and nothing is written; the spaces around a name are not kept."""
    from tests.support import programme_payload, provider_payload

    bad = {"   ": "text_blank", "\u200b\u200b": "text_blank", "杭州\u202e司公限有技科\u202c": "text_format_character",
           "杭州\u2066科技\u2069有限公司": "text_format_character", "杭州\u200d科技": "text_format_character",
           "line1\nline2": "text_control_character", "杭州\x1b[31m科技": "text_control_character"}
    for path, payload, fields in (("/v1/enterprises", enterprise_payload, ("name",)),
                                  ("/v1/providers", provider_payload, ("name",)),
                                  ("/v1/programmes", programme_payload, ("name",))):
        for name, code in bad.items():
            for field in fields:
                refused = await client.post(path, json=payload(**{field: name}), headers=auth(operator_key))
                problem = assert_problem(refused, 422, "validation_failed")
                assert [(e["pointer"], e["type"]) for e in problem["errors"]] == [(f"/{field}", code)], problem
        created = await create(client, operator_key, path, payload(name="  杭州未来科技有限公司 "))
        assert created["name"] == "杭州未来科技有限公司"
        if path != "/v1/programmes":
            changed = await client.patch(f"{path}/{created['id']}", json={"name": "杭州\u202e司公"},
                                         headers=auth(operator_key, **{"If-Match": '"v1"'}))
            assert_problem(changed, 422, "validation_failed")
    provider = provider_payload(settlement_account={"bank_name": "中国工商银行", "account_name": "杭州\u202e司公",
                                                    "account_number": "1202021234567890"})
    assert_problem(await client.post("/v1/providers", json=provider, headers=auth(operator_key)),
                   422, "validation_failed")


async def test_a_name_stored_before_the_rule_still_reads(app, client: httpx.AsyncClient, operator_key: str) -> None:
    """The rule is for input: a name already stored with an invisible character or a line
    break reads as it is, in one record and in lists, and a PATCH of another field goes
    through (a read model that checked names had answered 500 for every list holding one)."""
    from sqlalchemy import update

    from services.voucher.tables import Enterprise, Programme, Provider
    from tests.support import programme_payload, provider_payload

    enterprise = await create(client, operator_key, "/v1/enterprises", enterprise_payload())
    provider = await create(client, operator_key, "/v1/providers", provider_payload(settlement_account={
        "bank_name": "中国工商银行", "account_name": "杭州测试算力有限公司", "account_number": "1202021234567890"}))
    programme = await create(client, operator_key, "/v1/programmes", programme_payload())
    async with app.state.database.unit_of_work() as session:
        await session.execute(update(Enterprise).where(Enterprise.id == uuid.UUID(enterprise["id"]))  # type: ignore[arg-type]
                              .values(name="杭州\u200b科技"))
        await session.execute(update(Provider).where(Provider.id == uuid.UUID(provider["id"]))  # type: ignore[arg-type]
                              .values(name="Line1\nLine2", settlement_account={
                                  "bank_name": "工商\u202e银行", "account_name": "  ", "account_number": "1202021234567890"}))
        await session.execute(update(Programme).where(Programme.id == uuid.UUID(programme["id"]))  # type: ignore[arg-type]
                              .values(name="科技\u200e券"))
    for path, name in ((f"/v1/enterprises/{enterprise['id']}", "杭州\u200b科技"),
                       (f"/v1/providers/{provider['id']}", "Line1\nLine2"),
                       (f"/v1/programmes/{programme['id']}", "科技\u200e券")):
        one = await client.get(path, headers=auth(operator_key))
        assert one.status_code == 200 and one.json()["name"] == name, one.text
        listed = await client.get(path.rsplit("/", 1)[0], headers=auth(operator_key))
        assert listed.status_code == 200 and name in [item["name"] for item in listed.json()["items"]], listed.text
    patched = await client.patch(f"/v1/enterprises/{enterprise['id']}", json={"headcount": 5},
                                 headers=auth(operator_key, **{"If-Match": '"v1"'}))
    assert patched.status_code == 200 and patched.json()["name"] == "杭州\u200b科技", patched.text


@pytest.mark.parametrize("party_id", ["11010519491231002X", "person:11010519491231002x", "ID11010519491231002X",
                                      "p_11010519491231002X_v1"])
async def test_a_raw_identity_card_number_is_not_a_related_party(
        client: httpx.AsyncClient, operator_key: str, party_id: str) -> None:
    """Related parties are stable hashed identifiers: a raw identity card number (its check
    character right) had been stored as sent and shown in audit events, anomaly reports and the
    refusals providers read (an independent review, December 2026). Refused on an enterprise
    and on a provider, created or changed; a hashed identifier is taken."""
    parties = [{"role": "legal_representative", "party_id": party_id}]
    for path, payload in (("/v1/enterprises", enterprise_payload(related_parties=parties)),
                          ("/v1/providers", provider_payload(related_parties=parties))):
        problem = assert_problem(await client.post(path, json=payload, headers=auth(operator_key)),
                                 422, "validation_failed")
        assert [e["pointer"] for e in problem["errors"]] == ["/related_parties/0/party_id"], problem
    created = await create(client, operator_key, "/v1/providers", provider_payload(
        related_parties=[{"role": "shareholder", "party_id": "sha256:" + "ab" * 32}]))
    etag = (await client.get(f"/v1/providers/{created['id']}", headers=auth(operator_key))).headers["etag"]
    changed = await client.patch(f"/v1/providers/{created['id']}", json={"related_parties": parties},
                                 headers=auth(operator_key, **{"If-Match": etag}))
    assert_problem(changed, 422, "validation_failed")
    # Taken: an identifier whose check character is wrong, or whose birth date is no day, and a
    # company's USCC that happens to pass the card's check too (a review of the rule).
    for taken in ("110105194912310021", "110105194913310021", "913301101179362346", "uscc:913301101179362346"):
        response = await client.post("/v1/enterprises", json=enterprise_payload(related_parties=[
            {"role": "shareholder", "party_id": taken}]), headers=auth(operator_key))
        assert response.status_code == 201, (taken, response.text)
