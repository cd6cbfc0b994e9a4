"""What every page is made of: nothing from another site, the vendored assets with their
licences, and every word from the one catalogue."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from services.voucher import catalogue
from services.voucher.console import web
from services.voucher.i18n import translate
from tests.console.conftest import Browser
from tests.world import World

STATIC = Path(web.HERE) / "static"
EXTERNAL = re.compile(r'(?:src|href|action)\s*=\s*"(?!/console/|#|/console")([^"]*)"', re.I)


async def test_no_page_references_another_site(browser: Browser, world: World) -> None:
    pages = [await browser.get("/console/sign-in")]
    await browser.sign_in(world.operator)
    for path in ("/console/operator", "/console/operator/applications", "/console/operator/vouchers/bulk",
                 "/console/operator/vouchers", f"/console/operator/programmes/{world.programme['id']}",
                 "/console/operator/settlements", "/console/operator/claims", "/console/operator/anomalies",
                 "/console/nowhere"):
        pages.append(await browser.get(path))
    for page in pages:
        assert "http://" not in page.text and "https://" not in page.text and "//cdn" not in page.text
        for reference in EXTERNAL.findall(page.text):
            assert reference.startswith("/console/"), reference
        for asset in re.findall(r'(?:src|href)="(/console/static/[^"]+)"', page.text):
            assert (await browser.get(asset)).status_code == 200, asset


def test_the_vendored_assets_carry_their_licences() -> None:
    for name in ("echarts.common.min.js", "htmx.min.js", "echarts.LICENSE", "echarts.NOTICE", "htmx.LICENSE",
                 "VENDORED.md"):
        assert (STATIC / name).stat().st_size > 0, name
    assert "Apache License" in (STATIC / "echarts.LICENSE").read_text()
    assert "Zero-Clause BSD" in (STATIC / "htmx.LICENSE").read_text()


def test_every_template_text_is_a_catalogue_message_with_chinese() -> None:
    """The catalogue extracts `_("...")` from the templates, so a template text without Chinese
    fails tests/test_messages.py like any other message."""
    from_templates = {text for text, places in catalogue.code_messages().items()
                      if any("console/templates/" in place for place in places)}
    assert {"Sign in", "Approve", "Bulk issue", "Verify now"} <= from_templates
    assert not set(catalogue.untranslated()) & from_templates
    assert translate("Sign in", "zh") == "登录"


def test_templates_hold_no_visible_english_outside_the_catalogue() -> None:
    """Text between tags is a `{{ ... }}` expression, never a bare English word (codes such as
    CSV, SHA-256 and Excel excepted)."""
    allowed = {"CSV", "Excel", "SHA-256", "SHA-256:", "English", "中文", "·", "–", "—", "(", ")", "({{"}
    for template in (Path(web.HERE) / "templates").rglob("*.html"):
        text = re.sub(r"{{.*?}}|{%.*?%}|<script.*?</script>|<[^>]+>", " ", template.read_text(), flags=re.S)
        words = [w for w in text.split() if re.search(r"[A-Za-z]", w) and w not in allowed]
        assert not words, (template.name, words[:5])


async def test_every_menu_link_of_every_role_opens_a_page(app: Any, world: World) -> None:
    """The menu names only pages that exist, each answering 200 in Chinese (the default)."""
    for key, home in ((world.operator, "/console/operator"), (world.auditor, "/console/auditor"),
                      (world.enterprise_key, "/console/enterprise"), (world.provider_key, "/console/provider")):
        b = Browser(app)
        try:
            await b.sign_in(key)
            start = await b.get(home)
            menu = re.search(r'<nav aria-label="[^"]+">(.*?)</nav>', start.text, re.S)
            assert menu, home
            links = re.findall(r'href="(/console/[^"]+)"', menu.group(1))
            assert home in links
            for link in links:
                answer = await b.get(link)
                assert answer.status_code == 200, (link, answer.text[:500])
                assert answer.headers["content-language"] == "zh-CN"
        finally:
            await b.http.aclose()


async def test_the_tenants_pages_reference_no_other_site_and_never_show_the_key(app: Any, world: World) -> None:
    """The enterprise's and provider's pages, as the office's above: nothing from another site,
    and the signed-in key nowhere in a page or its headers."""
    for key, paths in ((world.enterprise_key, ("/console/enterprise/claims", "/console/enterprise/claims/new",
                                               "/console/enterprise/webhooks")),
                       (world.provider_key, ("/console/provider/redemptions", "/console/provider/usage",
                                             "/console/provider/webhooks"))):
        b = Browser(app)
        try:
            await b.sign_in(key)
            for path in paths:
                page = await b.get(path)
                assert page.status_code == 200, path
                assert "http://" not in page.text and "https://" not in page.text, path
                for reference in EXTERNAL.findall(page.text):
                    assert reference.startswith("/console/"), (path, reference)
                assert key not in page.text and key not in str(page.headers), path
        finally:
            await b.http.aclose()
