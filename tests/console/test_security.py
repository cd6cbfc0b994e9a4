"""The console's security properties, over HTTP: the session cookie, CSRF, expiry, who sees
what, the unit-of-work bypass, and that the API key never reaches a page."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.voucher.console.session import SESSION_COOKIE
from tests.console.conftest import Browser
from tests.support import auth, create, enterprise_payload, make_key
from tests.world import World


async def test_signing_in_sets_an_encrypted_httponly_strict_secure_cookie_and_lands_on_the_roles_page(
        browser: Browser, world: World) -> None:
    answer = await browser.sign_in(world.operator)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/operator"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    attributes = cookie.lower()
    assert "httponly" in attributes and "samesite=strict" in attributes and "secure" in attributes
    assert "path=/console" in attributes and "max-age=28800" in attributes
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    assert world.operator not in value and world.operator[-12:] not in value
    home = await browser.get("/console/operator")
    assert home.headers["strict-transport-security"] == "max-age=31536000"
    assert home.status_code == 200 and "<h1>" in home.text


async def test_each_role_lands_on_its_own_page(app: Any, world: World) -> None:
    for key, home in ((world.operator, "/console/operator"), (world.auditor, "/console/auditor"),
                      (world.enterprise_key, "/console/enterprise"), (world.provider_key, "/console/provider")):
        b = Browser(app)
        answer = await b.sign_in(key)
        assert answer.headers["location"] == home
        start = await b.get("/console/")
        assert start.headers["location"] == home
        await b.http.aclose()


async def test_a_wrong_key_is_refused_on_the_sign_in_page_in_chinese_by_default(browser: Browser) -> None:
    answer = await browser.sign_in("vk_not_a_real_key_0000000000000000")
    assert answer.status_code == 401
    assert SESSION_COOKIE + "=" not in answer.headers.get("set-cookie", "")
    assert 'lang="zh-CN"' in answer.text and "登录" in answer.text
    english = Browser(browser.http._transport.app)  # type: ignore[attr-defined]
    refused = await english.sign_in("vk_not_a_real_key_0000000000000000", language="en")
    assert 'lang="en"' in refused.text and "Sign in" in refused.text


async def test_no_page_shows_the_api_key(browser: Browser, world: World) -> None:
    sign_in = await browser.sign_in(world.operator)
    pages = [sign_in]
    for path in ("/console/operator", "/console/operator/applications", "/console/operator/vouchers/bulk",
                 "/console/operator/vouchers", f"/console/operator/programmes/{world.programme['id']}",
                 "/console/operator/settlements", "/console/operator/claims", "/console/operator/anomalies"):
        pages.append(await browser.get(path))
    for page in pages:
        assert world.operator not in page.text
        assert world.operator not in str(page.headers)


async def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(
        browser: Browser, world: World) -> None:
    await browser.sign_in(world.operator)
    token = await browser.csrf("/console/operator")
    refused = await browser.post("/console/sign-out", data={})
    assert refused.status_code == 403 and "表单" in refused.text
    wrong = await browser.post("/console/sign-out", data={"csrf_token": token[:-1] + ("0" if token[-1] != "0" else "1")})
    assert wrong.status_code == 403
    still = await browser.get("/console/operator")
    assert still.status_code == 200  # still signed in: the refused sign-out did nothing


async def test_the_sign_in_form_needs_its_own_token(browser: Browser, world: World) -> None:
    refused = await browser.post("/console/sign-in", data={"api_key": world.operator, "next": "/console/"})
    assert refused.status_code == 403
    assert SESSION_COOKIE + "=" not in refused.headers.get("set-cookie", "")


async def test_a_token_of_another_session_is_refused(app: Any, browser: Browser, world: World) -> None:
    other = Browser(app)
    await other.sign_in(world.operator)
    their_token = await other.csrf("/console/operator")
    await browser.sign_in(world.operator)
    refused = await browser.post("/console/sign-out", data={"csrf_token": their_token})
    assert refused.status_code == 403
    await other.http.aclose()


async def test_sign_out_clears_the_session(browser: Browser, world: World) -> None:
    await browser.sign_in(world.operator)
    token = await browser.csrf("/console/operator")
    out = await browser.post("/console/sign-out", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"] or "max-age=0" in out.headers["set-cookie"].lower()
    after = await browser.get("/console/operator")
    assert after.status_code == 303 and after.headers["location"].startswith("/console/sign-in")


async def test_a_session_ends_after_its_lifetime(app: Any, browser: Browser, world: World) -> None:
    console = _console(app)
    start = console.state.now().replace(microsecond=0)
    console.state.now = lambda: start  # the sign-in's own instant: however long it takes on a busy machine
    await browser.sign_in(world.operator)
    console.state.now = lambda: start + timedelta(hours=7, minutes=59)
    assert (await browser.get("/console/operator")).status_code == 200
    console.state.now = lambda: start + timedelta(hours=8, seconds=1)
    ended = await browser.get("/console/operator")
    assert ended.status_code == 303 and "ended=1" in ended.headers["location"]
    notice = await browser.get(ended.headers["location"])
    assert "会话已结束" in notice.text


async def test_a_revoked_key_ends_the_session_at_once(client: httpx.AsyncClient, browser: Browser,
                                                        world: World) -> None:
    await browser.sign_in(world.enterprise_key)
    me = (await client.get("/v1/me", headers=auth(world.enterprise_key))).json()
    revoked = await client.post(f"/v1/api-keys/{me['key_id']}/revoke", json={"reason": "left"},
                                headers=auth(world.enterprise_key, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert revoked.status_code == 200, revoked.text
    ended = await browser.get("/console/enterprise")
    assert ended.status_code == 303 and "/console/sign-in" in ended.headers["location"]


async def test_a_tampered_cookie_is_no_session(browser: Browser, world: World) -> None:
    await browser.sign_in(world.operator)
    value = browser.http.cookies.get(SESSION_COOKIE)
    assert value
    browser.http.cookies.clear()
    tampered = value[:-2] + ("AA" if value[-2:] != "AA" else "BB")
    answer = await browser.get("/console/operator", headers={"Cookie": f"{SESSION_COOKIE}={tampered}"})
    assert answer.status_code == 303 and "/console/sign-in" in answer.headers["location"]


async def test_an_enterprise_key_cannot_open_operator_pages(browser: Browser, world: World) -> None:
    await browser.sign_in(world.enterprise_key)
    for path in ("/console/operator", "/console/operator/applications", "/console/operator/vouchers/bulk",
                 f"/console/operator/programmes/{world.programme['id']}"):
        answer = await browser.get(path)
        assert answer.status_code == 403, path
        assert "role" in answer.text or "角色" in answer.text


async def test_an_enterprise_cannot_open_another_enterprises_application(
        app: Any, client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    other = await create(client, world.operator, "/v1/enterprises", enterprise_payload())
    other_key = await make_key(app, "enterprise", enterprise_id=other["id"])
    theirs = await create(client, other_key, "/v1/applications", {
        "programme_id": world.programme["id"], "requested_amount": 1_000_000, "purpose": "训练模型"})
    await browser.sign_in(world.enterprise_key)
    answer = await browser.get(f"/console/enterprise/applications/{theirs['id']}")
    assert answer.status_code == 404
    assert theirs["purpose"] not in answer.text


async def test_unknown_pages_and_bad_ids_are_pages_not_problems(browser: Browser, world: World) -> None:
    await browser.sign_in(world.operator)
    for path in ("/console/nowhere", "/console/operator/applications/not-a-uuid",
                 f"/console/operator/applications/{uuid.uuid4()}"):
        answer = await browser.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.headers["content-type"].startswith("text/html")


async def test_the_console_path_does_not_reach_api_routes(app: Any, client: httpx.AsyncClient, world: World) -> None:
    """The unit-of-work middleware lets /console through untouched: no API route may be reached
    that way, with or without a key. Sent as raw ASGI requests: an HTTP client would remove the
    dot segments itself."""
    body = json.dumps({"programme_id": world.programme["id"], "enterprise_id": world.enterprise["id"],
                       "face_value": 100}).encode()
    for path in ("/console/../v1/vouchers", "/console/v1/vouchers", "/console//v1/vouchers",
                 "/console/./../v1/vouchers"):
        status, content_type = await _raw_post(app, path, body, world.operator)
        assert status in (404, 405), (path, status)
        assert content_type.startswith("text/html")
    listing = await client.get("/v1/vouchers", headers=auth(world.operator))
    assert listing.json()["items"] == []


async def _raw_post(app: Any, path: str, body: bytes, key: str) -> tuple[int, str]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"test"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()), (b"authorization", f"Bearer {key}".encode()),
                         (b"idempotency-key", b"raw-console-path-1")],
             "client": ("127.0.0.1", 5000), "server": ("test", 80)}
    sent = False
    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["type"] = dict(message["headers"]).get(b"content-type", b"").decode()

    await app(scope, receive, send)
    return answer["status"], answer["type"]


async def test_the_language_switch_only_redirects_within_the_console(browser: Browser) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/v1/me", "/console/\\evil", "/console//evil"):
        answer = await browser.get("/console/language/en", params={"next": target})
        assert answer.headers["location"] == "/console/", target
    kept = await browser.get("/console/language/en", params={"next": "/console/operator"})
    assert kept.headers["location"] == "/console/operator"


async def test_pages_forbid_framing_and_outside_scripts(browser: Browser) -> None:
    page = await browser.get("/console/sign-in")
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert page.headers["cache-control"] == "no-store"
    # The same for browsers that ignore frame-ancestors (the API's docs pages had it, the
    # console's pages not; an independent review, December 2026), and the headers around it.
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"] == "same-origin"
    assert "form-action 'self'" in policy and "base-uri 'none'" in policy


def _console(app: Any) -> Any:
    return next(route.app for route in app.routes if getattr(route, "path", "") == "/console")


def test_production_serves_the_console_only_with_a_secret() -> None:
    import base64

    import pytest
    from fastapi import FastAPI
    from pydantic import ValidationError

    from services.voucher.console.install import install
    from services.voucher.settings import Settings

    production = {"environment": "production", "database_url": "postgresql://voucher@127.0.0.1/voucher",
                  "audit_signing_key": base64.b64encode(b"k" * 32).decode(),
                  "secrets_key": base64.b64encode(b"s" * 32).decode()}
    without, with_secret = FastAPI(), FastAPI()
    install(without, Settings(**production))
    install(with_secret, Settings(**production, console_secret="s" * 32))
    assert not [r for r in without.routes if getattr(r, "path", "") == "/console"]
    assert [r for r in with_secret.routes if getattr(r, "path", "") == "/console"]
    with pytest.raises(ValidationError):
        Settings(console_secret="too short")


async def test_sessions_sealed_with_another_secret_do_not_open(browser: Browser, world: World) -> None:
    from datetime import UTC, datetime

    from services.voucher.console.session import Sessions

    now = datetime.now(UTC)
    ours, theirs = Sessions(b"a" * 32, timedelta(hours=8)), Sessions(b"b" * 32, timedelta(hours=8))
    sealed = theirs.seal(world.operator, now)
    assert ours.open(sealed, now) is None and theirs.open(sealed, now) is not None
    assert ours.csrf_token("x") != theirs.csrf_token("x")
    answer = await browser.get("/console/operator", headers={"Cookie": f"{SESSION_COOKIE}={sealed}"})
    assert answer.status_code == 303 and "/console/sign-in" in answer.headers["location"]


class TestARateLimitedKey:
    @pytest.fixture
    def settings(self, settings: Any) -> Any:
        return settings.model_copy(update={"rate_limits": {"operator": "2/minute"}})

    async def test_is_told_to_wait_not_that_it_is_wrong(self, app: Any, client: httpx.AsyncClient) -> None:
        """An independent review found the API's 429 turned into a 401 sign-in page without
        Retry-After: the person would think the key wrong."""
        key = await make_key(app, "operator")
        for _ in range(3):
            limited = await client.get("/v1/me", headers=auth(key))
        assert limited.status_code == 429
        browser = Browser(app)
        try:
            page = await browser.sign_in(key, language="en")
        finally:
            await browser.http.aclose()
        assert page.status_code == 429 and page.headers.get("retry-after"), page.status_code
        assert not any(c.startswith(f"{SESSION_COOKIE}=") for c in page.headers.get_list("set-cookie"))


async def test_every_form_of_the_console_is_refused_without_its_token(app: Any, world: World) -> None:
    """Each POST route of the console, walked from its route table and sent by a person of the
    role it serves, signed in, without the form's token: each is refused 403 as a form that did
    not come from the console. Only sign-out and one approval had been tried, so a new route
    that forgot its check would have passed (an independent review, December 2026)."""
    import re
    import uuid

    console = _console(app)
    roles = {"operator": world.operator, "auditor": world.auditor, "enterprise": world.enterprise_key,
             "provider": world.provider_key}
    posts = sorted(route.path for route in console.routes
                   if "POST" in getattr(route, "methods", ()) and route.path != "/sign-in")
    assert len(posts) > 10, posts
    people: dict[str, Browser] = {}
    refused = []
    for path in posts:
        role = next((r for r in roles if path.startswith(f"/{r}/")), "operator")
        if role not in people:
            people[role] = Browser(app)
            await people[role].sign_in(roles[role])
        filled = re.sub(r"\{[^}]+\}", lambda m: "pay" if m.group(0) == "{action}" else str(uuid.uuid4()), path)
        answer = await people[role].post(f"/console{filled}", data={"note": "x"})
        if answer.status_code == 403 and ("did not come from this console" in answer.text or "并非来自本控制台" in answer.text):
            refused.append(path)
    for person in people.values():
        await person.http.aclose()
    assert refused == posts, sorted(set(posts) - set(refused))


async def test_hostile_names_are_shown_as_text_on_every_page_that_names_them(
        client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    """An enterprise's and a programme's names are typed by people (an SME's registration, an
    office's programme): each page that shows them, the dashboard's chart data among them, shows
    them as text. Nothing had rendered one (an independent review, December 2026): removing the
    escaping of the chart's JSON, or a `|safe`, would have passed."""
    from tests.support import auth, create, enterprise_payload

    hostile = '</script><script>alert("x")</script><img src=x onerror=alert(1)>'
    firm = await create(client, world.operator, "/v1/enterprises", enterprise_payload(name=f"Firm {hostile}"))
    renamed = await client.patch(f"/v1/programmes/{world.programme['id']}", json={"name": f"Prog {hostile}"},
                                 headers=auth(world.operator, **{"If-Match": f'"v{world.programme["version"]}"'}))
    assert renamed.status_code == 200, renamed.text
    await create(client, world.operator, "/v1/vouchers", {"programme_id": world.programme["id"],
                                                           "enterprise_id": firm["id"], "face_value": 1_000_000})
    await browser.sign_in(world.operator)
    shown = 0
    for path in ("/console/operator", "/console/operator/vouchers", f"/console/operator/programmes/{world.programme['id']}",
                 "/console/operator/anomalies"):
        page = await browser.get(path)
        assert page.status_code == 200, (path, page.status_code)
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
        shown += page.text.count("&lt;script&gt;") + page.text.count("\\u003cscript\\u003e")
    assert shown > 0  # the names were on the pages, escaped
