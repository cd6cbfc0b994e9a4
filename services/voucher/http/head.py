"""HEAD answered as the GET of the same URL would be, without its body (RFC 9110 §9.3.2).

FastAPI routes a GET route's HEAD nowhere, so `curl -I` and a monitor's HEAD probe had a 405
whose own Allow header named HEAD. This middleware sits inside the unit of work (which reads
HEAD as a safe method) and outside the routes: the routes see a GET, so a HEAD passes the same
authentication, scopes, rate limit and tenancy as the GET and answers the same status and
headers, Content-Length included; the body's bytes are dropped. The server keeps the request's
own scope, so it knows no body follows. A streamed export is the one route that tells a HEAD
from a GET (`SENT_METHOD`): it checks the request as the GET would but runs no export, so it
sends no `Export-Id` (services/voucher/exports/routes.py).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Where a HEAD request's scope records the method the client sent (problem details name it).
SENT_METHOD = "voucher.sent_method"


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def bodiless(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        inner = {**scope, "method": "GET", SENT_METHOD: "HEAD"}
        try:
            await self.app(inner, receive, bodiless)
        finally:
            # What routing added (the route, its parameters, the actor in the state) is read
            # by the outer middleware once the answer is sent: it is carried back, the method not.
            for key, value in inner.items():
                if key not in ("method", SENT_METHOD):
                    scope[key] = value
