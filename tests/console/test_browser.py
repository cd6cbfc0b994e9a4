"""The console in a real browser: headless Chromium (Debian's package, driven by Playwright)
against a real server over a socket. Skipped, saying why, only where no Chromium is installed
(`.ci/run` installs it), and on PostgreSQL (see `chromium`). Each role's main page is saved as
a screenshot in var/screenshots/ (git-ignored)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ENGINE
from tests.live_server import ROOT, LiveServer
from tests.support import auth, create, enterprise_payload
from tests.world import World, build_world

SCREENSHOTS = ROOT / "var" / "screenshots"


def chromium_path() -> str | None:
    for candidate in (os.environ.get("VOUCHER_TEST_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    if ENGINE == "postgresql":
        # What the browser adds is the page in a browser: its layout, keyboard, scripts, cookies
        # and downloads, the same on either engine. Every console page and form these tests use
        # runs on PostgreSQL too, over HTTP (tests/console/test_*.py): docs/decisions.md, "CI's
        # budget".
        pytest.skip("the console's browser tests run on SQLite; its pages and forms run on both engines")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("Playwright is not installed (pip install -e '.[dev]')")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium on this machine: `apt-get install -y chromium` (.ci/run does) or set "
                    "VOUCHER_TEST_CHROMIUM to a Chromium binary")
    return path


@pytest.fixture
async def world(app: Any, client: httpx.AsyncClient) -> World:
    # The live server runs on the real clock and this world on the frozen one (2026-03-02): its
    # vouchers stay valid for ten years, so the tests do not start failing a year from then.
    return await build_world(app, client, voucher_validity_days=3650)


@pytest.fixture
def server(database_url: str, world: World) -> Iterator[LiveServer]:
    with LiveServer(database_url) as live:
        yield live


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    opened = await context.new_page()
    yield opened
    await context.close()


def saved(path: Any) -> bytes:
    """A file the browser downloaded (small: read at once)."""
    return Path(path).read_bytes()


async def sign_in(page: Any, server: LiveServer, key: str) -> None:
    await page.goto(f"{server.url}/console/")
    await page.get_by_label(re.compile("API 密钥|API key")).fill(key)
    await page.get_by_role("button", name=re.compile("登录|Sign in")).click()
    await page.wait_for_load_state()


async def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def test_each_role_signs_in_to_its_main_page(browser: Any, server: LiveServer, world: World) -> None:
    for key, path, name in ((world.operator, "/console/operator", "operator"),
                            (world.auditor, "/console/auditor", "auditor"),
                            (world.enterprise_key, "/console/enterprise", "enterprise"),
                            (world.provider_key, "/console/provider", "provider")):
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        await sign_in(page, server, key)
        assert page.url == server.url + path, name
        assert await page.locator("html").get_attribute("lang") == "zh-CN"
        assert await page.get_by_role("navigation", name="主菜单").is_visible()
        cookies = await context.cookies()
        session = next(c for c in cookies if c["name"] == "voucher_console")
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert key not in await page.content()
        assert await page.evaluate("document.cookie") == ""  # nothing of the session reaches page script
        await screenshot(page, name)
        await context.close()


async def test_an_operator_approves_an_application_and_the_committed_figure_changes(
        client: httpx.AsyncClient, page: Any, server: LiveServer, world: World) -> None:
    applied = await client.post("/v1/applications", json={
        "programme_id": world.programme["id"], "requested_amount": 3_000_000, "purpose": "训练质检模型"},
        headers=auth(world.enterprise_key, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert applied.status_code == 201, applied.text
    await sign_in(page, server, world.operator)
    await page.get_by_role("link", name=world.programme["name"]).click()
    assert await page.locator("#figure-committed").inner_text() == "¥0.00"
    await page.locator("html[data-charts='6']").wait_for(state="attached")
    assert await page.locator("#chart-budget svg").count() == 1
    await screenshot(page, "operator-dashboard")
    await page.get_by_role("link", name="本项目的待审申请").click()
    await page.locator("tbody a").first.click()
    await page.get_by_label("批准金额").fill("25,000.00")
    await page.get_by_role("button", name="批准", exact=True).click()
    await page.wait_for_load_state()
    assert await page.locator("#application-status").get_attribute("data-status") == "publicity"
    assert await page.locator("#application-status").inner_text() == "公示中"
    await page.get_by_role("link", name=world.programme["name"]).click()
    assert await page.locator("#figure-committed").inner_text() == "¥25,000.00"


async def test_a_bulk_issue_with_one_bad_row_shows_its_error_and_issues_nothing(
        client: httpx.AsyncClient, page: Any, server: LiveServer, world: World, tmp_path: Path) -> None:
    other = await create(client, world.operator, "/v1/enterprises", enterprise_payload())
    grants = tmp_path / "grants.csv"
    grants.write_text(f"uscc,face_value,reference\n{world.enterprise['uscc']},1000.00,G-1\n"
                      f"{other['uscc']},12.345,G-2\n", encoding="utf-8")
    await sign_in(page, server, world.operator)
    await page.get_by_role("link", name="批量发券").click()
    await page.get_by_label("文件").set_input_files(str(grants))
    await page.get_by_role("button", name="预览").click()
    await page.wait_for_load_state()
    assert await page.locator("#bulk-refused").is_visible()
    assert "12.345" in await page.locator("#row-3 .problem").inner_text()
    assert await page.locator("#issue").count() == 0
    vouchers = await client.get("/v1/vouchers", headers=auth(world.operator))
    assert vouchers.json()["items"] == []


async def test_a_form_without_its_csrf_token_is_refused(client: httpx.AsyncClient, page: Any, server: LiveServer,
                                                        world: World) -> None:
    applied = await client.post("/v1/applications", json={
        "programme_id": world.programme["id"], "requested_amount": 3_000_000, "purpose": "训练"},
        headers=auth(world.enterprise_key, **{"Idempotency-Key": str(uuid.uuid4())}))
    await sign_in(page, server, world.operator)
    await page.goto(f"{server.url}/console/operator/applications/{applied.json()['id']}")
    await page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name="批准", exact=True).click()
    assert (await navigation.value).status == 403
    assert "表单" in await page.locator("[role=alert]").inner_text()
    after = await client.get(f"/v1/applications/{applied.json()['id']}", headers=auth(world.operator))
    assert after.json()["status"] == "under_review"


async def test_an_enterprise_key_cannot_open_another_enterprises_page_nor_an_operator_page(
        app: Any, client: httpx.AsyncClient, page: Any, server: LiveServer, world: World) -> None:
    from tests.support import make_key

    other = await create(client, world.operator, "/v1/enterprises", enterprise_payload())
    other_key = await make_key(app, "enterprise", enterprise_id=other["id"])
    theirs = await create(client, other_key, "/v1/applications", {
        "programme_id": world.programme["id"], "requested_amount": 1_000_000, "purpose": "别人的申请"})
    await sign_in(page, server, world.enterprise_key)
    answer = await page.goto(f"{server.url}/console/enterprise/applications/{theirs['id']}")
    assert answer.status == 404 and "别人的申请" not in await page.content()
    answer = await page.goto(f"{server.url}/console/operator/applications")
    assert answer.status == 403


async def test_an_auditor_verifies_the_chain_and_an_exports_sha256_matches_its_manifest(
        page: Any, server: LiveServer, world: World) -> None:
    await world.issue(1_000_000)
    await sign_in(page, server, world.auditor)
    await page.get_by_role("button", name="立即校验").click()
    await page.wait_for_load_state()
    assert "完好无损" in await page.locator("#verification-result").inner_text()
    await page.get_by_role("link", name="数据导出").click()
    await page.get_by_label("数据集").select_option("ledger-entries")
    await page.get_by_label("格式").select_option("csv")
    async with page.expect_download() as started:
        await page.get_by_role("button", name="下载", exact=True).click()
    download = await started.value
    digest = hashlib.sha256(saved(await download.path())).hexdigest()
    # the page read the export as it streamed and said how many rows arrived
    await page.locator("html[data-export-rows]").wait_for(state="attached")
    rows = int(await page.locator("html").get_attribute("data-export-rows") or "-1")
    assert "完成" in await page.locator("#export-progress").inner_text()
    await page.goto(f"{server.url}/console/auditor/exports")
    await page.locator("tbody a").first.click()
    assert await page.locator("#manifest-sha256").inner_text() == digest
    assert int(await page.locator("#manifest-rows").inner_text()) == rows > 0


async def test_an_enterprise_applies_after_seeing_the_dry_run(
        client: httpx.AsyncClient, page: Any, server: LiveServer, world: World) -> None:
    await sign_in(page, server, world.enterprise_key)
    await page.get_by_role("navigation", name="主菜单").get_by_role("link", name="申请补贴").click()
    await page.get_by_label("申请金额").fill("20,000.00")
    await page.get_by_label("用途").fill("训练质检模型")
    await page.get_by_role("button", name="检查申请资格").click()
    verdict = page.locator("#dry-run-verdict")
    await verdict.wait_for()
    assert "目前可以通过" in await verdict.inner_text()
    assert page.url.endswith("/console/enterprise/apply")  # htmx swapped the verdict in place
    assert (await client.get("/v1/applications", headers=auth(world.enterprise_key))).json()["items"] == []
    await page.get_by_role("button", name="提交申请").click()
    await page.wait_for_load_state()
    assert await page.locator("#application-status").inner_text() == "审核中"


async def test_a_provider_looks_a_voucher_up_and_downloads_a_statement(
        page: Any, server: LiveServer, world: World, clock: Any) -> None:
    from tests.console.test_roles import settlement

    drafted = await settlement(world, clock)
    voucher = (await world.client.get("/v1/vouchers", headers=auth(world.operator))).json()["items"][0]
    await sign_in(page, server, world.provider_key)
    await page.get_by_label("补贴券券码").fill(voucher["code"])
    await page.get_by_label("企业的统一社会信用代码").fill(world.enterprise["uscc"])
    await page.get_by_role("button", name="查询", exact=True).click()
    await page.wait_for_load_state()
    assert await page.locator("#quote-available").inner_text() == "¥97,000.00"  # ¥100,000 less 30 % of the ¥10,000 order
    await page.get_by_role("link", name="结算").click()
    async with page.expect_download() as started:
        await page.locator(f"a[href$='{drafted['id']}/statement.csv']").click()
    download = await started.value
    assert "PO-1" in saved(await download.path()).decode("utf-8-sig")


async def test_the_console_works_from_the_keyboard_on_a_tablet(browser: Any, server: LiveServer,
                                                               world: World) -> None:
    context = await browser.new_context(viewport={"width": 768, "height": 1024})
    page = await context.new_page()
    await page.goto(f"{server.url}/console/")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    for _ in range(5):  # past the skip link and the language switch to the key field
        if await page.evaluate("document.activeElement.id") == "api_key":
            break
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "api_key"
    await page.keyboard.type(world.operator)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{server.url}/console/operator")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 768  # no sideways scrolling
    link = page.get_by_role("link", name=world.programme["name"])
    await link.focus()
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{server.url}/console/operator/programmes/{world.programme['id']}")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 768
    await screenshot(page, "operator-dashboard-tablet")
    await context.close()


async def test_an_operator_approves_a_confirmed_settlement_and_records_its_payment(
        page: Any, server: LiveServer, world: World, clock: Any) -> None:
    from tests.console.test_settlements import confirmed

    drafted = await confirmed(world, clock)
    await sign_in(page, server, world.operator)
    await page.get_by_role("link", name="结算", exact=True).click()
    await page.locator(f"a[href='/console/operator/settlements/{drafted['id']}']").click()
    assert await page.locator("#settlement-status").get_attribute("data-status") == "submitted"
    await page.get_by_role("button", name="批准付款").click()
    await page.wait_for_load_state()
    assert await page.locator("#settlement-status").get_attribute("data-status") == "approved"
    await page.get_by_label("银行付款流水号").fill("ICBC-20260305-0001")
    # the day the form offers is the service's today (the day it was approved, or later): kept
    assert await page.get_by_label("付款日期").input_value() >= "2026-03-03"
    await page.get_by_role("button", name="登记付款").click()
    await page.wait_for_load_state()
    assert await page.locator("#settlement-status").get_attribute("data-status") == "paid"
    assert await page.locator("#settlement-reference").inner_text() == "ICBC-20260305-0001"
    await screenshot(page, "operator-settlement")


async def test_an_auditor_reads_the_trial_balance_as_of_a_typed_time(
        page: Any, server: LiveServer, world: World) -> None:
    await world.issue(1_000_000)
    await sign_in(page, server, world.auditor)
    await page.get_by_role("link", name="试算平衡表").click()
    assert await page.locator("#trial-balanced").get_attribute("data-balanced") == "true"
    await screenshot(page, "auditor-trial-balance")
    await page.get_by_label(re.compile("截至")).fill("2000-01-01T08:00")
    await page.get_by_role("button", name="查看").click()
    await page.wait_for_load_state()
    assert "as_of=2000-01-01T08%3A00" in page.url
    assert await page.locator("#trial-balanced").get_attribute("data-balanced") == "true"
    assert await page.locator("tbody td").first.inner_text() == "尚无账户。"
