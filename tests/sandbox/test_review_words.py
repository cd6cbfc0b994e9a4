"""Independent review (i18n): the sandbox clock's refusal, read in Chinese."""

from __future__ import annotations

import httpx
import pytest

from services.voucher.settings import Settings
from tests.support import auth
from tests.world import World, build_world


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, environment="test", log_level="WARNING", sandbox=True)


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client)


async def test_a_backwards_move_is_explained_in_beijing_time(world: World) -> None:
    """The clock is at 2026-03-03 09:00 Beijing; the integrator asks for 2026-03-03 00:00 Beijing.
    The Chinese detail should say those two times, not 2026-03-03T01:00:00+00:00 and
    2026-03-02T16:00:00+00:00 (a different day from the one typed)."""
    headers = auth(world.operator, **{"Accept-Language": "zh-CN"})
    moved = await world.client.post("/v1/sandbox/clock", json={"advance": "P1D"},
                                    headers={**headers, "Idempotency-Key": "move-1"})
    assert moved.status_code == 200, moved.text
    back = await world.client.post("/v1/sandbox/clock", json={"to": "2026-03-03T00:00:00+08:00"},
                                   headers={**headers, "Idempotency-Key": "move-2"})
    body = back.json()
    assert body["code"] == "sandbox_clock_backwards", body
    assert "+00:00" not in body["detail"], body["detail"]
    assert "2026-03-03 09:00" in body["detail"] and "2026-03-03 00:00" in body["detail"], body["detail"]
