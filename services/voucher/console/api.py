"""The console is a client of the service's own API, in process.

Each console action is an HTTP request to the same app (httpx over ASGI, no socket) with the
signed-in key as its bearer token, the browser's address as the client address and the
console's language as Accept-Language. Authentication, scopes, tenant isolation, rate limits,
idempotency and the audit trail (which names the key) are therefore the API's own; the console
has no rule of its own and shows an API refusal's (already localised) detail to the person.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.types import ASGIApp

from services.voucher.errors import ValidationFailed
from services.voucher.http.language import content_language
from services.voucher.i18n import Message, msg, translate

log = logging.getLogger("voucher.console")

#: The host name the in-process requests carry; nothing listens on it.
INTERNAL_BASE_URL = "http://console.internal"


#: What the console's forms call the API's fields, to say which one a refusal is about (a field
#: not named here is left out: its message, already in the person's language, is shown alone).
FIELD_NAMES: dict[str, Message] = {
    "amount": msg("Amount"), "requested_amount": msg("Amount requested"), "face_value": msg("Face value"), "purpose": msg("Purpose"), "note": msg("Note"),
    "reason": msg("Reason"), "clawback": msg("Used value to recover"), "uscc": msg("The enterprise's USCC"),
    "enterprise_uscc": msg("The enterprise's USCC"), "reference": msg("Reference"), "paid_on": msg("Paid on"),
    "period_start": msg("First day"), "period_end": msg("Last day (included)"), "programme_id": msg("Programme"),
    "provider_id": msg("Provider"), "voucher_id": msg("Voucher"), "statement": msg("The objection, as received"),
    "objector": msg("Objector"), "as_of": msg("As of"), "order_reference": msg("Order reference"),
    "since": msg("From (day)"), "until": msg("To (day, included)"), "cursor": msg("Page"),
}


def field_problem(error: dict[str, Any], language: str, names: dict[str, Message] | None = None) -> str:
    """One of a 422's field errors in words: the field as the form names it, then the API's
    message; a row of a list by its number. The form's own `names` first, the outermost first
    (`/line_items/1/amount` is order line 2 of a claim), else the common name nearest the field
    (`/grants/0/face_value` is the face value of row 1). Never the pointer itself: the person
    sees a form, not JSON."""
    parts = [p for p in str(error.get("pointer", "")).split("/") if p]
    named = [p for p in parts if not p.isdigit()]
    name = next((names[p] for p in named if names and p in names), None) \
        or next((FIELD_NAMES[p] for p in reversed(named) if p in FIELD_NAMES), None)
    problem = str(error.get("message", ""))
    numbers = [int(p) + 1 for p in parts if p.isdigit()]
    if name is None:
        if numbers:
            return msg("row {number}: {problem}", number=numbers[0], problem=problem).render(language)
        return problem
    field: Message | str = name
    if numbers:
        field = msg("{field}, number {number}", field=name, number=numbers[0])
    return msg("{field}: {problem}", field=field, problem=problem).render(language)


def in_words(errors: list[dict[str, Any]], language: str) -> str:
    """A 422's field errors as one sentence for a page that shows one line (at most ten)."""
    separator = "；" if language.startswith("zh") else "; "
    said = [field_problem(e, language) for e in errors[:10]]
    if len(errors) > 10:
        said.append(msg("and {count} more", count=len(errors) - 10).render(language))
    return separator.join(said)


@dataclass
class Refusal(Exception):
    """The API answered with a problem: its status, code and detail (in the console's language)."""

    status: int
    code: str
    title: str
    #: The API's detail; for a refusal of fields, what is wrong with each, in words (the API's
    #: own detail points at its `errors` list, which no page shows as such).
    detail: str
    errors: list[dict[str, Any]]
    #: The API's Retry-After (a 429 or a 503), for the page to pass on.
    retry_after: str | None = None
    #: The problem's extension members (`grant_index`, `current_status`, ...), as the API sent them.
    members: dict[str, Any] = field(default_factory=dict)

    def for_the_form(self, *, page_is_the_resource: bool = True) -> bool:
        """Whether the page shows this refusal beside its form (the person can mend the input and
        send it again) rather than raising it to the error page: any 4xx but 401 (sign in again)
        and 403 (not this key's page); a 404 only where it names something the form referred to,
        not the resource the page is about (`page_is_the_resource`); never a 5xx."""
        if not 400 <= self.status < 500 or self.status in (401, 403):
            return False
        return self.status != 404 or not page_is_the_resource


class Api:
    """The API as one key, for one console request. Holds nothing that needs closing."""

    #: How many of a list the console reads at most for a choice of names (`every`): a thousand
    #: pages of the largest size, far beyond any programme's providers or programmes.
    EVERY_PAGES = 1000

    def __init__(self, app: ASGIApp, api_key: str | None, client: tuple[str, int], language: str, *,
                 page_limit_max: int = 200) -> None:
        self._app = app
        self._page_limit_max = page_limit_max
        self._address = client
        self._language = language
        self._headers = {"Accept-Language": content_language(language)}
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def _client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self._app, client=self._address)
        # In process: an ASGI transport has no network timeouts to set.
        return httpx.AsyncClient(transport=transport, base_url=INTERNAL_BASE_URL, headers=self._headers)

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      json: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        async with self._client() as client:
            return await client.send(self._built(client, method, path, params=query, json=json, headers=headers))

    def _built(self, client: httpx.AsyncClient, method: str, path: str, **parts: Any) -> httpx.Request:
        """The request, or a refusal of what no request can carry (a value too long for a URL,
        a number JSON cannot write) — the form's input, never a fault of the console's."""
        try:
            return client.build_request(method, path, **parts)
        except (httpx.InvalidURL, ValueError) as exc:
            log.info("console input refused before the API: %s", exc)
            raise Refusal(422, ValidationFailed.code, translate(ValidationFailed.title, self._language),
                          msg("a value sent is too long or not a number the API can read; check the form and "
                              "send it again").render(self._language), []) from exc

    async def get(self, path: str, **params: Any) -> Any:
        """A read; a page's `limit` no larger than the deployment allows (VOUCHER_PAGE_LIMIT_MAX,
        1..200): a page asking for 200 under a maximum of 100 had been refused 422 whole (an
        independent review, December 2026)."""
        if isinstance(params.get("limit"), int):
            params["limit"] = min(params["limit"], self._page_limit_max)
        return _json(await self.request("GET", path, params=params), self._language)

    async def every(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a list, page after page (`next_cursor`): the choices a form offers. The
        settlements form had listed the first 200 providers only, so the 201st could not be
        settled from the console (the same review)."""
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(self.EVERY_PAGES):
            listing = await self.get(path, **params, limit=self._page_limit_max, cursor=cursor)
            items.extend(listing["items"])
            cursor = listing.get("next_cursor")
            if not cursor:
                break
        return items

    @contextlib.asynccontextmanager
    async def streamed(self, path: str, **params: Any) -> AsyncIterator[httpx.Response]:
        """A GET whose answer is handed over as the API writes it (an export of a million rows
        must not be held in memory): the response's headers at once, its body as it comes. A
        refusal is raised, like `get`'s. Leaving the block ends the API's work if it is still
        writing (the browser went away)."""
        query = {k: v for k, v in params.items() if v not in (None, "")}
        transport = _StreamingASGI(self._app, self._address)
        async with httpx.AsyncClient(transport=transport, base_url=INTERNAL_BASE_URL, headers=self._headers) as client:
            response = await client.send(self._built(client, "GET", path, params=query), stream=True)
            try:
                if response.status_code >= 400:
                    await response.aread()
                    _json(response, self._language)
                yield response
            finally:
                await response.aclose()

    async def get_raw(self, path: str, **params: Any) -> httpx.Response:
        response = await self.request("GET", path, params=params)
        if response.status_code >= 400:
            _json(response, self._language)
        return response

    async def post(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        """A write, with an Idempotency-Key: the one the form carried (so a form sent twice is
        one change), else a fresh one."""
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return _json(await self.request("POST", path, json=body if body is not None else {}, headers=headers),
                     self._language)

    async def post_once(self, path: str, body: Any, keys: Iterable[str]) -> tuple[Any, bool]:
        """One change however often it is sent, but never a stale refusal: a write under the
        first of `keys` whose stored answer is not a refusal. A refusal is kept with its key
        (replayed for the key's lifetime), so a batch refused for budget stayed refused after
        budget was freed (an independent review); the next key tries again, and a success
        already made under any key is found and answered again. The answer, and whether it was
        one made before (a replay), which the page must not show as made now."""
        response = None
        for key in keys:
            response = await self.request("POST", path, json=body, headers={"Idempotency-Key": key})
            if response.status_code < 400 or response.headers.get("idempotent-replayed") != "true":
                break
        assert response is not None, "no key given"
        return _json(response, self._language), response.headers.get("idempotent-replayed") == "true"


def _json(response: httpx.Response, language: str) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        detail = in_words(errors, language) if errors else str(body.get("detail", ""))
        raise Refusal(response.status_code, str(body.get("code", "")), str(body.get("title", "")),
                      detail, errors, response.headers.get("retry-after"), body)
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


class _StreamingASGI(httpx.AsyncBaseTransport):
    """httpx's own ASGI transport waits for the whole answer before handing it over; this one
    hands it over at its first message and passes the body on as the app writes it, at most a
    few chunks ahead of the reader (the app waits while the browser is slow)."""

    def __init__(self, app: ASGIApp, client: tuple[str, int]) -> None:
        self.app, self.client = app, client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw], "scheme": request.url.scheme,
            "path": request.url.path, "raw_path": request.url.raw_path.split(b"?", 1)[0],
            "query_string": request.url.query, "server": (request.url.host, request.url.port or 80),
            "client": self.client, "root_path": "",
        }
        messages: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=4)
        gone = asyncio.Event()
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            await messages.put(message)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)  # type: ignore[arg-type]
            finally:
                if not gone.is_set():  # the end, for a reader still there (an error mid-answer too)
                    await messages.put(None)

        task = asyncio.create_task(run())
        try:
            start = await messages.get()
        except BaseException:  # this request was cancelled first: so is the API's work
            await _abandon(task, gone)
            raise
        if start is None or start.get("type") != "http.response.start":
            await _abandon(task, gone)
            raise RuntimeError("the API ended without an answer") from (
                None if task.cancelled() else task.exception())
        return httpx.Response(start["status"], headers=start.get("headers", []),
                              stream=_Body(messages, task, gone))


class _Body(httpx.AsyncByteStream):
    def __init__(self, messages: asyncio.Queue[dict[str, Any] | None], task: asyncio.Task[None],
                 gone: asyncio.Event) -> None:
        self.messages, self.task, self.gone = messages, task, gone

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.messages.get()
            if message is None:
                break
            if message.get("type") == "http.response.body":
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body", False):
                    break
        await self.task  # written to the end: let it finish its own work (an error it raised is raised)

    async def aclose(self) -> None:
        await _abandon(self.task, self.gone)


async def _abandon(task: asyncio.Task[None], gone: asyncio.Event) -> None:
    """The reader is done with the answer: an app still writing (the browser went away) is told
    the client disconnected and stopped."""
    gone.set()
    if not task.done():
        task.cancel()
    await asyncio.wait([task])  # not `await task`: this task's own cancellation must still reach it
    if not task.cancelled() and task.exception() is not None:
        log.warning("the API's answer to the console failed after it began", exc_info=task.exception())
