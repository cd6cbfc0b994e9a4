"""The console is a client of the service's own API, in process.

Each console action is an HTTP request to the same app (httpx over ASGI, no socket) with the
signed-in key as its bearer token, the browser's address as the client address and the
console's language as Accept-Language. Authentication, scopes, tenant isolation, rate limits,
idempotency and the audit trail (which names the key) are therefore the API's own; the console
has no rule of its own and shows an API refusal's (already localised) detail to the person.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import ASGIApp

from services.voucher.http.language import content_language

#: The host name the in-process requests carry; nothing listens on it.
INTERNAL_BASE_URL = "http://console.internal"


@dataclass
class Refusal(Exception):
    """The API answered with a problem: its status, code and detail (in the console's language)."""

    status: int
    code: str
    title: str
    detail: str
    errors: list[dict[str, Any]]

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

    def __init__(self, app: ASGIApp, api_key: str | None, client: tuple[str, int], language: str) -> None:
        self._app = app
        self._address = client
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
            return await client.request(method, path, params=query, json=json, headers=headers)

    async def get(self, path: str, **params: Any) -> Any:
        return _json(await self.request("GET", path, params=params))

    async def get_raw(self, path: str, **params: Any) -> httpx.Response:
        response = await self.request("GET", path, params=params)
        if response.status_code >= 400:
            _json(response)
        return response

    async def post(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        """A write, with an Idempotency-Key: the one the form carried (so a form sent twice is
        one change), else a fresh one."""
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return _json(await self.request("POST", path, json=body if body is not None else {}, headers=headers))


def _json(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        raise Refusal(response.status_code, str(body.get("code", "")), str(body.get("title", "")),
                      str(body.get("detail", "")), list(body.get("errors") or []))
    if response.status_code == 204 or not response.content:
        return None
    return response.json()
