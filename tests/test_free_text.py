"""Free text people write and others read is checked as input on every field that still took
any string (an independent review, December 2026): a webhook endpoint's description, an API
key's name, a new principal's name and a revocation's reason, a programme's description, a
blacklist record's authority and reason, and the description, accelerator and model of an
order's line. A refusal is one 422 naming the field, and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import (
    assert_problem,
    auth,
    create,
    enterprise_payload,
    fresh_key,
    programme_payload,
)
from tests.world import build_world, hold_body

RTL = "GPU\u202e001A\u202c"  # reads "GPUA100" reversed on a page that honours the override
CONTROL = "billing\x1b[31m system"


def _refused(response: httpx.Response, pointer: str, code: str) -> None:
    problem = assert_problem(response, 422, "validation_failed")
    assert [(e["pointer"], e["type"]) for e in problem["errors"]] == [(pointer, code)], problem


async def test_a_webhook_description_is_one_line_and_empty_is_none(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    headers = auth(world.provider_key)
    for text, code in ((CONTROL, "text_control_character"), ("a\nb", "text_control_character"),
                       ("  ", "text_blank")):
        refused = await client.post("/v1/webhook-endpoints", headers={**headers, **fresh_key()}, json={
            "url": "http://127.0.0.1:9/h", "event_types": ["redemption.captured"], "description": text})
        _refused(refused, "/description", code)
    listed = await client.get("/v1/webhook-endpoints", headers=headers)
    assert listed.json()["items"] == []
    created = await client.post("/v1/webhook-endpoints", headers={**headers, **fresh_key()}, json={
        "url": "http://127.0.0.1:9/h", "event_types": ["redemption.captured"], "description": " billing "})
    assert created.status_code == 201, created.text
    assert created.json()["description"] == "billing"
    path, etag = f"/v1/webhook-endpoints/{created.json()['id']}", created.headers["ETag"]
    changed = await client.patch(path, headers={**headers, "If-Match": etag}, json={"description": RTL + "\n"})
    _refused(changed, "/description", "text_control_character")
    cleared = await client.patch(path, headers={**headers, "If-Match": etag}, json={"description": ""})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["description"] is None


async def test_an_api_key_s_name_principal_and_revocation_reason(client: httpx.AsyncClient, operator_key: str) -> None:
    headers = auth(operator_key)
    _refused(await client.post("/v1/api-keys", headers=headers, json={"role": "auditor", "name": "a\tb",
                                                                      "principal_name": "Audit bureau"}),
             "/name", "text_control_character")
    _refused(await client.post("/v1/api-keys", headers=headers, json={"role": "auditor", "name": "laptop",
                                                                      "principal_name": "审计\u202e局"}),
             "/principal_name", "text_format_character")
    _refused(await client.post("/v1/api-keys", headers=headers, json={"role": "auditor", "name": "laptop",
                                                                      "principal_name": ""}),
             "/principal_name", "text_blank")
    created = await client.post("/v1/api-keys", headers=headers, json={"role": "auditor", "name": " laptop ",
                                                                       "principal_name": " 区审计局 "})
    assert created.status_code == 201, created.text
    assert (created.json()["name"], created.json()["principal_name"]) == ("laptop", "区审计局")
    revoke = f"/v1/api-keys/{created.json()['id']}/revoke"
    _refused(await client.post(revoke, headers=headers, json={"reason": " \n "}), "/reason", "text_blank")
    _refused(await client.post(revoke, headers=headers, json={"reason": "lost\x07"}), "/reason",
             "text_control_character")
    still = await client.get(f"/v1/api-keys/{created.json()['id']}", headers=headers)
    assert still.json()["revoked_at"] is None
    revoked = await client.post(revoke, headers=headers, json={"reason": "laptop lost\nreported by the bureau"})
    assert revoked.status_code == 200, revoked.text


async def test_a_programme_s_description_may_be_empty_never_control_text(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    headers = auth(operator_key)
    _refused(await client.post("/v1/programmes", headers=headers, json=programme_payload(description="a\x07b")),
             "/description", "text_control_character")
    _refused(await client.post("/v1/programmes", headers=headers, json=programme_payload(description=" \n")),
             "/description", "text_blank")
    created = await create(client, operator_key, "/v1/programmes", programme_payload(description=""))
    assert created["description"] == ""
    path = f"/v1/programmes/{created['id']}"
    _refused(await client.patch(path, headers={**headers, "If-Match": '"v1"'}, json={"description": "x\x1b"}),
             "/description", "text_control_character")
    changed = await client.patch(path, headers={**headers, "If-Match": '"v1"'},
                                 json={"description": "第一行\n第二行"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["description"] == "第一行\n第二行"


async def test_a_blacklist_record_s_authority_and_reason(client: httpx.AsyncClient, operator_key: str) -> None:
    headers = auth(operator_key)
    record = {"recorded_on": "2025-03-01", "authority": "市场监管局", "reason": ""}
    for field, text, code in (("authority", "市场\n监管局", "text_control_character"),
                              ("authority", " ", "text_blank"),
                              ("reason", "\x1b[2J", "text_control_character")):
        body = enterprise_payload(blacklist_records=[{**record, field: text}])
        _refused(await client.post("/v1/enterprises", headers=headers, json=body),
                 f"/blacklist_records/0/{field}", code)
    created = await create(client, operator_key, "/v1/enterprises",
                           enterprise_payload(blacklist_records=[{**record, "authority": " 市场监管局 "}]))
    assert created["blacklist_records"][0]["authority"] == "市场监管局"
    assert created["blacklist_records"][0]["reason"] == ""


async def test_an_order_line_s_text_is_one_line_without_direction_overrides(
    app: Any, client: httpx.AsyncClient
) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(1_000_000)
    for field, text, code in (("description", "A100\r\n=1+1", "text_control_character"),
                              ("description", RTL, "text_direction_override"),
                              ("accelerator", "Ascend\u2067910B\u2069", "text_direction_override"),
                              ("accelerator", "Ascend\x85910B", "text_control_character")):
        body = hold_body(voucher["code"], world.enterprise["uscc"], f"PO-{field}", [("accelerator:domestic", 10_000)])
        body["line_items"][0][field] = text
        for path in ("/v1/redemptions", "/v1/redemptions/holds"):
            refused = await world.post(path, body)
            _refused(refused, f"/line_items/0/{field}", code)
    body = hold_body(voucher["code"], world.enterprise["uscc"], "PO-model", [("model:llm", 10_000)])
    body["line_items"][0]["model"] = "qwen\u202emax"
    _refused(await world.post("/v1/redemptions", body), "/line_items/0/model", "text_direction_override")
    assert (await world.voucher(voucher["id"]))["balances"]["available"] == 1_000_000
    # A description in any script, with an emoji's joiner, and empty, is taken as written.
    body = hold_body(voucher["code"], world.enterprise["uscc"], "PO-ok", [("accelerator:domestic", 10_000)])
    body["line_items"][0]["description"] = "昇腾 910B 算力 👩‍💻 «training»"
    redeemed = await world.post("/v1/redemptions", body)
    assert redeemed.status_code == 201, redeemed.text


async def test_a_text_too_long_is_said_as_characters_on_every_field(app: Any, client: httpx.AsyncClient) -> None:
    """An optional field whose text type runs a validator had its length refused as a
    collection's, `too_long`, "at most 500 items" (最多只能包含 500 项); a review, December 2026."""
    world = await build_world(app, client)
    for language, words in (("en", "at most 500 characters"), ("zh-CN", "500")):
        refused = await client.post("/v1/webhook-endpoints", headers={
            **auth(world.provider_key), **fresh_key(), "Accept-Language": language}, json={
            "url": "http://127.0.0.1:9/h", "event_types": ["redemption.captured"], "description": "x" * 501})
        problem = assert_problem(refused, 422, "validation_failed")
        [error] = problem["errors"]
        assert (error["pointer"], error["type"], error["context"]) == ("/description", "string_too_long",
                                                                      {"max_length": 500}), error
        assert words in error["message"] and "item" not in error["message"] and "项" not in error["message"]
    body = hold_body("VC-0000", world.enterprise["uscc"], "PO-long", [("accelerator:domestic", 10_000)])
    body["line_items"][0]["accelerator"] = "A" * 101
    refused = await world.post("/v1/redemptions/holds", body)
    assert [(e["pointer"], e["type"]) for e in assert_problem(refused, 422, "validation_failed")["errors"]] == [
        ("/line_items/0/accelerator", "string_too_long")]
