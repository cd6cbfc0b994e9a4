"""The console's web layer: its own small ASGI app mounted at /console, the page context
(session, language, who the key is), rendering in the reader's language, and the pages every
role shares (sign in, sign out, language, errors).

A sub-application, not routes on the API app, so that nothing of the API's HTTP contract
leaks either way: console pages are not in the OpenAPI document, the API's app-wide rules for
JSON bodies and query strings do not apply to HTML forms, and every error here is a page, never
problem+json. The unit-of-work middleware lets /console through untouched
(http/unit_of_work.py): each of the console's API calls gets its own transaction; the console's
own are short ones of their own, never around an API call (its ended sessions, console/ended.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.background import BackgroundTask
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.staticfiles import StaticFiles

from services.voucher.anomalies.rules import AMOUNT_FIGURES
from services.voucher.console import ended
from services.voucher.console.api import Api, Refusal
from services.voucher.console.session import (
    LANGUAGE_COOKIE,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Session,
    Sessions,
)
from services.voucher.db import Database, is_unavailable
from services.voucher.i18n import STATUS_WORDS, Message, msg
from services.voucher.money import Unit, format_for_people, format_major
from services.voucher.settings import Settings

log = logging.getLogger("voucher.console")
HERE = Path(__file__).parent
PREFIX = "/console"
LANGUAGES = ("zh", "en")
#: Where each role lands after signing in.
HOME = {"operator": "/console/operator", "auditor": "/console/auditor",
        "enterprise": "/console/enterprise", "provider": "/console/provider"}

ROLE_NAMES = {"operator": msg("programme office"), "auditor": msg("auditor"),
              "enterprise": msg("enterprise"), "provider": msg("provider")}

#: Every status a page shows, as people read it (the API's code stays in a data-status attribute
#: where a page names one thing's status).
STATUS_NAMES = {
    **STATUS_WORDS,
    # a statement line's kind
    "capture": msg("subsidy captured"), "refund": msg("subsidy refunded"),
}

#: Every ledger account kind (ledger/rules.py `AccountKind`) as people read it; the code stays in
#: a data-kind attribute.
ACCOUNT_KIND_NAMES = {
    "programme_funding": msg("programme funding"), "programme_available": msg("programme budget available"),
    "programme_committed": msg("committed to approved applications"), "programme_spent": msg("programme spent"),
    "programme_breakage": msg("expired value kept out of the pool"), "programme_clawback": msg("clawback (contra)"),
    "voucher_available": msg("voucher available"), "voucher_held": msg("voucher held"),
    "voucher_used": msg("voucher used"), "provider_payable": msg("payable to the provider"),
    "provider_paid": msg("paid to the provider"), "enterprise_receivable": msg("receivable from the enterprise"),
    "enterprise_payable": msg("payable to the enterprise"), "enterprise_paid": msg("paid to the enterprise"),
}

#: Every kind of ledger journal as people read it (a voucher's history names the movement).
JOURNAL_NAMES = {
    "programme_funded": msg("programme funded"), "budget_committed": msg("budget committed to an approval"),
    "commitment_released": msg("commitment released"), "voucher_issued": msg("voucher issued"),
    "hold_placed": msg("subsidy held for an order"), "hold_captured": msg("held subsidy captured"),
    "redeemed": msg("subsidy redeemed for an order"), "hold_voided": msg("hold released by the provider"),
    "hold_expired": msg("hold lapsed"), "hold_voided_voucher_revoked": msg("hold released: voucher revoked"),
    "hold_voided_voucher_expired": msg("hold released: voucher expired"),
    "claim_rejected": msg("hold released: claim rejected"), "refund": msg("subsidy refunded"),
    "voucher_expired": msg("unused value returned at expiry"), "voucher_revoked": msg("unused value returned on revocation"),
    "clawback_recorded": msg("clawback recorded"), "clawback_reversed": msg("clawback reversed"),
    "clawback_repaid": msg("clawback repaid by the enterprise"),
    "clawback_written_off": msg("clawback written off"), "clawback_repayment_reversed": msg("clawback repayment reversed"),
    "clawback_write_off_reversed": msg("clawback write-off reversed"),
    "clawback_overpayment_returned": msg("overpayment returned to the enterprise"),
    "clawback_overpayment_return_reversed": msg("overpayment return reversed"),
    "clawback_recovered_by_refunds": msg("covered by refunds or payments, on a clawback, reversal or return"),
    "settlement_paid": msg("settlement paid"),
    "settlement_repaid": msg("settlement repaid"), "claim_paid": msg("claim paid"),
}

#: The memo forms the service writes that name an order (a hold, a one-step redeem, a capture),
#: that end in what a person typed (a revocation's or refund's reason, a void's note), or that
#: end in a payment's reference. Only these forms are read, so a typed reason that mentions an
#: order stays the reason.
_MEMO_ORDER = re.compile(r"^(?:hold|redeemed|captured [0-9]+ of [0-9]+) for order (?P<order>\S+)$")
_MEMO_WORDS = re.compile(
    r"^(?:revoked|clawback of used value|clawback written off|refund to (?:voucher|programme pool)"
    r"|hold released \([a-z_]+\)|reversal of [0-9a-f-]{36})"
    r": (?P<words>.+)$", re.S)
_MEMO_REFERENCE = re.compile(r"^(?:(?:settlement|claim) \S+ (?:paid|repaid by the provider)"
                             r"|clawback repaid by the enterprise|overpayment returned to the enterprise)"
                             r", reference (?P<reference>.+)$", re.S)


def memo_detail(memo: str | None, language: str) -> str:
    """What of a journal's memo a person reads beside the movement's name. The memo is the
    ledger's record, in English, with amounts in minor units ("captured 200000 of 300000 for
    order PO-1"); shown as it was, a Chinese page had carried English and fen figures with no
    unit (an independent review, December 2026)."""
    if not memo:
        return ""
    words = _MEMO_WORDS.match(memo)
    if words is not None:
        return words["words"]
    order = _MEMO_ORDER.match(memo)
    if order is not None:
        return msg("order {reference}", reference=order["order"]).render(language)
    reference = _MEMO_REFERENCE.match(memo)
    if reference is not None:
        return msg("payment reference {reference}", reference=reference["reference"]).render(language)
    return ""


#: A verification's problems as an auditor reads them: what each kind means, in the page's
#: language. The API keeps each problem's own English `detail`, with its numbers, for machines
#: and for the record; the console had shown that text and the kind's code to every reader.
VERIFICATION_PROBLEMS: dict[str, tuple[Message, Message]] = {
    "event_deleted": (msg("events deleted"), msg(
        "{missing} event(s) are missing from the chain here; the event after them links from the last of them "
        "and cannot be checked", missing=0)),
    "event_inserted": (msg("event inserted"), msg(
        "the event is not part of the chain: the next event links straight from the one before it")),
    "events_reordered": (msg("events reordered"), msg(
        "this event and the next are in each other's places: their links only verify in the opposite order")),
    "event_altered": (msg("event altered"), msg(
        "the event does not hash to its link: its content was changed, or an earlier event was removed and "
        "the rest renumbered")),
    "checkpoint_mismatch": (msg("checkpoint not matched"), msg(
        "the chain does not hash to what a signed checkpoint pinned, or ends before it: it was rewritten or "
        "shortened")),
    "checkpoint_signature_invalid": (msg("checkpoint signature invalid"), msg(
        "a stored checkpoint's signature does not verify with the service's keys, or a retired key signed it "
        "after the current key took over")),
    "posting_without_event": (msg("journal without an event"), msg(
        "a ledger journal has no audit event: it was written behind the service's back")),
    "postings_differ": (msg("journal differs from its event"), msg(
        "the ledger's journal (its kind, time, references or postings) differs from what its audit event "
        "recorded")),
    "event_without_posting": (msg("event without a journal"), msg(
        "an audit event records a journal the ledger no longer has")),
    "event_outside_chain": (msg("event outside the chain"), msg(
        "an event carries a position the chain does not have: it was planted with its seal filled in")),
    "account_without_event": (msg("account without an event"), msg(
        "a ledger account has no audit event recording whose it is: it was opened behind the service's back")),
    "account_differs": (msg("account differs from its event"), msg(
        "the ledger account (its owner, kind, unit or code) differs from what its audit event recorded")),
    "event_without_account": (msg("event without an account"), msg(
        "an audit event records a ledger account the ledger no longer has")),
    "account_event_repeated": (msg("account recorded twice"), msg(
        "a second audit event records a ledger account: the service records each once")),
}


def verification_problem(problem: dict[str, Any], language: str) -> tuple[str, str]:
    """A verification problem's name and meaning in `language`; an unknown kind as the API has it."""
    known = VERIFICATION_PROBLEMS.get(str(problem.get("kind")))
    if known is None:
        return str(problem.get("kind", "")), str(problem.get("detail", ""))
    name, meaning = known
    if "missing" in meaning.params:  # how many, from the problem itself
        meaning = Message(meaning.template, missing=problem.get("missing", "?"))
    return name.render(language), meaning.render(language)


#: An anomaly finding's figures by name, in the page's language (its code stays in data-figure).
FIGURE_NAMES: dict[str, Message] = {
    "redemptions": msg("redemptions"), "shared_parties": msg("shared related parties"), "orders": msg("orders"),
    "threshold": msg("threshold"), "lower_bound": msg("lower bound"), "margin_bps": msg("margin below the threshold"),
    "window_days": msg("window (days)"), "order_total": msg("orders' total"), "recent_amount": msg("recent amount"),
    "average_per_window": msg("average per earlier window"), "earlier_total": msg("earlier total"),
    "earlier_windows": msg("earlier windows"), "active_windows": msg("earlier windows with redemptions"),
    "factor": msg("factor"), "burst_amount": msg("amount in the burst"), "total_redeemed": msg("total redeemed"),
    "share_bps": msg("share"), "threshold_share_bps": msg("threshold share"), "min_amount": msg("least amount"),
    "days": msg("days"), "enterprises": msg("enterprises"), "providers": msg("providers"), "claims": msg("claims"),
}


def delivery_error(error: str | None, language: str) -> str:
    """A webhook attempt's error as the page's reader reads it. The attempt log keeps the
    worker's English (`timed out`, `HTTP 500`, `refused: …`, an httpx error); a status is
    already shown as "answered 500", and an error the console has no words for is shown as it
    is, in brackets."""
    if not error or error.startswith("HTTP "):
        return ""
    if error == "timed out":
        return msg("timed out").render(language)
    if error.startswith("not sent: the service cannot open"):
        return msg("not sent: the service cannot open this endpoint's signing secret").render(language)
    if error.startswith("refused: "):
        reason = error.removeprefix("refused: ")
        if "does not resolve to a public address" in reason:
            return msg("not sent: the address does not resolve to a public address").render(language)
        if "did not resolve within" in reason:
            return msg("not sent: the host did not resolve in time").render(language)
        return msg("not sent ({reason})", reason=reason).render(language)
    return msg("connection failed ({error})", error=error).render(language)


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class PageError(Exception):
    """A page that says what went wrong, with its HTTP status."""

    def __init__(self, status: int, message: Message | str, *, title: Message | None = None) -> None:
        self.status = status
        self.message = message
        self.title = title


class SignInNeeded(Exception):
    def __init__(self, reason: Message | None = None) -> None:
        self.reason = reason


def language_of(request: Request) -> str:
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    return chosen if chosen in LANGUAGES else "zh"


def text(language: str) -> Callable[..., str]:
    """The templates' `_`: an English catalogue template in the reader's language."""
    def _(template: str, /, **params: Any) -> str:
        return Message(template, **params).render(language)  # templates are extracted by catalogue.py
    return _


@dataclass
class Page:
    """One signed-in request: who, in which language, and the API as that key."""

    request: Request
    language: str
    session: Session
    me: dict[str, Any]
    api: Api
    sessions: Sessions

    @property
    def role(self) -> str:
        return str(self.me["role"])

    @property
    def service_now(self) -> datetime:
        """The time the service's rules use (`/v1/me`): the sandbox clock in sandbox mode, where
        the console's own clock (sessions) stays real time."""
        return datetime.fromisoformat(str(self.me["now"]).replace("Z", "+00:00"))

    @property
    def csrf_token(self) -> str:
        return self.sessions.csrf_token(self.session.session_id)

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        return render(self.request, template, status=status, language=self.language, page=self, **values)

    async def form(self, *, files: int = 1) -> FormData:
        """The POSTed form, once its CSRF token is checked (403 page otherwise), with at most
        `files` files in it."""
        form = await read_form(self.request, files=files)
        if not self.sessions.same(form.get("csrf_token"), self.csrf_token):
            raise PageError(403, msg("this form has expired or did not come from this console; "
                                     "open the page again and resend it"))
        return form


def script_json(value: Any) -> str:
    """JSON to put inside a <script type="application/json"> element: no `<`, `>` or `&` in it,
    so no text in the data (a provider's name) can end the element."""
    return (json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def zone_of(request: Request) -> ZoneInfo:
    return ZoneInfo(settings_of(request).default_timezone)


def render(request: Request, template: str, *, status: int = 200, language: str | None = None,
           page: Page | None = None, **values: Any) -> HTMLResponse:
    language = language or language_of(request)
    zone = zone_of(request)

    def when(value: str | None, with_time: bool = True) -> str:
        if not value:
            return "—"
        if "T" not in value:  # a calendar day (a settlement period's), already the office's
            return value
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(zone)
        return moment.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")

    def money(amount: int | None, unit: str) -> str:
        return "—" if amount is None else format_for_people(amount, unit, language)

    def named(names: dict[str, Message]) -> Callable[[str], str]:
        """A code in words from `names`, in the page's language (the code itself if unnamed)."""
        def name_of(code: str) -> str:
            name = names.get(code)
            return name.render(language) if name is not None else code
        return name_of

    status_name, account_kind, journal_name = named(STATUS_NAMES), named(ACCOUNT_KIND_NAMES), named(JOURNAL_NAMES)

    def major(amount: int, unit: str) -> str:
        return format_major(amount, Unit(unit))

    def percent(bps: int) -> str:
        """A rate in basis points as people read it: 3000 is 30%, 1250 is 12.5%."""
        whole, part = divmod(bps, 100)
        return f"{whole}.{part:02d}".rstrip("0").rstrip(".") + "%"

    def figure(name: str, value: Any, unit: str | None) -> str:
        """A finding's figure as people read it: an amount as money in its unit, a share in
        basis points as a percentage, anything else as it is."""
        if name in AMOUNT_FIGURES and unit and isinstance(value, int):
            return money(value, unit)
        if name.endswith("_bps") and isinstance(value, int):
            return percent(value)
        return str(value)

    def cap_share(bps: int) -> str:
        """A share of a cap, rounded down to a tenth of a percent: 9,996 bps is 99.9%, never
        100.0% while some of the cap is left."""
        return f"{bps // 100}.{bps % 100 // 10}%"

    def here_in(other: str) -> str:
        return f"{PREFIX}/language/{other}?" + urlencode({"next": str(request.scope["path"])})

    body = templates.get_template(template).render(
        _=text(language), lang=language, html_lang="zh-CN" if language == "zh" else "en",
        memo_detail=lambda memo: memo_detail(memo, language),
        delivery_error=lambda error: delivery_error(error, language),
        figure_name=named(FIGURE_NAMES),
        verification_problem=lambda problem: verification_problem(problem, language),
        when=when, money=money, major=major, percent=percent, figure=figure, cap_share=cap_share, status_name=status_name, account_kind=account_kind, journal_name=journal_name, page=page, me=page.me if page else None, role=page.role if page else None,
        csrf_token=page.csrf_token if page else None, path=str(request.scope["path"]), here_in=here_in,
        home=HOME, role_name=ROLE_NAMES[page.role].render(language) if page else None, **values,
    )
    response = HTMLResponse(body, status_code=status)
    response.headers["Content-Language"] = "zh-CN" if language == "zh" else "en"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    response.headers["X-Frame-Options"] = "DENY"  # for browsers that ignore frame-ancestors (IE mode shells)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if is_secure(request):  # a browser that saw the console over https never opens it over http again
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


#: The auditor's recent exports (console/auditor.py), forgotten at sign-out.
EXPORTS_COOKIE = "voucher_console_exports"


def set_cookie(response: Response, request: Request, name: str, value: str, *, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PREFIX, httponly=True, samesite="strict",
                        secure=is_secure(request))


def is_secure(request: Request) -> bool:
    """Cookies are Secure over https, and always in production (behind a proxy that ends TLS the
    request may look like http to the app)."""
    return request.scope.get("scheme") == "https" or settings_of(request).environment == "production"


def _htmx(request: Request, response: Response) -> Response:
    """A failed htmx request reloads its page (htmx swaps no 4xx or 5xx answer in, so the person
    would see nothing happen): the reload shows the sign-in page, or the form afresh."""
    if request.headers.get("hx-request") == "true" and response.status_code >= 400:
        response.headers["HX-Refresh"] = "true"
    return response


def sessions_of(request: Request) -> Sessions:
    return request.app.state.sessions  # type: ignore[no-any-return]


def database_of(request: Request) -> Database:
    return request.app.state.api_app.state.database  # type: ignore[no-any-return]


def now_of(request: Request) -> datetime:
    return request.app.state.now()  # type: ignore[no-any-return]


def api_for(request: Request, api_key: str | None, language: str) -> Api:
    client = request.client
    address = (client.host, client.port) if client else ("unknown", 0)
    return Api(request.app.state.api_app, api_key, address, language,
               page_limit_max=settings_of(request).page_limit_max)


def form_key(form: Any) -> str:
    """The form's Idempotency-Key (made when the page was shown, so sending the form twice is one
    change); a fresh one if the form carried none that looks right."""
    key = str(form.get("form_key") or "")
    return key if 8 <= len(key) <= 64 and key.isascii() and key.replace("-", "").isalnum() else str(uuid.uuid4())


async def read_form(request: Request, *, uploads: bool = True, files: int = 1) -> FormData:
    """The request's form, bounded, a declared body over its limit refused unread: a form with a
    file (multipart) up to the upload limit, any other form up to the API's body limit; at most
    `files` files, whatever they weigh together. Where `uploads` is False (signing in, before any
    session) a multipart body is refused unread."""
    settings = settings_of(request)
    multipart = request.headers.get("content-type", "").lower().startswith("multipart/")
    if multipart and not uploads:
        raise PageError(415, msg("the form could not be read; send it again from the console"))
    limit = settings.max_upload_bytes if multipart else settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is None or not (declared.isascii() and declared.isdigit()):
        raise PageError(411, msg("the form was sent without its length; send it again from the console"))
    if int(declared) > limit:
        raise PageError(413, msg("the form is larger than the upload limit of {limit} bytes", limit=limit))
    try:
        return await request.form(max_files=files, max_fields=200, max_part_size=limit)
    except Exception as exc:  # a malformed multipart body: the person's request, not our fault
        log.info("console form refused: %s", exc.__class__.__name__)
        raise PageError(400, msg("the form could not be read; send it again from the console")) from exc


async def signed_in(request: Request, *roles: str) -> Page:
    """The page's signed-in context, for one of `roles` (403 page for another role); sends to
    sign-in when there is no live session or its key no longer works."""
    language = language_of(request)
    sessions = sessions_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    session = sessions.open(cookie, now_of(request))
    if session is None:
        raise SignInNeeded(msg("your session has ended; sign in again") if cookie else None)
    try:
        signed_out = await ended.has_ended(database_of(request), session.session_id)
    except Exception as exc:  # unreachable, locked, timed out, or not migrated: no page without the answer
        log.log(logging.WARNING if is_unavailable(exc) else logging.ERROR,
                "console session lookup failed", exc_info=exc)
        raise PageError(503, msg("the service cannot reach its database just now; try again in a moment")) from exc
    if signed_out:  # a copy of the cookie from before its sign-out
        raise SignInNeeded(msg("your session has ended; sign in again"))
    api = api_for(request, session.api_key, language)
    try:
        me = await api.get("/v1/me")
    except Refusal as refusal:
        if refusal.status == 401:
            raise SignInNeeded(msg("the API key of this session no longer works; sign in again")) from refusal
        raise PageError(refusal.status, refusal.detail) from refusal
    page = Page(request, language, session, me, api, sessions)
    if roles and page.role not in roles:
        raise PageError(403, msg("this page is for the role {roles}; the key signed in is {role}",
                                 roles=[ROLE_NAMES[r] for r in roles], role=ROLE_NAMES.get(page.role, page.role)))
    return page


#: The headers of an API download the browser needs (what it is, its name, which export).
PASSED_HEADERS = ("content-type", "content-disposition", "content-language", "export-id", "etag")


async def _end_session(request: Request, session: Session, now: datetime) -> None:
    """Record `session` as ended, so a copy of its cookie stops working too; a database that
    cannot record it does not keep the browser signed in or out (logged)."""
    try:
        await ended.end(database_of(request), session.session_id, session.expires_at, now)
    except Exception as exc:  # whatever it is, the browser's own cookie is replaced
        log.log(logging.WARNING if is_unavailable(exc) else logging.ERROR,
                "console session end not recorded: a copy of its cookie works until the session ends", exc_info=exc)


def _download_headers(upstream: Any) -> dict[str, str]:
    headers = {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_HEADERS}
    headers["Cache-Control"] = "no-store"
    headers["X-Content-Type-Options"] = "nosniff"  # a CSV is never read as a page
    return headers


def passthrough(upstream: Any) -> Response:
    """An API download (a statement) handed to the browser as the API answered it."""
    return Response(upstream.content, status_code=upstream.status_code, headers=_download_headers(upstream))


def streamed_passthrough(upstream: Any, closing: contextlib.AsyncExitStack) -> StreamingResponse:
    """An API download handed to the browser as the API writes it; `closing` ends the API's
    side when the body is through or the browser goes away (then the API stops writing)."""
    async def body() -> AsyncIterator[bytes]:
        async with closing:
            async for chunk in upstream.aiter_raw():
                yield chunk

    return StreamingResponse(body(), status_code=upstream.status_code, headers=_download_headers(upstream),
                             background=BackgroundTask(closing.aclose))


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def local_path(candidate: str | None) -> str:
    """`candidate` when it is a console path on this site, else the console's start: never a
    redirect to another site."""
    if candidate and candidate.startswith(PREFIX + "/") and not candidate.startswith("//") \
            and "\\" not in candidate and "//" not in candidate and "\n" not in candidate:
        return candidate
    return PREFIX + "/"


# -- the app ---------------------------------------------------------------------------------------


def create_console(api_app: Any, settings: Settings) -> FastAPI:
    """The console app. `api_app` is the service's app, which every console action calls."""
    console = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    secret = settings.console_secret
    lifetime = timedelta(hours=settings.console_session_hours)
    console.state.sessions = (Sessions(secret.get_secret_value().encode(), lifetime) if secret is not None
                              else Sessions.random(lifetime))
    console.state.settings = settings
    console.state.api_app = api_app
    console.state.now = lambda: datetime.now(UTC)  # sessions end in real time, whatever the sandbox clock says
    console.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @console.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> Response:
        language = language_of(request)
        message = exc.message.render(language) if isinstance(exc.message, Message) else exc.message
        return _htmx(request, render(request, "error.html", status=exc.status, language=language,
                                     status_code=exc.status, message=message))

    @console.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, exc: SignInNeeded) -> Response:
        language = language_of(request)
        if request.method != "GET":
            response: Response = render(request, "error.html", status=401, language=language, status_code=401,
                                        message=(exc.reason or msg("sign in first")).render(language))
        else:
            query = {"next": str(request.scope["path"])}
            if exc.reason is not None:
                query["ended"] = "1"
            response = redirect(f"{PREFIX}/sign-in?" + urlencode(query))
        response = _htmx(request, response)
        if SESSION_COOKIE in request.cookies:  # a link from elsewhere comes without it: nothing to end
            response.delete_cookie(SESSION_COOKIE, path=PREFIX)
            if EXPORTS_COOKIE in request.cookies:  # the next person to sign in is not shown them
                response.delete_cookie(EXPORTS_COOKIE, path=PREFIX)
        return response

    @console.exception_handler(Refusal)
    async def refused(request: Request, exc: Refusal) -> Response:
        if exc.status == 401:  # the key stopped working between two calls of one page
            return await sign_in_needed(request, SignInNeeded(
                msg("the API key of this session no longer works; sign in again")))
        status = exc.status if 400 <= exc.status < 500 or exc.status == 503 else 502
        return _htmx(request, render(request, "error.html", status=status, status_code=status, message=exc.detail))

    @console.exception_handler(RequestValidationError)
    async def bad_address(request: Request, exc: RequestValidationError) -> Response:
        """A malformed id or query value in a console address: no such page."""
        language = language_of(request)
        return _htmx(request, render(request, "error.html", status=404, language=language, status_code=404,
                                     message=msg("there is no such page in the console").render(language)))

    @console.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        language = language_of(request)
        message = {404: msg("there is no such page in the console"),
                   405: msg("this page cannot be used that way")}.get(exc.status_code,
                                                                      msg("the request could not be served"))
        return _htmx(request, render(request, "error.html", status=exc.status_code, language=language,
                                     status_code=exc.status_code, message=message.render(language)))

    @console.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("console error on %s %s", request.method, request.scope["path"], exc_info=exc)
        language = language_of(request)
        return _htmx(request, render(
            request, "error.html", status=500, language=language, status_code=500,
            message=msg("something went wrong on our side; nothing you did caused it").render(language)))

    @console.get("/")
    async def start(request: Request) -> Response:
        page = await signed_in(request)
        return redirect(HOME[page.role])

    @console.get("/sign-in")
    async def sign_in_form(request: Request, next: str | None = None, ended: str | None = None) -> Response:
        nonce = secrets.token_urlsafe(16)
        language = language_of(request)
        response = render(request, "sign_in.html", language=language, next=local_path(next),
                          sign_in_token=sessions_of(request).sign_in_token(nonce),
                          notice=msg("your session has ended; sign in again").render(language) if ended else None)
        set_cookie(response, request, SIGN_IN_COOKIE, nonce, max_age=3600)
        return response

    @console.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        language = language_of(request)
        sessions = sessions_of(request)
        form = await read_form(request, uploads=False)
        nonce = request.cookies.get(SIGN_IN_COOKIE, "")
        if not nonce or not sessions.same(form.get("csrf_token"), sessions.sign_in_token(nonce)):
            raise PageError(403, msg("this form has expired or did not come from this console; "
                                     "open the page again and resend it"))
        key = str(form.get("api_key") or "").strip()
        next_path = local_path(str(form.get("next") or ""))
        error: str | None = None
        status, headers = 401, {}
        if not key:
            error = msg("enter an API key").render(language)
        elif not (key.isascii() and key.isprintable()):  # no key is; and it cannot go in a header
            error = msg("this is not an API key of this service; check it and sign in again").render(language)
        else:
            try:
                me = await api_for(request, key, language).get("/v1/me")
            except Refusal as refusal:
                error = refusal.detail or refusal.title
                if refusal.status in (429, 503):  # the key may be fine: say to wait, not that it is wrong
                    status = refusal.status
                    headers = {"Retry-After": refusal.retry_after} if refusal.retry_after else {}
        if error is not None:
            fresh = secrets.token_urlsafe(16)
            response: Response = render(request, "sign_in.html", status=status, language=language, next=next_path,
                                        sign_in_token=sessions.sign_in_token(fresh), error=error, notice=None)
            response.headers.update(headers)
            set_cookie(response, request, SIGN_IN_COOKIE, fresh, max_age=3600)
            return response
        home = HOME[str(me["role"])]
        now = now_of(request)
        # The session this browser had is ended, as sign-out ends it: a copy of its cookie taken
        # before had kept working until it expired (an independent review, December 2026).
        previous = sessions.open(request.cookies.get(SESSION_COOKIE), now)
        if previous is not None:
            await _end_session(request, previous, now)
        response = redirect(next_path if next_path.startswith(home) else home)
        set_cookie(response, request, SESSION_COOKIE, sessions.seal(key, now),
                   max_age=int(sessions.lifetime.total_seconds()))
        response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX)
        response.delete_cookie(EXPORTS_COOKIE, path=PREFIX)  # the exports listed were the last person's
        return response

    @console.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        # Without asking the API who the key is: sign-out had answered the API's 429 or 503 with
        # an error page and left the cookie in the browser, still signed in (an independent
        # review, December 2026). A form whose token is not this session's is still refused.
        # The session is recorded as ended, so a copy of the cookie taken before stops working
        # too; a database that cannot record it does not keep the browser signed in (logged).
        sessions = sessions_of(request)
        now = now_of(request)
        session = sessions.open(request.cookies.get(SESSION_COOKIE), now)
        if session is not None:
            form = await read_form(request, uploads=False)
            if not sessions.same(form.get("csrf_token"), sessions.csrf_token(session.session_id)):
                raise PageError(403, msg("this form has expired or did not come from this console; "
                                         "open the page again and resend it"))
            await _end_session(request, session, now)
        response = redirect(f"{PREFIX}/sign-in")
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        response.delete_cookie(EXPORTS_COOKIE, path=PREFIX)  # the exports listed are the person's, not the browser's
        return response

    @console.get("/language/{language}")
    async def choose_language(request: Request, language: str, next: str | None = None) -> Response:
        if language not in LANGUAGES:
            raise PageError(404, msg("there is no such page in the console"))
        response = redirect(local_path(next))
        response.set_cookie(LANGUAGE_COOKIE, language, max_age=365 * 86400, path=PREFIX, samesite="strict",
                            httponly=True, secure=is_secure(request))
        return response

    from services.voucher.console import (
        auditor,
        claims,
        enterprise,
        filing,
        ledger,
        operator,
        provider,
        redemptions,
        settlements,
        usage,
        vouchers,
        webhooks,
    )

    operator.install(console)
    vouchers.install(console)
    settlements.install(console)
    claims.install(console)
    ledger.install(console)
    auditor.install(console)
    enterprise.install(console)
    filing.install(console)
    provider.install(console)
    redemptions.install(console)
    usage.install(console)
    webhooks.install(console)
    return console
