"""A provider quotes the subsidy an order would get (the lookup page's second form): the API's
quote shown step by step, what a hold then grants exactly, nothing held; refusals in words."""

from __future__ import annotations

import re
from typing import Any

from tests.console.conftest import Browser, csrf_of
from tests.support import auth
from tests.world import World


def order(code: str, uscc: str, token: str, reference: str, *lines: tuple[str, str, str, str]) -> dict[str, str]:
    data = {"csrf_token": token, "code": code, "uscc": uscc, "order_reference": reference}
    for i, (category, usage_name, usage, amount) in enumerate(lines):
        data.update({f"line-{i}-category": category, f"line-{i}-usage_name": usage_name,
                     f"line-{i}-usage": usage, f"line-{i}-amount": amount})
    return data


async def balances(world: World, voucher: dict[str, Any]) -> dict[str, int]:
    return (await world.voucher(voucher["id"]))["balances"]  # type: ignore[no-any-return]


async def test_a_provider_quotes_an_order_and_the_hold_grants_exactly_that(browser: Browser, world: World) -> None:
    voucher = await world.issue(5_000_000)
    before = await balances(world, voucher)
    await browser.sign_in(world.provider_key)
    home = await browser.get("/console/provider")
    token = csrf_of(home.text)
    found = await browser.post("/console/provider/lookup", data={
        "csrf_token": token, "code": voucher["code"], "uscc": world.enterprise["uscc"]})
    assert found.status_code == 200 and 'action="/console/provider/quote"' in found.text
    quoted = await browser.post("/console/provider/quote", data=order(
        voucher["code"], world.enterprise["uscc"], token, "PO-Q1",
        ("accelerator:domestic", "Ascend 910B", "10", "10,000.00")))
    assert quoted.status_code == 200, quoted.text
    subsidy = int(re.search(r'id="quoted-subsidy" data-subsidy="(\d+)"', quoted.text).group(1))  # type: ignore[union-attr]
    assert subsidy == 300_000  # 30 % of ¥10,000.00
    assert 'id="computed-subsidy">¥3,000.00<' in quoted.text and 'data-limit="rates"' in quoted.text
    assert await balances(world, voucher) == before  # nothing held
    held = await world.client.post("/v1/redemptions/holds", json={
        "voucher_code": voucher["code"], "enterprise_uscc": world.enterprise["uscc"], "order_reference": "PO-Q1",
        "line_items": [{"category": "accelerator:domestic", "amount": 1_000_000, "accelerator": "Ascend 910B",
                        "hours_milli": 10_000}], "expected_subsidy": subsidy},
        headers=auth(world.provider_key, **{"Idempotency-Key": "hold-q1"}))
    assert held.status_code == 201 and held.json()["held_amount"] == subsidy


async def test_a_quote_the_api_refuses_is_shown_in_words(browser: Browser, world: World) -> None:
    voucher = await world.issue(5_000_000)
    await browser.sign_in(world.provider_key)
    token = csrf_of((await browser.get("/console/provider")).text)
    out_of_scope = await browser.post("/console/provider/quote", data=order(
        voucher["code"], world.enterprise["uscc"], token, "PO-Q2", ("network:egress", "", "", "100.00")))
    assert out_of_scope.status_code == 409 and 'role="alert"' in out_of_scope.text
    assert "network:egress" in out_of_scope.text
    no_lines = await browser.post("/console/provider/quote", data=order(
        voucher["code"], world.enterprise["uscc"], token, "PO-Q3"))
    assert no_lines.status_code == 422 and "请至少填写一个订单行" in no_lines.text
    bad_amount = await browser.post("/console/provider/quote", data=order(
        voucher["code"], world.enterprise["uscc"], token, "PO-Q4", ("accelerator:domestic", "A", "1", "lots")))
    assert bad_amount.status_code == 422 and 'role="alert"' in bad_amount.text
    unknown = await browser.post("/console/provider/quote", data=order(
        voucher["code"], "91330110MA2XXXXXX0", token, "PO-Q5", ("accelerator:domestic", "A", "1", "100.00")))
    assert unknown.status_code in (404, 422) and 'role="alert"' in unknown.text


async def test_a_quote_without_its_csrf_token_is_refused_and_only_a_provider_quotes(
        browser: Browser, world: World) -> None:
    voucher = await world.issue(5_000_000)
    await browser.sign_in(world.provider_key)
    refused = await browser.post("/console/provider/quote", data=order(
        voucher["code"], world.enterprise["uscc"], "", "PO-Q6", ("accelerator:domestic", "A", "1", "100.00")))
    assert refused.status_code == 403
    await browser.sign_in(world.enterprise_key)
    token = csrf_of((await browser.get("/console/enterprise")).text)
    other = await browser.post("/console/provider/quote", data=order(
        voucher["code"], world.enterprise["uscc"], token, "PO-Q7", ("accelerator:domestic", "A", "1", "100.00")))
    assert other.status_code == 403
