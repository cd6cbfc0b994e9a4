"""Inputs people get wrong are answered with what to send instead (issue 17): a decimal where
an amount in fen goes, a form instead of JSON, a page too large, a misspelt query parameter."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.support import assert_problem, auth, enterprise_payload, fresh_key, make_key
from tests.world import World, build_world, hold_body

ZH = {"Accept-Language": "zh-CN"}


@pytest.fixture
async def world(app: Any, client: httpx.AsyncClient) -> World:
    return await build_world(app, client)


async def _hold(world: World, amount: Any, key: str, **headers: str) -> httpx.Response:
    voucher = await world.issue(5_000_000)
    body = hold_body(voucher["code"], world.enterprise["uscc"], f"PO-{key}", [("accelerator:domestic", 100)])
    body["line_items"][0]["amount"] = amount
    return await world.client.post("/v1/redemptions/holds", json=body,
                                   headers=auth(world.provider_key, **{"Idempotency-Key": key}, **headers))


@pytest.mark.parametrize(("given", "fen", "milli"), [
    (100.50, "10050", "100500"), ("100.50", "10050", "100500"), (0.5, "50", "500"), ("2.125", None, "2125"),
    ("7", None, None), (True, None, None),
])
async def test_a_decimal_amount_is_answered_with_the_integer_in_each_unit(
    world: World, given: Any, fen: str | None, milli: str | None
) -> None:
    """The field does not know the voucher's unit, so the answer never guesses it: it gives
    the integer for each unit the figure could be in, and none for a figure without a point."""
    problem = assert_problem(await _hold(world, given, f"dec-{given!r}"), 422, "validation_failed")
    (error,) = problem["errors"]
    assert error["pointer"] == "/line_items/0/amount"
    message = error["message"]
    assert "fen" in message and "thousandths" in message
    assert (f"is {fen})" in message) == (fen is not None) and (f"is {milli})" in message) == (milli is not None)
    if given == 100.50:
        assert "¥100.50 is 10050" in message and "100.500 GPU-hours is 100500" in message
    chinese = assert_problem(await _hold(world, given, f"dec-zh-{given!r}", **ZH), 422, "validation_failed")
    message = chinese["errors"][0]["message"]
    assert "分" in message and "卡时" in message and (fen is None or f"应写作 {fen}" in message)


async def test_the_largest_amount_says_it_is_counted_in_fen(world: World) -> None:
    """10^15 read as yuan is a hundred times the real limit: both limits say their unit."""
    problem = assert_problem(await _hold(world, 10**15 + 1, "max-1"), 422, "validation_failed")
    message = problem["errors"][0]["message"]
    assert "1000000000000000" in message and "fen for CNY" in message, message
    chinese = assert_problem(await _hold(world, 10**15 + 1, "max-zh", **ZH), 422, "validation_failed")
    assert "1000000000000000" in chinese["errors"][0]["message"] and "为分" in chinese["errors"][0]["message"]
    voucher = await world.issue(5_000_000)
    body = hold_body(voucher["code"], world.enterprise["uscc"], "PO-total",
                     [("accelerator:domestic", 6 * 10**14), ("accelerator:domestic", 6 * 10**14)])
    total = assert_problem(await world.client.post("/v1/redemptions/quote", json=body,
                                                   headers=auth(world.provider_key)), 422, "validation_failed")
    assert "fen for CNY" in total["errors"][0]["message"], total


async def test_field_errors_are_chinese_in_a_chinese_answer(world: World) -> None:
    problem = assert_problem(await _hold(world, -5, "neg-zh", **ZH), 422, "validation_failed")
    # an amount's least is one fen: "at least 1" had read as ¥1 (a review of what Chinese readers see)
    assert problem["errors"][0]["message"] == "须大于零", problem
    assert "英文" not in problem["detail"] and "/line_items/0/amount" in problem["detail"]


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"])
async def test_a_body_that_is_not_json_is_415(client: httpx.AsyncClient, operator_key: str, content_type: str) -> None:
    response = await client.post("/v1/enterprises", content=b"uscc=91330110MA2H0W1P4K&name=x",
                                 headers=auth(operator_key, **{"content-type": content_type}))
    problem = assert_problem(response, 415, "unsupported_media_type")
    assert "application/json" in problem["detail"]
    assert content_type.split(";")[0] not in problem["detail"]  # the caller's header is not echoed
    chinese = await client.post("/v1/enterprises", content=b"a=b",
                                headers=auth(operator_key, **{"content-type": content_type}, **ZH))
    detail = assert_problem(chinese, 415, "unsupported_media_type")["detail"]
    assert chinese.headers["content-language"] == "zh-CN" and "请以 JSON 格式发送请求体" in detail


@pytest.mark.parametrize(("content_type", "status", "code"), [
    (None, 422, "validation_failed"), ("text/plain", 415, "unsupported_media_type"),
    ("application/json", 400, "malformed_json"),
])
async def test_a_body_nested_too_deep_is_refused_where_an_idempotency_key_is_fingerprinted(
        world: World, content_type: str | None, status: int, code: str) -> None:
    """The Idempotency-Key's fingerprint reads the body before FastAPI does: a body nested deeper
    than Python's JSON parser recurses is fingerprinted as bytes and then refused like any other
    body that is not a valid order, never a 500. Nothing is held."""
    voucher = await world.issue(1_000_000)
    nested = b"[" * 10_000 + b"]" * 10_000  # ten times the parser's depth, within the values a body may hold
    headers = auth(world.provider_key, **{"Idempotency-Key": f"deep-{content_type}"},
                   **({"content-type": content_type} if content_type else {}))
    response = await world.client.post("/v1/redemptions/holds", content=nested, headers=headers)
    assert_problem(response, status, code)
    deeper = b"[" * 100_000 + b"]" * 100_000  # more arrays than a body may hold: counted, never parsed
    response = await world.client.post("/v1/redemptions/holds", content=deeper, headers=headers)
    assert assert_problem(response, 413, "payload_too_large")["max_values"] == 50_000
    assert (await world.voucher(voucher["id"]))["balances"]["held"] == 0


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_a_webhook_registration_nested_too_deep_is_refused_not_a_500(world: World, method: str) -> None:
    """A registration's URL is vetted before the unit of work begins, from the body as sent: a
    body nested deeper than the parser recurses had escaped that step as a plain-text 500 (an
    independent review, December 2026). It is refused as the route refuses it; nothing is kept."""
    path = "/v1/webhook-endpoints"
    if method == "PATCH":
        made = await world.client.post(path, json={"url": "http://127.0.0.1:9/in", "event_types": ["redemption.captured"]},
                                       headers=auth(world.provider_key, **{"Idempotency-Key": "deep-hook"}))
        assert made.status_code == 201, made.text
        path = f"{path}/{made.json()['id']}"
    nested = b'{"url": ' + b"[" * 2_000 + b"]" * 2_000 + b"}"
    response = await world.client.request(method, path, content=nested, headers=auth(
        world.provider_key, **{"content-type": "application/json", "Idempotency-Key": f"deep-{method}",
                               "If-Match": '"v1"'}))
    assert_problem(response, 400, "malformed_json")


async def test_a_json_flavoured_media_type_is_json(client: httpx.AsyncClient, operator_key: str) -> None:
    response = await client.post("/v1/enterprises", content=b"{}",
                                 headers=auth(operator_key, **{"content-type": "application/merge-patch+json"}))
    assert_problem(response, 422, "validation_failed")  # read as JSON: the fields are missing


@pytest.mark.parametrize("limit", [201, 500, 100_000])
async def test_a_page_above_the_maximum_is_refused_not_cut(client: httpx.AsyncClient, operator_key: str, limit: int) -> None:
    problem = assert_problem(await client.get("/v1/programmes", params={"limit": limit}, headers=auth(operator_key)),
                             422, "validation_failed")
    assert problem["errors"][0]["pointer"] == "/limit" and "200" in problem["errors"][0]["message"]
    ok = await client.get("/v1/programmes", params={"limit": 200}, headers=auth(operator_key))
    assert ok.status_code == 200


class TestALowerConfiguredMaximum:
    @pytest.fixture
    def settings(self, settings: Any) -> Any:
        return settings.model_copy(update={"page_limit_max": 20, "page_limit_default": 10})

    async def test_is_the_one_refused_above(self, client: httpx.AsyncClient, operator_key: str) -> None:
        problem = assert_problem(await client.get("/v1/programmes", params={"limit": 21}, headers=auth(operator_key)),
                                 422, "validation_failed")
        assert problem["errors"][0]["message"] == "at most 20 items per page"
        assert (await client.get("/v1/programmes", params={"limit": 20}, headers=auth(operator_key))).status_code == 200


async def test_an_unknown_query_parameter_is_refused(client: httpx.AsyncClient, operator_key: str) -> None:
    response = await client.get("/v1/vouchers", params={"stauts": "active", "limit": 5}, headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    (error,) = problem["errors"]
    assert (error["location"], error["pointer"], error["type"]) == ("query", "/stauts", "unknown_parameter")
    assert "status" in error["message"] and "limit" in error["message"]
    known = await client.get("/v1/vouchers", params={"status": "active", "limit": 5}, headers=auth(operator_key))
    assert known.status_code == 200
    single = await client.get("/v1/me", params={"x": "1"}, headers=auth(operator_key))
    assert assert_problem(single, 422, "validation_failed")["errors"][0]["message"] == "this operation takes no query parameters"


@pytest.mark.parametrize("path, query", [
    ("/v1/vouchers", "status=active&status=revoked"),
    ("/v1/exports/redemptions", "format=csv&format=xlsx"),
    ("/v1/audit/events", "since=2026-01-01T00:00:00Z&since=2026-03-01T00:00:00Z"),
    ("/v1/programmes", "limit=5&limit=500"),
])
async def test_a_parameter_given_twice_is_refused_not_narrowed_to_its_last_value(
        client: httpx.AsyncClient, operator_key: str, path: str, query: str) -> None:
    """`programme_id=A&programme_id=B` listed B's rows only and `format=csv&format=xlsx`
    exported xlsx, each answered 200 (an independent review). A list parameter takes several."""
    problem = assert_problem(await client.get(f"{path}?{query}", headers=auth(operator_key)), 422, "validation_failed")
    (error,) = problem["errors"]
    assert (error["location"], error["pointer"], error["type"]) == ("query", f"/{query.split('=')[0]}",
                                                                    "repeated_parameter")
    several = await client.get("/v1/events?type=voucher.issued&type=settlement.paid", headers=auth(operator_key))
    assert several.status_code == 200, several.text


async def test_a_parameter_repeated_eight_thousand_times_is_named_once(client: httpx.AsyncClient) -> None:
    """On a public route, so with no key: the repeats are counted in one pass (a count per name
    had been quadratic — seconds of a worker's CPU for one request; the bench, not this test,
    is where time is read) and the one parameter is named once."""
    query = "&".join(["limit=1"] * 8_000)  # 64 KB, as long as the client sends
    response = await client.get(f"/v1/programmes/{uuid.uuid4()}/publicity?{query}")
    (error,) = assert_problem(response, 422, "validation_failed")["errors"]
    assert (error["pointer"], error["type"]) == ("/limit", "repeated_parameter")


async def test_without_a_key_an_unknown_parameter_is_a_401_not_a_list_of_parameters(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/programmes", params={"x": "1"})
    assert_problem(response, 401, "unauthenticated")
    assert "limit" not in response.text
    assert_problem(await client.post("/v1/enterprises", params={"x": "1"}, json={}), 401, "unauthenticated")


async def test_a_key_without_the_scope_is_told_so_whatever_its_query(world: World) -> None:
    """An enterprise key listing providers: 403 with ?bogus=1 as with ?limit=0 (the unknown
    parameter had been checked before the scope and answered 422; an independent review)."""
    for params in ({"bogus": "1"}, {"limit": "0"}, {}):
        response = await world.client.get("/v1/providers", params=params, headers=auth(world.enterprise_key))
        assert_problem(response, 403, "insufficient_scope")


async def test_a_public_operation_refuses_an_unknown_parameter_too(client: httpx.AsyncClient) -> None:
    problem = assert_problem(await client.get("/v1/problems", params={"x": "1"}), 422, "validation_failed")
    assert problem["errors"][0]["type"] == "unknown_parameter"
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("number", [0, 1775347200, "1775347200", 0.5])
async def test_a_number_is_not_a_day(world: World, number: Any) -> None:
    """`paid_on: 1775347200` was read as 2026-04-05 (a Unix time): refused, with the form to use."""
    body = {"period_start": number, "period_end": "2026-01-31", "provider_id": world.provider["id"],
            "programme_id": world.programme["id"]}
    response = await world.client.post("/v1/settlements", json=body,
                                       headers=auth(world.operator, **{"Idempotency-Key": f"day-{number!r}"}))
    problem = assert_problem(response, 422, "validation_failed")
    (error,) = problem["errors"]
    assert error["pointer"] == "/period_start" and "YYYY-MM-DD" in error["message"]


def _raw(payload: dict[str, Any], **swap: str) -> bytes:
    """`payload` as JSON with each placeholder value replaced by a raw JSON escape."""
    text = json.dumps(payload)
    for placeholder, escape in swap.items():
        text = text.replace(placeholder, escape)
    return text.encode()


async def _enterprises(client: httpx.AsyncClient, operator_key: str) -> int:
    return len((await client.get("/v1/enterprises", params={"limit": 200}, headers=auth(operator_key))).json()["items"])


@pytest.mark.parametrize(("field", "escape", "pointer"), [
    ("certifications", "\\ud800", "/certifications/1"),  # a lone surrogate: a 500 on SQLite before
    ("certifications", "\\u0000", "/certifications/1"),
    ("name", "\\u0000", "/name"),  # NUL: stored by SQLite, refused by PostgreSQL before
    ("name", "x\\udfff", "/name"),
])
async def test_text_no_database_stores_alike_is_refused_on_every_engine(
        client: httpx.AsyncClient, operator_key: str, field: str, escape: str, pointer: str) -> None:
    """An independent review found a lone surrogate in a certification answered 500 on SQLite
    (stored, then unserialisable) and 422 on PostgreSQL, and NUL stored by one and refused by
    the other: both are 422 `unstorable_text` at the field, before anything is written."""
    before = await _enterprises(client, operator_key)
    payload = enterprise_payload(certifications=["sme", "SENTINEL"]) if field == "certifications" else \
        enterprise_payload(name="SENTINEL")
    response = await client.post("/v1/enterprises", content=_raw(payload, SENTINEL=escape), headers=auth(
        operator_key, **{"Idempotency-Key": f"text-{field}-{escape}", "Content-Type": "application/json"}))
    problem = assert_problem(response, 422, "validation_failed")
    assert [(e["pointer"], e["type"]) for e in problem["errors"]] == [(pointer, "unstorable_text")]
    assert await _enterprises(client, operator_key) == before
    # A surrogate pair is one character (an emoji), stored like any other.
    fine = await client.post("/v1/enterprises", content=_raw(enterprise_payload(name="SENTINEL"),
                                                              SENTINEL="\\ud83d\\ude80 rocket"),
                             headers=auth(operator_key, **{"Idempotency-Key": f"fine-{field}-{escape}",
                                                           "Content-Type": "application/json"}))
    assert fine.status_code == 201 and fine.json()["name"] == "\U0001f680 rocket", fine.text


async def test_unstorable_text_is_refused_after_the_scope_check(app: Any, client: httpx.AsyncClient) -> None:
    auditor = await make_key(app, "auditor")
    body = _raw(enterprise_payload(name="SENTINEL"), SENTINEL="\\u0000")
    refused = await client.post("/v1/enterprises", content=body, headers=auth(
        auditor, **{"Idempotency-Key": "scope-first", "Content-Type": "application/json"}))
    assert_problem(refused, 403, "insufficient_scope")


async def test_a_certification_is_a_short_name(client: httpx.AsyncClient, operator_key: str) -> None:
    response = await client.post("/v1/enterprises", json=enterprise_payload(certifications=["C" * 65]),
                                 headers=auth(operator_key, **{"Idempotency-Key": "long-cert"}))
    problem = assert_problem(response, 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/certifications/0"]


async def test_a_query_value_with_nul_is_a_field_error_on_every_engine(client: httpx.AsyncClient,
                                                                        operator_key: str) -> None:
    """It had been a 200 with nothing found on SQLite and 422 `unstorable_value` ("nothing was
    changed", on a read) on PostgreSQL."""
    response = await client.get("/v1/enterprises?uscc=9133%00", headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert [(e["location"], e["pointer"], e["type"]) for e in problem["errors"]] == [
        ("query", "/uscc", "unstorable_text")]


@pytest.mark.parametrize("content_type", ["application/json", None])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
async def test_a_body_in_utf16_or_utf32_is_malformed_json(
        client: httpx.AsyncClient, operator_key: str, encoding: str, content_type: str | None) -> None:
    """Python's json reads UTF-16 and UTF-32 (with or without a byte-order mark); JSON is
    exchanged as UTF-8 (RFC 8259), so such a body is refused before the route reads it, with or
    without a Content-Type (the route reads an untyped body as JSON), and creates nothing."""
    before = await _enterprises(client, operator_key)
    body = json.dumps(enterprise_payload(name="UTF16 Ltd")).encode(encoding)
    headers = {"Idempotency-Key": f"{encoding}-{content_type}"} | ({"Content-Type": content_type} if content_type else {})
    problem = assert_problem(await client.post("/v1/enterprises", content=body, headers=auth(operator_key, **headers)),
                             400, "malformed_json")
    assert encoding.upper() in problem["detail"] and "UTF-8" in problem["detail"], problem
    assert await _enterprises(client, operator_key) == before
    bom = json.dumps(enterprise_payload(name="BOM Ltd")).encode("utf-8-sig")  # a UTF-8 mark: still UTF-8
    response = await client.post("/v1/enterprises", content=bom, headers=auth(
        operator_key, **{"Idempotency-Key": f"bom-{encoding}-{content_type}", "Content-Type": "application/json"}))
    assert response.status_code in (201, 409), response.text


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_a_bare_nan_or_infinity_is_malformed_json(
        client: httpx.AsyncClient, operator_key: str, constant: str) -> None:
    """Python's json reads a bare NaN and Infinity; no JSON parser must, and a client's own
    reader would not read back what it sent. In a string they are only text."""
    before = await _enterprises(client, operator_key)
    body = _raw(enterprise_payload(name="Constant Ltd") | {"headcount": "HEADCOUNT"}, **{'"HEADCOUNT"': constant})
    problem = assert_problem(await client.post("/v1/enterprises", content=body, headers=auth(
        operator_key, **{"Idempotency-Key": f"constant-{constant}", "Content-Type": "application/json"})),
        400, "malformed_json")
    assert constant.lstrip("-") in problem["detail"], problem
    assert await _enterprises(client, operator_key) == before
    named = enterprise_payload(name=f"{constant} NaN Infinity Ltd")
    response = await client.post("/v1/enterprises", json=named, headers=auth(
        operator_key, **{"Idempotency-Key": f"named-{constant}"}))
    assert response.status_code == 201, response.text


async def test_a_body_nested_too_deep_is_the_routes_to_refuse(client: httpx.AsyncClient, operator_key: str) -> None:
    """Nested too deep for the text check to read: the route refuses it, not a 500 (the review
    of an earlier change found one)."""
    before = await _enterprises(client, operator_key)
    deep = b'{"name": "\\u0000", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = await client.post("/v1/enterprises", content=deep, headers=auth(
        operator_key, **{"Idempotency-Key": "deep", "Content-Type": "application/json"}))
    assert response.status_code in (400, 422), response.text
    assert await _enterprises(client, operator_key) == before


async def test_an_operation_any_key_may_call_refuses_unstorable_text_too(app: Any, client: httpx.AsyncClient) -> None:
    key = await make_key(app, "auditor")
    me = (await client.get("/v1/me", headers=auth(key))).json()
    response = await client.post(f"/v1/api-keys/{me['key_id']}/revoke", content=b'{"reason": "a\\u0000b"}',
                                 headers=auth(key, **{"Content-Type": "application/json"}))
    problem = assert_problem(response, 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/reason"]
    assert (await client.get("/v1/me", headers=auth(key))).status_code == 200  # not revoked


@pytest.mark.parametrize("body", [b'{"name": "\xff\xfe\xfa"}', b'{"headcount": 1' + b"0" * 5000 + b"}"])
async def test_a_body_json_cannot_read_is_malformed_json_with_guidance(
        client: httpx.AsyncClient, operator_key: str, body: bytes) -> None:
    """Bytes that are not Unicode text and an integer of thousands of digits had been a bare
    `400 bad_request` ("Bad request"), where a syntax error gets `malformed_json` and what to do."""
    response = await client.post("/v1/enterprises", content=body, headers=auth(
        operator_key, **{"Idempotency-Key": f"unreadable-{len(body)}", "Content-Type": "application/json"}))
    problem = assert_problem(response, 400, "malformed_json")
    assert "UTF-8" in problem["detail"]


@pytest.mark.parametrize("field, value", [("annual_revenue", True), ("annual_revenue", "12"), ("annual_revenue", 12.0),
                                          ("headcount", True), ("headcount", "12")])
async def test_an_enterprises_revenue_and_headcount_are_json_integers(world: World, field: str, value: Any) -> None:
    """`true` was stored as 1 fen of revenue (an independent review): a count or an amount is a
    JSON integer, as every amount elsewhere is."""
    response = await world.client.post("/v1/enterprises", json=enterprise_payload(**{field: value}),
                                       headers=auth(world.operator, **fresh_key()))
    assert [e["pointer"] for e in assert_problem(response, 422, "validation_failed")["errors"]] == [f"/{field}"]


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate, gzip"])
async def test_a_body_with_a_content_coding_is_refused_not_read_as_plain(world: World, coding: str) -> None:
    """A body marked gzip had been read as it came, as plain JSON (an independent review): this
    service decodes no content coding, so it says so (415) and creates nothing; `identity` is
    the body as it is."""
    import gzip

    body = json.dumps(enterprise_payload()).encode()
    for sent in (body, gzip.compress(body)):
        refused = await world.client.post("/v1/enterprises", content=sent, headers=auth(
            world.operator, **fresh_key(), **{"content-type": "application/json", "content-encoding": coding}))
        assert "Content-Encoding" in assert_problem(refused, 415, "unsupported_media_type")["detail"]
    listed = (await world.client.get("/v1/enterprises", headers=auth(world.operator))).json()["items"]
    plain = await world.client.post("/v1/enterprises", content=body, headers=auth(
        world.operator, **fresh_key(), **{"content-type": "application/json", "content-encoding": "identity"}))
    assert plain.status_code == 201, plain.text
    after = (await world.client.get("/v1/enterprises", headers=auth(world.operator))).json()["items"]
    assert len(after) == len(listed) + 1


# -- headers sent twice (RFC 9110 §5.3) -----------------------------------------------------------


async def test_a_second_idempotency_key_is_refused_before_anything_is_claimed_or_moved(world: World) -> None:
    """Two Idempotency-Key lines: which one is claimed was the first line's, whatever a proxy
    meant; the request is refused and nothing is held, and the same hold with one key works."""
    voucher = await world.issue(5_000_000)
    body = hold_body(voucher["code"], world.enterprise["uscc"], "PO-two-keys", [("accelerator:domestic", 10_000)])
    headers = [*auth(world.provider_key).items(), ("Idempotency-Key", "key-a"), ("Idempotency-Key", "key-b")]
    problem = assert_problem(await world.client.post("/v1/redemptions/holds", json=body, headers=headers),
                             400, "duplicate_header")
    assert problem["header"] == "idempotency-key" and "Idempotency-Key" in problem["detail"], problem
    chinese = await world.client.post("/v1/redemptions/holds", json=body, headers=[*headers, *ZH.items()])
    assert "Idempotency-Key" in assert_problem(chinese, 400, "duplicate_header")["detail"]
    assert (await world.voucher(voucher["id"]))["balances"]["held"] == 0  # nothing held
    once = await world.client.post("/v1/redemptions/holds", json=body,
                                   headers=auth(world.provider_key, **{"Idempotency-Key": "key-b"}))
    assert once.status_code == 201, once.text


async def test_two_authorization_headers_are_refused_even_on_a_read(world: World) -> None:
    """The first key would have been checked and the second one logged by a proxy, or the other way."""
    headers = [("Authorization", f"Bearer {world.provider_key}"), ("Authorization", f"Bearer {world.operator}")]
    problem = assert_problem(await world.client.get("/v1/programmes", headers=headers), 400, "duplicate_header")
    assert problem["header"] == "authorization"


async def test_if_match_on_two_lines_is_one_list(client: httpx.AsyncClient, operator_key: str) -> None:
    """If-Match is a list: `"v7"` and `"v1"` on two lines match v1, as on one line."""
    created = await client.post("/v1/enterprises", json=enterprise_payload(), headers=auth(operator_key))
    assert created.status_code == 201, created.text
    headers = [*auth(operator_key).items(), ("If-Match", '"v7"'), ("If-Match", '"v1"')]
    response = await client.patch(f"/v1/enterprises/{created.json()['id']}", json={"name": "两行条件"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"v2"'
