"""The dashboard names every provider it shows, however many pages the provider list takes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.console.conftest import Browser
from tests.console.test_roles import redeem
from tests.world import build_world


@pytest.fixture
def settings(settings: Any) -> Any:
    return settings.model_copy(update={"page_limit_default": 1, "page_limit_max": 1})  # one provider a page


async def test_a_paid_provider_on_the_second_page_of_providers_is_named(
        app: Any, client: httpx.AsyncClient, browser: Browser) -> None:
    """The names were read until as many had been read as there were providers to name, so a
    paid provider beyond the first page showed as its id when the first page held another
    (an independent review, December 2026)."""
    first = await build_world(app, client)  # its provider, paid nothing here, is on the first page
    world = await build_world(app, client)  # this one's on the second
    await redeem(world, await world.issue(5_000_000), 1_000_000, "PO-1")
    await browser.sign_in(world.operator)
    page = await browser.get(f"/console/operator/programmes/{world.programme['id']}")
    assert page.status_code == 200, page.text
    assert world.provider["name"] in page.text and world.provider["id"] not in page.text
    assert first.provider["id"] not in page.text
