"""The office's application page during publicity (公示): what the programme's public notice
shows of the application (the API's notice, masked USCC), an objection recorded as received
(back to review, its commitment held, listed with who lodged it), and the API's refusal once
publicity is over."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from tests.console.conftest import Browser, csrf_of
from tests.console.test_operator import submit
from tests.support import auth
from tests.world import World


async def approved(client: httpx.AsyncClient, world: World, application: dict[str, Any]) -> None:
    answer = await client.post(f"/v1/applications/{application['id']}/approve", json={"amount": 1_500_000},
                               headers=auth(world.operator, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert answer.status_code == 200 and answer.json()["status"] == "publicity", answer.text


def objection(html: str, **values: str) -> dict[str, str]:
    key = re.search(r'name="form_key" value="([^"]+-o)"', html)
    assert key, "no objection form"
    return {"csrf_token": csrf_of(html), "form_key": key.group(1), "statement": "申请人与服务商存在共同股东",
            "objector": "匿名来信", **values}


async def test_an_objection_recorded_in_the_console_returns_the_application_to_review(
        client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    application = await submit(client, world)
    await approved(client, world, application)
    path = f"/console/operator/applications/{application['id']}"
    await browser.sign_in(world.operator, language="en")
    page = await browser.get(path)
    assert 'id="publicity-state" data-status="publicity"' in page.text and "In publicity until" in page.text
    uscc = world.enterprise["uscc"]
    notice = re.search(r'<table id="notice-entry">.*?</table>', page.text, re.S)
    assert notice and f"{uscc[:6]}********{uscc[-4:]}" in notice.group(0) and "¥15,000.00" in notice.group(0)
    assert uscc not in notice.group(0)
    assert "No objection has been lodged." in page.text

    without = await browser.post(f"{path}/objections", data={**objection(page.text), "csrf_token": ""})
    assert without.status_code == 403
    empty = await browser.post(f"{path}/objections", data=objection(page.text, statement=" "))
    assert empty.status_code == 422 and 'role="alert"' in empty.text
    still = (await client.get(f"/v1/applications/{application['id']}", headers=auth(world.operator))).json()
    assert still["status"] == "publicity"

    form = objection(page.text)
    assert (await browser.post(f"{path}/objections", data=form)).status_code == 303
    assert (await browser.post(f"{path}/objections", data=form)).status_code == 303  # one objection
    page = await browser.get(path)
    assert 'data-status="under_review"' in page.text and "stopped by an objection" in page.text
    assert "still holds its commitment of ¥15,000.00" in page.text
    # approving again offers what it holds, not what was requested: one click must not approve more
    offered = re.search(r'<input id="amount" name="amount"[^>]*value="([^"]*)"', page.text)
    assert offered and offered.group(1) == "15000.00", offered and offered.group(0)
    assert 'id="held-hint"' in page.text
    lodged = re.search(r'<table id="objections">.*?</table>', page.text, re.S)
    assert lodged and "申请人与服务商存在共同股东" in lodged.group(0) and "匿名来信" in lodged.group(0)
    assert "¥15,000.00" in lodged.group(0) and 'id="object"' not in page.text
    history = (await client.get(f"/v1/applications/{application['id']}/history", headers=auth(world.operator))).json()
    assert [t["to_status"] for t in history].count("under_review") == 2  # submitted, then the one objection
    # the applicant reads its approval as held, not as approved; who objected is the office's to know
    await browser.sign_in(world.enterprise_key, language="en")
    own = await browser.get(f"/console/enterprise/applications/{application['id']}")
    assert own.status_code == 200 and "Approved, held while an objection is examined" in own.text
    assert "申请人与服务商存在共同股东" in own.text and "匿名来信" not in own.text


async def test_an_objection_after_publicity_is_refused_in_words(client: httpx.AsyncClient, browser: Browser,
                                                                world: World, clock: Any) -> None:
    application = await submit(client, world)
    await approved(client, world, application)
    path = f"/console/operator/applications/{application['id']}"
    await browser.sign_in(world.operator, language="en")
    page = await browser.get(path)
    clock.advance(days=6)  # publicity (5 days) is over: the voucher is issued when next read
    late = await browser.post(f"{path}/objections", data=objection(page.text))
    assert late.status_code == 409 and 'role="alert"' in late.text and 'data-status="issued"' in late.text
    assert "Publicity ended at" in late.text


async def test_the_publicity_page_is_the_offices(client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    application = await submit(client, world)
    await approved(client, world, application)
    await browser.sign_in(world.enterprise_key)
    path = f"/console/operator/applications/{application['id']}"
    assert (await browser.get(path)).status_code == 403
    token = await browser.csrf("/console/enterprise")
    refused = await browser.post(f"{path}/objections", data={"csrf_token": token, "statement": "x"})
    assert refused.status_code == 403
    after = (await client.get(f"/v1/applications/{application['id']}", headers=auth(world.operator))).json()
    assert after["status"] == "publicity"
