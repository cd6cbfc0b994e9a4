"""Review: the programme office's settlement pages with many providers, and under a lower
configured page maximum (VOUCHER_PAGE_LIMIT_MAX, allowed 1..200)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.console.conftest import Browser
from tests.support import auth, create, programme_payload, provider_payload
from tests.world import World


async def test_every_provider_can_be_chosen_for_a_settlement(browser: Browser, world: World) -> None:
    """The form to draw up a settlement lists the providers to choose from: with more than 200
    registered, the ones registered last must still be there."""
    last: dict[str, Any] = {}
    for _ in range(200):
        last = await create(world.client, world.operator, "/v1/providers", provider_payload())
    await browser.sign_in(world.operator, language="en")
    page = await browser.get("/console/operator/settlements")
    assert page.status_code == 200, page.text
    assert f'value="{last["id"]}"' in page.text, "the 201st provider cannot be chosen"


class TestALowerConfiguredPageMaximum:
    @pytest.fixture
    def settings(self, settings: Any) -> Any:
        return settings.model_copy(update={"page_limit_max": 100, "page_limit_default": 50})

    async def test_the_settlements_page_still_opens(self, browser: Browser, world: World) -> None:
        await browser.sign_in(world.operator, language="en")
        page = await browser.get("/console/operator/settlements")
        assert page.status_code == 200, page.text[:500]


class TestALowPageMaximum:
    @pytest.fixture
    def settings(self, settings: Any) -> Any:
        return settings.model_copy(update={"page_limit_max": 1, "page_limit_default": 1})

    async def test_every_open_programme_can_be_chosen_for_a_bulk_issue(self, browser: Browser, world: World) -> None:
        other = await create(world.client, world.operator, "/v1/programmes", programme_payload())
        opened = await world.client.post(f"/v1/programmes/{other['id']}/open", headers=auth(world.operator))
        assert opened.status_code == 200, opened.text
        await browser.sign_in(world.operator, language="en")
        page = await browser.get("/console/operator/vouchers/bulk")
        assert page.status_code == 200, page.text[:500]
        for programme_id in (world.programme["id"], other["id"]):
            assert f'value="{programme_id}"' in page.text, f"open programme {programme_id} cannot be chosen"
