"""Errors speak zh-CN or English by Accept-Language (else the configured default); `code`, `type`
and `status` never change with the language, and a Chinese body keeps the English detail."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from services.voucher import errors
from services.voucher.http.meta import catalogue
from services.voucher.http.problems import HTTP_PROBLEMS, Problem
from services.voucher.i18n import msg
from services.voucher.settings import Settings
from tests.support import assert_problem, auth, enterprise_payload
from tests.world import World, build_world, hold_body

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
EN = {"Accept-Language": "en-US,en;q=0.9"}


def has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def problem(response: httpx.Response, status: int, code: str, language: str) -> dict[str, Any]:
    """A problem in `language`: the header says so, the body validates against the Problem
    schema, and a Chinese body carries the English detail as `detail_en`."""
    body = assert_problem(response, status, code)
    Problem.model_validate(body)
    assert response.headers["content-language"] == ("zh-CN" if language == "zh" else "en")
    if language == "zh":
        assert has_chinese(body["title"]) and has_chinese(body["detail"]), body
        assert body["detail_en"] and not has_chinese(body["detail_en"])
    else:
        assert not has_chinese(body["title"]) and not has_chinese(body["detail"]), body
        assert "detail_en" not in body
    return body


def walk(root: type[errors.DomainError]) -> list[type[errors.DomainError]]:
    found, pending = [], [root]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


# -- every problem has a Chinese title (tests/test_messages.py checks the catalogue itself) ---------


def test_the_catalogue_is_bilingual_including_the_http_layers_own_problems() -> None:
    english, chinese = catalogue("en"), catalogue("zh")
    assert english.keys() == chinese.keys()
    assert set(HTTP_PROBLEMS) <= english.keys()
    assert {c.code for c in walk(errors.DomainError) if c is not errors.DomainError} <= english.keys()
    for code, entry in chinese.items():
        assert has_chinese(entry.title_zh), code
        assert entry.title == entry.title_zh and english[code].title == entry.title_en, code
        assert entry.title_en.isascii() and entry.title_en, code
        assert (entry.type, entry.status) == (english[code].type, english[code].status)


async def test_the_catalogue_routes_honour_the_language(client: httpx.AsyncClient) -> None:
    zh = await client.get("/v1/problems", headers=ZH)
    assert zh.headers["content-language"] == "zh-CN"
    by_code = {p["code"]: p for p in zh.json()}
    assert by_code["voucher_expired"]["title"] == "券已过期"
    assert by_code["voucher_expired"]["title_en"] == "The voucher has expired"
    assert by_code["internal_error"]["title"] == "服务内部错误"
    one = await client.get("/v1/problems/idempotency_key_reused", headers=EN)
    assert one.headers["content-language"] == "en"
    assert one.json()["title"] == errors.IdempotencyKeyReused.title
    assert one.json()["title_zh"] == "幂等键已被其他请求使用"
    missing = problem(await client.get("/v1/problems/nope", headers=ZH), 404, "not_found", "zh")
    assert "nope" in missing["detail"]


# -- one refusal, two languages ----------------------------------------------------------------------


@pytest.fixture
async def world(app: Any, client: httpx.AsyncClient) -> World:
    return await build_world(app, client)


async def _hold(world: World, code: str, headers: dict[str, str], key: str,
                category: str = "accelerator:domestic") -> httpx.Response:
    return await world.client.post(
        "/v1/redemptions/holds",
        json=hold_body(code, world.enterprise["uscc"], f"PO-{key}", [(category, 100_000)]),
        headers=auth(world.provider_key, **{"Idempotency-Key": key}, **headers),
    )


async def test_the_same_refusal_in_chinese_and_english(world: World, clock: Any) -> None:
    voucher = await world.issue(5_000_000)
    clock.advance(days=366)
    zh = problem(await _hold(world, voucher["code"], ZH, "late-zh"), 409, "voucher_expired", "zh")
    en = problem(await _hold(world, voucher["code"], EN, "late-en"), 409, "voucher_expired", "en")
    assert (zh["code"], zh["type"], zh["status"]) == (en["code"], en["type"], en["status"])
    assert zh["title"] == "券已过期" and en["title"] == "The voucher has expired"
    expires_at = voucher["expires_at"][:10]
    assert expires_at in zh["detail"] and expires_at in en["detail"]  # the specifics, in both
    assert zh["detail_en"] == en["detail"]
    assert zh["expires_at"] == en["expires_at"]  # extension members do not change with language


async def test_a_replayed_refusal_keeps_the_first_answers_language(world: World, clock: Any) -> None:
    voucher = await world.issue(5_000_000)
    clock.advance(days=366)
    first = await _hold(world, voucher["code"], ZH, "late-once")
    again = await _hold(world, voucher["code"], EN, "late-once")
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.headers["content-language"] == "zh-CN"


async def test_redemption_refusals_give_chinese_specifics(world: World) -> None:
    voucher = await world.issue(5_000_000)
    held = await world.hold(voucher, 1_000_000, order="PO-1")
    assert held.status_code == 201, held.text
    hold_id = held.json()["id"]
    too_much = await world.client.post(
        f"/v1/redemptions/{hold_id}/capture", json={"amount": 10_000_000},
        headers=auth(world.provider_key, **{"Idempotency-Key": "cap-1"}, **ZH),
    )
    body = problem(too_much, 409, "capture_exceeds_hold", "zh")
    assert body["title"] == "核销金额不能超过冻结金额"
    assert "¥100,000.00" in body["detail"] and "¥100,000.00" in body["detail_en"]
    wrong_kind = await _hold(world, voucher["code"], ZH, "kind-1", category="model:registered")
    body = problem(wrong_kind, 409, "voucher_kind_mismatch", "zh")
    assert "算力券" in body["detail"] and "model:registered" in body["detail"]
    assert body["line_item"] == 0


# -- the header --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("zh-CN", "zh"),
        ("zh", "zh"),
        ("zh-TW,en;q=0.5", "zh"),
        ("en;q=0.5,zh-CN;q=0.8", "zh"),
        ("zh-CN;q=0.3,en", "en"),
        ("fr,zh;q=0.1", "zh"),
        ("en-GB", "en"),
        ("*;q=0.9,zh;q=0.2", "en"),
        ("zh;q=0", "en"),
    ],
)
async def test_q_values_choose_the_language(client: httpx.AsyncClient, header: str, language: str) -> None:
    response = await client.get("/v1/programmes", headers={"Accept-Language": header})
    body = problem(response, 401, "unauthenticated", language)
    assert response.headers["www-authenticate"] == "Bearer"
    if language == "zh":
        assert body["title"] == "需要身份认证" and "Authorization: Bearer" in body["detail"]


MALFORMED = ["", " ", ",;,", "zh;q=abc", "zh;q=2", "zh;q=nan", "zh;q=-1", "fr-FR,de", "*", "\x7f;;q"]


@pytest.mark.parametrize("header", MALFORMED)
async def test_no_usable_header_falls_back_to_english_by_default(client: httpx.AsyncClient, header: str) -> None:
    problem(await client.get("/v1/nothing-here", headers={"Accept-Language": header}), 404, "not_found", "en")


async def test_no_header_at_all_is_english_by_default(client: httpx.AsyncClient) -> None:
    problem(await client.get("/v1/nothing-here"), 404, "not_found", "en")


class TestConfiguredChineseDefault:
    """VOUCHER_DEFAULT_LANGUAGE=zh-CN, as the demo and docker-compose run."""

    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return Settings(database_url=database_url, environment="test", log_level="WARNING",
                        default_language="zh-CN")

    @pytest.mark.parametrize("header", [None, *MALFORMED])
    async def test_no_usable_header_is_chinese(self, client: httpx.AsyncClient, header: str | None) -> None:
        headers = {} if header is None else {"Accept-Language": header}
        problem(await client.get("/v1/nothing-here", headers=headers), 404, "not_found", "zh")

    @pytest.mark.parametrize("header", ["en", "en-US,zh;q=0.5", "zh;q=0", "*;q=0.5,zh;q=0.1"])
    async def test_an_english_preference_still_wins(self, client: httpx.AsyncClient, header: str) -> None:
        problem(await client.get("/v1/nothing-here", headers={"Accept-Language": header}), 404, "not_found", "en")

    async def test_other_bilingual_text_follows_the_default_too(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/problems/voucher_expired")
        assert response.headers["content-language"] == "zh-CN"
        assert response.json()["title"] == "券已过期"


@pytest.mark.parametrize(("value", "expected"), [("zh-CN", "zh-CN"), ("zh_cn", "zh-CN"), ("ZH", "zh-CN"),
                                                  ("en", "en"), ("EN", "en")])
def test_the_default_language_setting_accepts_the_usual_spellings(value: str, expected: str) -> None:
    assert Settings(default_language=value).default_language == expected


@pytest.mark.parametrize("value", ["fr", "zh-TW", "", "chinese"])
def test_an_unknown_default_language_fails_at_start_up(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(default_language=value)


def test_the_library_default_is_english() -> None:
    assert Settings().default_language == "en"


# -- the HTTP layer's own problems -------------------------------------------------------------------


async def test_a_422_in_chinese(client: httpx.AsyncClient, operator_key: str) -> None:
    body = enterprise_payload(uscc="91330110MA2H0W1P4K", region_code="33011", headcount=-1)
    response = await client.post("/v1/enterprises", json=body, headers=auth(operator_key, **ZH))
    zh = problem(response, 422, "validation_failed", "zh")
    assert zh["title"] == "请求中有字段不符合要求"
    assert "3 个字段" in zh["detail"] and "body/headcount" in zh["detail"]
    assert {e["pointer"] for e in zh["errors"]} == {"/uscc", "/region_code", "/headcount"}
    assert zh["detail_en"].startswith("3 field(s) are invalid")
    response = await client.post("/v1/enterprises", json=body, headers=auth(operator_key, **EN))
    en = problem(response, 422, "validation_failed", "en")
    # The same errors, each message in the answer's language; everything else identical.
    assert [{**e, "message": ""} for e in en["errors"]] == [{**e, "message": ""} for e in zh["errors"]]
    assert all(has_chinese(e["message"]) for e in zh["errors"]), zh["errors"]
    assert not any(has_chinese(e["message"]) for e in en["errors"]), en["errors"]
    by_pointer = {e["pointer"]: e["message"] for e in zh["errors"]}
    assert by_pointer["/headcount"] == "须大于或等于 0"


async def test_a_business_validation_failure_in_chinese(client: httpx.AsyncClient, operator_key: str) -> None:
    response = await client.post(
        "/v1/api-keys", json={"role": "auditor", "name": "审计", "principal_name": "审计处", "expires_at": "2000-01-01T00:00:00Z"},
        headers=auth(operator_key, **ZH),
    )
    body = problem(response, 422, "validation_failed", "zh")
    assert "1 个字段" in body["detail"] and body["errors"][0]["pointer"] == "/expires_at"


async def test_malformed_json_in_chinese(client: httpx.AsyncClient, operator_key: str) -> None:
    response = await client.post("/v1/enterprises", content=b'{"uscc": "9133',
                                 headers=auth(operator_key, **{"content-type": "application/json"}, **ZH))
    body = problem(response, 400, "malformed_json", "zh")
    assert body["title"] == "请求体不是有效的 JSON"


async def test_an_unknown_route_and_a_wrong_method_in_chinese(client: httpx.AsyncClient) -> None:
    missing = problem(await client.get("/v1/nothing-here", headers=ZH), 404, "not_found", "zh")
    assert missing["title"] == "资源不存在" and "/v1/nothing-here" in missing["detail"]
    response = await client.delete("/v1/programmes", headers=ZH)
    wrong = problem(response, 405, "method_not_allowed", "zh")
    assert wrong["title"] == "不支持该请求方法" and "DELETE" in wrong["detail"]
    assert response.headers["allow"]


async def test_auth_and_scope_refusals_in_chinese(client: httpx.AsyncClient, auditor_key: str) -> None:
    unknown = problem(await client.get("/v1/programmes", headers=auth("vk_0000000000_nope", **ZH)),
                      401, "invalid_api_key", "zh")
    assert unknown["title"] == "API 密钥无效"
    response = await client.post("/v1/enterprises", json=enterprise_payload(), headers=auth(auditor_key, **ZH))
    scope = problem(response, 403, "insufficient_scope", "zh")
    assert "enterprises:write" in scope["detail"] and scope["required_scopes"] == ["enterprises:write"]


async def test_an_idempotency_key_reused_in_chinese(client: httpx.AsyncClient, operator_key: str) -> None:
    headers = auth(operator_key, **{"Idempotency-Key": "same-key"}, **ZH)
    first = await client.post("/v1/enterprises", json=enterprise_payload(), headers=headers)
    assert first.status_code == 201, first.text
    reused = await client.post("/v1/enterprises", json=enterprise_payload(), headers=headers)
    body = problem(reused, 422, "idempotency_key_reused", "zh")
    assert body["title"] == "幂等键已被其他请求使用" and "same-key" in body["detail"]


async def test_an_internal_error_in_chinese_says_nothing_of_the_internals(app: Any, client: httpx.AsyncClient) -> None:
    async def explode() -> None:
        raise RuntimeError("secret internal detail")

    app.add_api_route("/v1/test-explode", explode, methods=["GET", "POST"])
    for method in ("GET", "POST"):
        response = await client.request(method, "/v1/test-explode", headers=ZH)
        body = problem(response, 500, "internal_error", "zh")
        assert body["title"] == "服务内部错误" and "request_id" in body["detail"]
        assert "secret" not in response.text and "RuntimeError" not in response.text


def test_a_problem_without_specifics_answers_with_its_title_in_both_languages() -> None:
    assert errors.VoucherExpired().detail_in("zh") == "券已过期"
    assert errors.VoucherExpired().detail_in("en") == errors.VoucherExpired.title
    given = errors.NotFound(msg("no problem type {code}", code="'x'"))
    assert (given.title_in("zh"), given.detail_in("zh")) == ("资源不存在", "没有代码为 'x' 的问题类型")
    assert given.detail == "no problem type 'x'"


async def test_library_words_do_not_reach_a_chinese_answer(client: httpx.AsyncClient, operator_key: str) -> None:
    """pydantic's "'compute' or 'model'", urlsplit's "Port out of range 0-65535" and the csv
    module's "',' expected after '\"'" had been English inside Chinese sentences (an independent
    review): each is said in the catalogue's words."""
    from services.voucher.usage.rules import RecordsInvalid, parse_csv
    from services.voucher.webhooks.rules import UnsafeUrl, check_url_shape

    response = await client.get("/v1/programmes", params={"kind": "nothing"}, headers=auth(operator_key, **ZH))
    body = problem(response, 422, "validation_failed", "zh")
    assert body["errors"][0]["message"] == "须为以下之一：'compute'或'model'", body
    english = await client.get("/v1/programmes", params={"kind": "nothing"}, headers=auth(operator_key, **EN))
    assert english.json()["errors"][0]["message"] == "Input should be 'compute' or 'model'"
    for url, words in (("https://example.com:99999/x", "端口须为 1 到 65535 之间的数字"),
                       ("https://[::1/x", "方括号中的地址不是 IPv6 地址")):
        with pytest.raises(UnsafeUrl) as refused:
            check_url_shape(url, allow_http=False)
        assert words in refused.value.message.render("zh") and "Port" not in refused.value.message.render("zh")
    with pytest.raises(RecordsInvalid) as unreadable:
        parse_csv('order_reference,amount,subsidy\n"PO-1"x,100,30\n')
    [(_, reason)] = unreadable.value.errors
    assert reason.render("zh") == "无法按 CSV 格式读取：右引号后还有文字；请用引号括起整个字段，字段内的引号写两次"
