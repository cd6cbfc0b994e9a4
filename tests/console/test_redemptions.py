"""A provider's redemptions over HTTP: its list filtered as the API filters it, one redemption
with each step of its subsidy computation and its refunds; another provider's is a 404 page, the
other roles' a 403 page, and the API's refusal of a bad cursor is shown in words."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import Browser
from tests.support import create, make_key, provider_payload
from tests.world import World


async def redeemed(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    """A one-step redemption of ¥10,000.00 (subsidy ¥3,000.00) refunded ¥500.00, and a hold on a
    second order that the voucher's balance (¥1,000.00 left and the ¥500.00 refunded) cut to ¥1,500.00."""
    voucher = await world.issue(400_000)
    captured = await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")
    assert captured.status_code == 201, captured.text
    refund = await world.post(f"/v1/redemptions/{captured.json()['id']}/refunds",
                              {"amount": 50_000, "reason": "两小时未交付"})
    assert refund.status_code == 201, refund.text
    held = await world.hold(voucher, 1_000_000, order="PO-2")
    assert held.status_code == 201, held.text
    return captured.json(), held.json()


async def test_a_provider_lists_its_redemptions_and_reads_one_step_by_step(browser: Browser, world: World) -> None:
    captured, held = await redeemed(world)
    await browser.sign_in(world.provider_key, language="en")
    listing = await browser.get("/console/provider/redemptions")
    assert listing.status_code == 200
    assert f"/console/provider/redemptions/{captured['id']}" in listing.text
    assert f"/console/provider/redemptions/{held['id']}" in listing.text
    assert "¥10,000.00" in listing.text and "¥3,000.00" in listing.text and "¥500.00" in listing.text
    only_held = await browser.get("/console/provider/redemptions", params={"status": "held"})
    assert held["id"] in only_held.text and captured["id"] not in only_held.text
    by_order = await browser.get("/console/provider/redemptions", params={"order_reference": "PO-1"})
    assert captured["id"] in by_order.text and held["id"] not in by_order.text
    nonsense = await browser.get("/console/provider/redemptions", params={"status": "lost"})
    assert nonsense.status_code == 200 and captured["id"] in nonsense.text  # an unknown status is no filter

    page = await browser.get(f"/console/provider/redemptions/{captured['id']}")
    assert page.status_code == 200 and 'data-status="captured"' in page.text
    assert "PO-1" in page.text and "Ascend 910B" in page.text and "1.000 GPU-hours" in page.text
    assert "30%" in page.text and 'id="gross-subsidy">¥3,000.00' in page.text
    assert 'id="computed-subsidy">¥3,000.00' in page.text and 'data-limit="rates"' in page.text
    assert "the stacking ceiling" in page.text and "the voucher&#39;s available balance" in page.text
    assert "两小时未交付" in page.text and "back to the voucher" in page.text
    assert 'id="redemption-refunded">¥500.00' in page.text
    cut = await browser.get(f"/console/provider/redemptions/{held['id']}")
    assert 'data-status="held"' in cut.text and 'id="computed-subsidy">¥1,500.00' in cut.text
    assert 'id="limited-by" data-limit="voucher_balance"' in cut.text

    chinese = await browser.get(f"/console/language/zh?next=/console/provider/redemptions/{held['id']}")
    zh = await browser.get(chinese.headers["location"])
    assert 'lang="zh-CN"' in zh.text and "券的可用余额" in zh.text and "补贴计算过程" in zh.text


async def test_another_providers_redemption_is_no_page_and_other_roles_are_refused(
        app: Any, browser: Browser, world: World) -> None:
    captured, _ = await redeemed(world)
    other = await create(world.client, world.operator, "/v1/providers", provider_payload())
    await browser.sign_in(await make_key(app, "provider", provider_id=other["id"]))
    theirs = await browser.get(f"/console/provider/redemptions/{captured['id']}")
    assert theirs.status_code == 404 and "PO-1" not in theirs.text
    assert captured["id"] not in (await browser.get("/console/provider/redemptions")).text
    for key in (world.operator, world.enterprise_key, world.auditor):
        b = Browser(app)
        try:
            await b.sign_in(key)
            assert (await b.get("/console/provider/redemptions")).status_code == 403
            assert (await b.get(f"/console/provider/redemptions/{captured['id']}")).status_code == 403
        finally:
            await b.http.aclose()


async def test_a_cursor_the_api_refuses_is_shown_in_words(browser: Browser, world: World) -> None:
    await browser.sign_in(world.provider_key, language="en")
    refused = await browser.get("/console/provider/redemptions", params={"cursor": "not-a-cursor"})
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("text/html")
    assert "cursor" in refused.text and "Traceback" not in refused.text
