"""Sign-out does not depend on the API: a key that is rate limited (or an API that cannot
answer) still leaves the browser signed out, while a form from elsewhere is still refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.voucher.console.session import SESSION_COOKIE
from tests.console.conftest import Browser, csrf_of
from tests.support import auth, make_key


@pytest.fixture
def settings(settings: Any) -> Any:
    return settings.model_copy(update={"rate_limits": {"operator": "5/minute"}})


async def test_signing_out_while_the_key_is_rate_limited_ends_the_session(app: Any, client: httpx.AsyncClient,
                                                                         browser: Browser) -> None:
    key = await make_key(app, "operator")
    assert (await browser.sign_in(key, language="en")).status_code == 303
    token = csrf_of((await browser.get("/console/operator")).text)
    while (await client.get("/v1/me", headers=auth(key))).status_code != 429:
        pass  # the key's limit used up by another client of the same principal
    forged = await browser.post("/console/sign-out", data={"csrf_token": "0" * len(token)})
    assert forged.status_code == 403 and SESSION_COOKIE in browser.http.cookies
    out = await browser.post("/console/sign-out", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
    assert any(c.startswith(SESSION_COOKIE + "=") and "max-age=0" in c.lower()
               for c in out.headers.get_list("set-cookie"))
    assert SESSION_COOKIE not in browser.http.cookies
    again = await browser.post("/console/sign-out", data={})  # no session: nothing to forge, signed out
    assert again.status_code == 303
