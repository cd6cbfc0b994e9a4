"""What a writing request passes before its body is read (issue 19, finding 2).

A body larger than its route's limit is refused as soon as its Content-Length says so, or
once the bytes streamed exceed it, with 413 `payload_too_large`; the API key is checked before
a byte of the body is read, and a request without one never has its body read at all (and
its connection is closed after the 401), so a caller without a valid key cannot make the
service read, hold or parse anything; the principal's rate limit is counted before the body
too. A body that stalls for `READ_SECONDS` is 408 `request_timeout`. The body is then read whole (it is bounded) before the request's transaction
begins — on SQLite before the writer queue is joined — so a slow sender holds no lock.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as Scope_

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.errors import (
    DuplicateHeader,
    MalformedJson,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from services.voucher.http.problems import bilingual_body, is_json, problem_response, scope_language
from services.voucher.i18n import msg
from services.voucher.settings import Settings

#: Routes whose bodies are uploads, allowed `max_upload_bytes` (for keys that may upload).
UPLOAD_PATHS = frozenset({"/v1/usage-reconciliations"})
#: Longest wait for the next part of a body.
READ_SECONDS = 30


class Disconnected(Exception):
    """The client went away before its body was read: there is no one to answer."""


#: Headers that carry one value (RFC 9110 §5.3): sent twice, which one a reader takes is a
#: guess — one key authenticated and another audited, one Idempotency-Key claimed while a
#: proxy retries with the other — so the request is refused before anything is read.
ONE_VALUE_HEADERS = frozenset({b"authorization", b"idempotency-key", b"content-type", b"content-length"})
#: Headers whose value is a list: lines sent apart are one list (RFC 9110 §5.3), joined here,
#: since a route's header parameter reads only the first line.
LIST_HEADERS = frozenset({b"if-match"})


def check_headers(scope: Scope_) -> None:
    """400 `duplicate_header` for a one-value header sent twice; the lines of a list header
    joined into one, in place."""
    seen: dict[bytes, int] = {}
    for key, _ in scope.get("headers", ()):
        seen[key] = seen.get(key, 0) + 1
    for name in sorted(ONE_VALUE_HEADERS):
        if seen.get(name, 0) > 1:
            raise DuplicateHeader(
                msg("the {header} header was sent {count} times; send it once, so that what is checked is "
                    "what is meant; nothing was read or changed",
                    header=name.decode().title(), count=seen[name]),
                header=name.decode())
    for name in LIST_HEADERS:
        if seen.get(name, 0) > 1:
            headers = list(scope["headers"])
            joined = b", ".join(value for key, value in headers if key == name)
            scope["headers"] = [(key, value) for key, value in headers if key != name] + [(name, joined)]


def is_upload(path: str) -> bool:
    return path.rstrip("/") in UPLOAD_PATHS


def limit_for(settings: Settings, path: str, actor: Actor | None) -> int:
    """The body limit of `path`: an upload route's larger one only for a key that may upload
    (`actor` None: before the key is known, the largest the route allows anyone)."""
    if is_upload(path) and (actor is None or Scope.REDEMPTIONS_WRITE in actor.scopes):
        return settings.max_upload_bytes
    return settings.max_body_bytes


def has_body(scope: Scope_) -> bool:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            return value.strip() not in (b"", b"0")
        if key == b"transfer-encoding":
            return True
    return False


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        msg("the body may be at most {limit} bytes on this route; nothing was read or changed", limit=format(limit, ",")),
        max_bytes=limit,
    )


def check_declared(scope: Scope_, limit: int) -> None:
    """413 when the Content-Length is over `limit` (the server has checked it is a number)."""
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            if value.strip().isdigit() and int(value) > limit:
                raise _too_large(limit)
            return


async def empty_body() -> Message:
    """What the app reads of a request sent without a key: nothing (it is refused anyway)."""
    return {"type": "http.request", "body": b"", "more_body": False}


#: The JSON escapes that can make text no database stores alike: NUL (PostgreSQL refuses it,
#: SQLite keeps it) and a UTF-16 surrogate, paired (an emoji, harmless) or not (no UTF-8 text).
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def unstorable_text(body: bytes) -> list[str]:
    """JSON pointers of the strings (values or keys) of a JSON body that hold NUL or an unpaired
    surrogate: text that cannot be stored as UTF-8, or is stored by one engine and refused by
    the other. Read only when the raw body has such an escape; a body that is not JSON is left
    to the route (malformed_json)."""
    try:  # read as json.loads reads it (a body sent as JSON in UTF-16 or UTF-32 is refused before)
        text = body.decode(json.detect_encoding(body))
    except (UnicodeDecodeError, LookupError):
        return []
    if not _SUSPECT_ESCAPE.search(text):
        return []
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested too deep: the route answers it
        return []
    found: list[str] = []
    pending: list[tuple[str, Any]] = [("", document)]
    while pending and len(found) < 20:
        pointer, value = pending.pop()
        if isinstance(value, str):
            if not _storable(value):
                found.append(pointer)
        elif isinstance(value, dict):
            for key, item in value.items():
                child = pointer + "/" + key.replace("~", "~0").replace("/", "~1")
                if not _storable(key):
                    found.append(pointer or "/")
                pending.append((child, item))
        elif isinstance(value, list):
            pending.extend((f"{pointer}/{i}", item) for i, item in enumerate(value))
    return sorted(found)


#: Where a bare NaN or Infinity may be: Python's json reads them, JSON (RFC 8259) has neither.
_CONSTANT = re.compile(rb"NaN|Infinity")


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJson(name)


def json_defect(scope: Scope_, body: bytes) -> MalformedJson | None:
    """What makes a body JSON only to Python's reader: text in UTF-16 or UTF-32 (JSON is
    exchanged as UTF-8, RFC 8259 section 8.1) or a bare NaN or Infinity (not JSON numbers).
    Only a body sent as JSON or with no type is read (the route reads both as JSON); a body
    that is not JSON at all is left to the route (malformed_json)."""
    if not body or not _sent_as_json(scope):
        return None
    encoding = json.detect_encoding(body)
    if encoding not in ("utf-8", "utf-8-sig"):
        return MalformedJson(msg("the body is {encoding} text; JSON is exchanged as UTF-8, send it so",
                                 encoding=encoding.upper()))
    if _CONSTANT.search(body):
        try:
            json.loads(body, parse_constant=_no_constant)
        except _NotJson as constant:
            return MalformedJson(msg("the body holds a bare {constant}, which is no JSON number; send a number, "
                                     "a string or null", constant=str(constant)))
        except (ValueError, RecursionError):
            return None
    return None


#: A body on the upload route holds at most MAX_JSON_VALUES JSON values, counted as the commas,
#: objects and arrays outside its strings. The parser makes a Python object of every value before
#: any model can refuse it: 15 MiB of `{},` had cost about 800 MiB and 1.5 s of the event loop to
#: be refused 422 (an independent review, December 2026). A usage upload's largest body — 20,000
#: records of three members — holds about 80,000. Whatever its Content-Type: the
#: Idempotency-Key's fingerprint reads any body as JSON.
MAX_JSON_VALUES = 200_000
#: Any other body holds at most MAX_SMALL_JSON_VALUES, whatever body limit an operator set: 1 MiB
#: of `{},` is 350,000 objects, about 26 MB to parse and as much again to refuse, for every
#: request a key may send at once. The largest body a route takes, a bulk issue of 1,000
#: grants, holds about 6,000.
MAX_SMALL_JSON_VALUES = 50_000
#: A JSON string, from its opening quote to its closing one — or to the end of the body, with or
#: without a last lone backslash, so that every attempt from a quote matches and the scan is
#: linear: a first form failed on an unterminated string and was tried again from every later
#: quote, quadratic (an hour for 1.1 MB of `\"`; a review of that guard). Possessive, never
#: backtracking.
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)


def json_values(body: bytes, at_most: int = MAX_JSON_VALUES) -> int:
    """About how many values a JSON body holds: its commas, objects and arrays outside strings.
    The raw counts (memchr speed) bound it from above; a body with more quotes than two per
    allowed value holds more strings than that (each a value); otherwise its strings are taken
    out (one linear scan over at most that many) and the rest counted. No value is built."""
    raw = body.count(b",") + body.count(b"{") + body.count(b"[")
    if raw <= at_most:
        return raw
    quotes = body.count(b'"')
    if quotes > 2 * at_most + 2:
        return quotes // 2
    bare = _JSON_STRING.sub(b'""', body)
    return bare.count(b",") + bare.count(b"{") + bare.count(b"[")


def _sent_as_json(scope: Scope_) -> bool:
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return is_json(bytes(value).decode("latin-1").partition(";")[0].strip().lower())
    return True


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def read_body(receive: Receive, limit: int, scope: Scope_ | None = None) -> Receive:
    """Read the whole body, at most `limit` bytes, each part within `READ_SECONDS` (408
    otherwise), and return a `receive` that hands it to the app as one message (then whatever
    the connection says next). A body JSON only to Python's reader is refused (`json_defect`);
    strings no database stores alike are noted in the scope's state (`unstorable_text`) for the
    operation to refuse once the key's scopes are checked."""
    for key, value in (scope or {}).get("headers", ()):
        if key == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            # Read as it came, a body marked gzip was taken as plain JSON (an independent review);
            # this service decodes no content coding (RFC 9110 §8.4: 415 for one it does not).
            raise UnsupportedMediaType(msg("the body is sent with Content-Encoding {coding}; send it unencoded",
                                           coding=value.decode("latin-1")[:40]))
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(READ_SECONDS):  # no task per message, unlike wait_for
                message = await receive()
        except TimeoutError:
            raise RequestTimeout(
                msg("the body did not arrive within {seconds} s of its last part; nothing was changed",
                    seconds=READ_SECONDS),
            ) from None
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    if scope is not None:
        defect = json_defect(scope, body)
        if defect is not None:
            raise defect
        at_most = MAX_JSON_VALUES if is_upload(str(scope.get("path", ""))) else MAX_SMALL_JSON_VALUES
        values = json_values(body, at_most)  # linear: ~0.13 s for the worst 16 MiB shape, µs for a request's
        if values > at_most:
            raise PayloadTooLarge(
                msg("a body this large may hold at most {limit} JSON values (members and items), this one "
                    "holds about {count}; nothing was parsed or changed",
                    limit=format(at_most, ","), count=format(values, ",")),
                max_values=at_most,
            )
        pointers = unstorable_text(body)
        if pointers:
            scope.setdefault("state", {})["unstorable_text"] = pointers
        scope.setdefault("state", {})["body"] = body  # for a check made before the unit of work
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class QueryText:
    """400 `bad_request` for a query string that is not UTF-8, before anything reads it: uvicorn
    turns such bytes away itself, but under another ASGI server the framework's own reading
    of the URL (a trailing-slash redirect, the console's links) raised on them, a 500 (an
    independent review, December 2026)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope_, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                scope.get("query_string", b"").decode()
            except UnicodeDecodeError:
                language = scope_language(scope)
                body = bilingual_body(language=language, status=400, code="bad_request", title="Bad request",
                                      detail=msg("the query string is not UTF-8; percent-encode it as UTF-8 "
                                                 "(RFC 3986); nothing was read or changed"),
                                      instance=scope.get("path", ""))
                await problem_response(body, status=400, language=language)(scope, receive, send)
                return
        await self.app(scope, receive, send)
