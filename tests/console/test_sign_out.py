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


async def test_a_copy_of_the_cookie_taken_before_sign_out_no_longer_signs_in(app: Any, browser: Browser) -> None:
    """The cookie is the whole session: sign-out had only asked the browser to forget it, and a
    copy taken before (a shared computer, a proxy's log) worked on until the session's end, up to
    8 hours later (OWASP ASVS 3.3.1). Sign-out now records the session as ended; a page with the
    copy sends to sign-in and deletes it, and a new sign-in with the same key is a new session."""
    key = await make_key(app, "operator")
    assert (await browser.sign_in(key, language="en")).status_code == 303
    copy = browser.http.cookies[SESSION_COOKIE]
    token = csrf_of((await browser.get("/console/operator")).text)
    assert (await browser.post("/console/sign-out", data={"csrf_token": token})).status_code == 303
    thief = Browser(app)
    try:
        stolen = {"Cookie": f"{SESSION_COOKIE}={copy}"}
        page = await thief.get("/console/operator", headers=stolen)
        assert page.status_code == 303 and page.headers["location"].startswith("/console/sign-in?")
        assert "ended=1" in page.headers["location"]
        refused = await thief.post("/console/operator/applications/00000000-0000-7000-8000-000000000000/reject", data={"csrf_token": token}, headers=stolen)
        assert refused.status_code == 401
    finally:
        await thief.http.aclose()
    assert (await browser.sign_in(key, language="en")).status_code == 303
    assert browser.http.cookies[SESSION_COOKIE] != copy  # another session (this file's key allows 5 pages a minute)


async def test_ended_sessions_are_forgotten_once_they_would_have_ended(app: Any, browser: Browser) -> None:
    """The record is needed only until the session's own end (real time, as sessions end): the
    purge job keeps it until then and deletes it after."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func, select

    from services.voucher import jobs
    from services.voucher.console import ended
    from services.voucher.tables import ConsoleSessionEnd

    database = app.state.database
    now = datetime.now(UTC)
    await ended.end(database, "gone-a-while", now - ended.MARGIN - timedelta(seconds=1), now - timedelta(hours=8))
    await ended.end(database, "within-the-margin", now - timedelta(minutes=30), now - timedelta(hours=8))
    await ended.end(database, "just-now", now + timedelta(hours=8), now)
    await ended.end(database, "just-now", now + timedelta(hours=8), now)  # twice: one record
    assert await jobs.run_once(database, "purge-idempotency", now) >= 1
    async with database.unit_of_work(write=False) as session:
        assert (await session.execute(select(func.count()).select_from(ConsoleSessionEnd))).scalar() == 2
    assert await ended.has_ended(database, "just-now") and await ended.has_ended(database, "within-the-margin")
    assert not await ended.has_ended(database, "gone-a-while")


def test_a_session_ends_when_it_was_sealed_to_whatever_the_lifetime_later() -> None:
    """The record of a sign-out is kept until the session's end as sealed: a longer lifetime set
    after it had let a copy of the cookie outlive its record (a review, December 2026)."""
    from datetime import UTC, datetime, timedelta

    from services.voucher.console.session import Sessions

    signed_in = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    cookie = Sessions(b"s" * 32, timedelta(hours=8)).seal("key", signed_in)
    longer, shorter = Sessions(b"s" * 32, timedelta(hours=24)), Sessions(b"s" * 32, timedelta(hours=1))
    session = longer.open(cookie, signed_in + timedelta(hours=7))
    assert session is not None and session.expires_at == signed_in + timedelta(hours=8)
    assert longer.open(cookie, signed_in + timedelta(hours=9)) is None
    assert shorter.open(cookie, signed_in + timedelta(hours=2)) is None  # a shorter one still ends it sooner
    assert shorter.open(cookie, signed_in)
    assert shorter.open(cookie, signed_in).expires_at == signed_in + timedelta(hours=8)  # what sign-out records


def test_a_cookie_sealed_before_its_end_was_still_opens_by_the_lifetime() -> None:
    """A cookie sealed before `exp` was sealed in it: the first form read a missing `exp` as a
    date past Python's and ended every such session at the deploy (a review, December 2026)."""
    import base64
    import json
    import os
    from datetime import UTC, datetime, timedelta

    from services.voucher.console.session import Sessions

    sessions = Sessions(b"s" * 32, timedelta(hours=8))
    signed_in = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    payload = json.dumps({"k": "key", "s": "old-session", "iat": int(signed_in.timestamp())}).encode()
    nonce = os.urandom(12)
    old = base64.urlsafe_b64encode(nonce + sessions._aead.encrypt(nonce, payload, SESSION_COOKIE.encode()))
    cookie = old.decode().rstrip("=")
    session = sessions.open(cookie, signed_in + timedelta(hours=7))
    assert session is not None and session.expires_at == signed_in + timedelta(hours=8)
    assert sessions.open(cookie, signed_in + timedelta(hours=8)) is None


async def test_sign_out_signs_the_browser_out_whatever_the_database_says(
    app: Any, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error other than "unavailable" (locked, timed out, the table not migrated) had
    answered sign-out 500 and kept the cookie (a review, December 2026)."""
    from services.voucher.console import ended

    async def broken(*args: Any) -> None:
        raise RuntimeError("database is locked")

    key = await make_key(app, "operator")
    assert (await browser.sign_in(key, language="en")).status_code == 303
    token = csrf_of((await browser.get("/console/operator")).text)
    monkeypatch.setattr(ended, "end", broken)
    out = await browser.post("/console/sign-out", data={"csrf_token": token})
    assert out.status_code == 303 and SESSION_COOKIE not in browser.http.cookies


def test_a_session_sealed_by_a_process_a_moment_ahead_opens() -> None:
    """Another process's clock a little ahead (and the sign-in time rounded down to the second)
    had made a fresh session look signed in "in the future": refused, and its cookie deleted, on
    the next page (an independent review, December 2026). A minute of skew is allowed; more is
    not."""
    from datetime import UTC, datetime, timedelta

    from services.voucher.console.session import Sessions

    sessions = Sessions(b"s" * 32, timedelta(hours=8))
    signed_in = datetime(2026, 12, 7, 8, 0, 0, 700_000, tzinfo=UTC)
    cookie = sessions.seal("key", signed_in)
    assert sessions.open(cookie, signed_in - timedelta(seconds=0.8)) is not None
    assert sessions.open(cookie, signed_in - timedelta(seconds=59)) is not None
    assert sessions.open(cookie, signed_in - timedelta(minutes=2)) is None


async def test_signing_in_again_ends_the_session_the_browser_had(app: Any, browser: Browser) -> None:
    """A new sign-in replaced the cookie but left its old session open, so a copy of the old
    cookie worked on until it expired (an independent review, December 2026); it is ended as
    sign-out ends it."""
    key = await make_key(app, "operator")
    assert (await browser.sign_in(key, language="en")).status_code == 303
    copy = browser.http.cookies[SESSION_COOKIE]
    again = await browser.sign_in(await make_key(app, "operator"), language="en")
    assert again.status_code == 303
    assert browser.http.cookies[SESSION_COOKIE] != copy
    # the exports the last person listed are not the next one's (as on sign-out)
    assert any(c.startswith("voucher_console_exports=") and "max-age=0" in c.lower()
               for c in again.headers.get_list("set-cookie"))
    assert (await browser.get("/console/operator")).status_code == 200  # the new session works
    thief = Browser(app)
    try:
        page = await thief.get("/console/operator", headers={"Cookie": f"{SESSION_COOKIE}={copy}"})
        assert page.status_code == 303 and "ended=1" in page.headers["location"]
    finally:
        await thief.http.aclose()
