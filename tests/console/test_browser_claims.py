"""In Chromium (as tests/console/test_browser.py): an enterprise files a claim choosing two real
files, and the claim's page shows each file's SHA-256 as the browser sent it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console.test_browser import browser, chromium, page, screenshot, server, sign_in  # noqa: F401
from tests.live_server import LiveServer
from tests.support import auth
from tests.world import World, build_world


@pytest.fixture
async def world(app: Any, client: httpx.AsyncClient) -> World:
    # The live server's real clock: vouchers valid ten years, as in test_browser.py.
    return await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000},
                             tiers=[], voucher_validity_days=3650)


async def test_an_enterprise_files_a_claim_with_its_documents(
        page: Any, server: LiveServer, world: World, tmp_path: Path) -> None:  # noqa: F811
    await world.issue(10_000_000)
    invoice, contract = tmp_path / "发票.pdf", tmp_path / "合同.pdf"
    invoice.write_bytes(b"%PDF-1.7 invoice 44031234")
    contract.write_bytes(b"%PDF-1.7 contract SZ-2026-118")
    await sign_in(page, server, world.enterprise_key)
    await page.get_by_role("navigation", name="主菜单").get_by_role("link", name="我的补贴申领").click()
    await page.get_by_role("link", name="申领补贴").click()
    await page.get_by_label("合同编号").fill("SZ-2026-118")
    await page.get_by_label("发票号码").fill("44031234")
    await page.get_by_label("发票代码（仅旧版增值税发票填写）").fill("3300231130")
    await page.get_by_label("开票日期").fill("2026-03-01")
    await page.get_by_label("实付金额").fill("20,000.00")
    await page.locator("#line-0-category").fill("accelerator:domestic")
    await page.locator("#line-0-usage_name").fill("Ascend 910B")
    await page.locator("#line-0-usage").fill("150")
    await page.locator("#line-0-amount").fill("20,000.00")
    await page.get_by_label("材料（发票、合同、付款凭证）").set_input_files([str(invoice), str(contract)])
    await screenshot(page, "enterprise-claim-form")
    await page.get_by_role("button", name="提交补贴申领").click()
    await page.wait_for_load_state()
    assert await page.locator("#claim-status").get_attribute("data-status") == "submitted"
    assert await page.locator("#claim-subsidy").inner_text() == "¥6,000.00"
    text = await page.content()
    for file in (invoice, contract):
        assert hashlib.sha256(file.read_bytes()).hexdigest() in text
    claims = (await world.client.get("/v1/claims", headers=auth(world.enterprise_key))).json()["items"]
    assert [d["file_name"] for d in claims[0]["documents"]] == ["发票.pdf", "合同.pdf"]
