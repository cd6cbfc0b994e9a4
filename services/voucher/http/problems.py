"""RFC 9457 problem+json: the one shape of every error response.

Every body has `type`, `title`, `status`, `detail`, a stable machine `code` and the
`request_id`; validation failures add `errors`, one entry per bad field with a JSON pointer.
Nothing from an exception's traceback or from the rejected input is ever echoed back.

`title`, `detail` and every field error's `message` are in the request's language
(Accept-Language, else the configured default; see http/language.py and docs/errors.md), from
the one message catalogue (services/voucher/i18n.py), and `Content-Language` says which; `code`,
`type` and `status` never change with it. A Chinese body also carries the English detail as
`detail_en`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any
from weakref import WeakKeyDictionary

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core._pydantic_core import list_all_errors
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from services.voucher import errors
from services.voucher.http.head import SENT_METHOD
from services.voucher.http.language import content_language, default_language, preferred
from services.voucher.i18n import TEMPLATE_KEY, Amount, Message, msg, render, translate
from services.voucher.observability import REQUEST_ID

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("voucher.http")


def problem_type(code: str) -> str:
    """A stable identifier for the kind of problem; GET it for a description."""
    return f"/v1/problems/{code}"


class FieldError(BaseModel):
    location: str = Field(description="body, query, path or header")
    pointer: str = Field(description="JSON pointer to the bad field within its location")
    message: str
    type: str = Field(description="machine code of the field error")
    context: dict[str, Any] | None = None


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "/v1/problems/not_found",
                    "title": "Resource not found",
                    "status": 404,
                    "detail": "no programme with id 0190d5d2-0000-7000-8000-000000000000",
                    "code": "not_found",
                    "request_id": "5f2b8c1e9d6a4b7f8e3c2a1d0b9f8e7d",
                    "instance": "/v1/programmes/0190d5d2-0000-7000-8000-000000000000",
                }
            ]
        },
    )

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str
    instance: str | None = None
    errors: list[FieldError] | None = None
    detail_en: str | None = Field(
        default=None,
        description="In a Chinese (zh-CN) response: the same detail in English.",
    )


#: Problems the HTTP layer answers itself (no DomainError class): code -> status and English
#: title (its Chinese is in the catalogue). `not_found` and `validation_failed` share their
#: classes' titles.
HTTP_PROBLEMS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "Bad request"),
    "not_found": (404, errors.NotFound.title),
    "method_not_allowed": (405, "Method not allowed"),
    "not_acceptable": (406, "Not acceptable"),
    "payload_too_large": (413, "Request body too large"),
    "validation_failed": (422, errors.ValidationFailed.title),
    "internal_error": (500, "Internal error"),
}
_HTTP_CODES = {status: code for code, (status, _) in HTTP_PROBLEMS.items()}


@cache
def _class_titles() -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for cls in errors.every_class():
        found.setdefault(cls.code, (cls.status, cls.title))
    return found


def _status_and_title(code: str) -> tuple[int, str]:
    return HTTP_PROBLEMS.get(code) or _class_titles().get(code) or (0, "HTTP error")


def scope_language(scope: Any) -> str:
    """The language ("zh" or "en") of the answer to this ASGI scope's request."""
    header = None
    for key, value in scope.get("headers", ()):
        if key.lower() == b"accept-language":
            header = value.decode("latin-1")
            break
    return preferred(header, default_language(scope.get("app")))


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": REQUEST_ID.get(),
    }
    if instance:
        body["instance"] = instance
    for key, value in (extra or {}).items():
        body.setdefault(key, value)
    return json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")


def bilingual_body(
    *,
    language: str,
    status: int,
    code: str,
    title: str,
    detail: Message | None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A problem in `language`: `title` is the English msgid, `detail` the message (the title
    when None); every Message among the extension members is rendered in `language` too."""
    english = translate(title, "en") if detail is None else detail.render("en")
    text = translate(title, language) if detail is None else detail.render(language)
    extra = render(extra or {}, language)
    if language == "zh":
        extra = {"detail_en": english, **extra}
    return problem_body(status=status, code=code, title=translate(title, language), detail=text,
                        instance=instance, extra=extra)


def error_body(err: errors.DomainError, *, language: str, instance: str | None = None) -> bytes:
    """A DomainError as problem+json in `language`."""
    return bilingual_body(
        language=language,
        status=err.status,
        code=err.code,
        title=err.title,
        detail=err.message,
        instance=instance,
        extra=err.extra,
    )


def problem_response(
    body: bytes, *, status: int, language: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        body,
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers={**(headers or {}), "Content-Language": content_language(language)},
    )


def _pointer(parts: Sequence[Any]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _safe_context(ctx: dict[str, Any] | None) -> dict[str, Any] | None:
    if not ctx:
        return None
    safe = {k: v for k, v in ctx.items() if isinstance(v, str | int | float | bool) and k != TEMPLATE_KEY}
    return safe or None


@cache
def _pydantic_templates() -> dict[str, str]:
    """Each pydantic error type's English template; its Chinese is in the catalogue."""
    return {e["type"]: e["message_template_python"] for e in list_all_errors()}


#: Fields that hold an amount in minor units: a decimal sent there is answered with the integer
#: to send instead, in each unit (the field does not know the voucher's).
_AMOUNT_FIELD = re.compile(r"(amount|subsidy|face_value|budget|cap|revenue|max_per_voucher|price|spend_up_to|clawback|split_threshold)")
_DECIMAL = re.compile(r"(-?[0-9]{1,15})\.([0-9]{1,3})")


def _amount_hint(err: dict[str, Any]) -> Message | None:
    """A decimal where an integer amount is wanted ("amount": 100.50 or "100.50"): say what the
    minor units are and, for a plain figure with a decimal point, the integer that means the
    same in each unit it could be (never guessing the unit; an integer string gets no figure)."""
    loc = err.get("loc", ())
    if not loc or not isinstance(loc[-1], str) or not _AMOUNT_FIELD.search(loc[-1]):
        return None
    limit = (err.get("ctx") or {}).get("le")
    least = (err.get("ctx") or {}).get("ge")
    if err.get("type") == "greater_than_equal" and least == 1:
        # "at least 1" read as ¥1 where the least is one fen (an independent review, December 2026)
        return msg("must be more than zero")
    if err.get("type") == "less_than_equal" and isinstance(limit, int):
        # the largest amount, which read as yuan would be a hundred times the real limit
        return msg("at most {maximum}, counted in the unit's minor unit: fen for CNY, thousandths of an hour for "
                   "GPU_HOUR, whole tokens for TOKEN", maximum=str(limit))
    if err.get("type") not in ("int_type", "int_from_float", "int_parsing"):
        return None
    given = err.get("input")
    text = repr(given) if isinstance(given, float) else given.strip() if isinstance(given, str) else ""
    figure = _DECIMAL.fullmatch(text)
    if figure is None:
        return msg("an integer count of the unit's minor unit: fen for CNY, thousandths of an hour for "
                   "GPU_HOUR, whole tokens for TOKEN")
    whole, decimals = int(figure[1]), figure[2]
    sign = -1 if figure[1].startswith("-") else 1
    milli = whole * 1000 + sign * int((decimals + "000")[:3])
    if len(decimals) > 2:
        return msg("an integer count of the unit's minor unit: for GPU_HOUR, thousandths of an hour "
                   "({gpu} is {milli}); CNY is in fen and TOKEN in whole tokens",
                   gpu=Amount(milli, "GPU_HOUR"), milli=str(milli))
    fen = whole * 100 + sign * int((decimals + "00")[:2])
    return msg("an integer count of the unit's minor unit: for CNY, fen ({cny} is {fen}); for GPU_HOUR, "
               "thousandths of an hour ({gpu} is {milli}); TOKEN is in whole tokens",
               cny=Amount(fen, "CNY"), fen=str(fen), gpu=Amount(milli, "GPU_HOUR"), milli=str(milli))


def field_message(err: dict[str, Any]) -> str | Message:
    """The message of one pydantic error as a catalogue Message: our own validators raise
    ValueError(msg(...)); pydantic's own kinds use its template, with its context as the
    parameters (their Chinese is in the catalogue, see services/voucher/catalogue.py)."""
    ctx = err.get("ctx") or {}
    kind = str(err.get("type", ""))
    if kind in ("value_error", "assertion_error"):
        inner = ctx.get("error")
        inner_arg = inner.args[0] if isinstance(inner, Exception) and inner.args else inner
        if isinstance(inner_arg, Message):
            return inner_arg
        # A plain ValueError from a library (not one of our validators): its text as the msgid.
        return Message(str(inner_arg if inner_arg is not None else err.get("msg", "invalid value")))
    hint = _amount_hint(err)
    if hint is not None:
        return hint
    template = ctx.get(TEMPLATE_KEY) or _pydantic_templates().get(kind)  # ours, else pydantic's
    if not isinstance(template, str):
        return str(err.get("msg", "invalid value"))
    params: dict[str, Any] = {k: v for k, v in ctx.items()
                              if isinstance(v, str | int | float | bool) and k != TEMPLATE_KEY}
    params.setdefault("expected_plural", "" if params.get("min_length", params.get("max_length")) == 1 else "s")
    if kind in ("enum", "literal_error") and isinstance(params.get("expected"), str):
        params["expected"] = _choices(params["expected"])
    try:
        template.format(**params)
    except (KeyError, IndexError, ValueError):
        return str(err.get("msg", "invalid value"))
    return Message(template, **params)  # pydantic's own template: catalogue.pydantic_messages()


_QUOTED = re.compile(r"'[^']*'")


def _choices(expected: str) -> str | Message:
    """pydantic's "'compute' or 'model'" as a list in the reader's language ('compute' 或 'model'):
    its "or" had been English inside Chinese sentences (an independent review)."""
    values = _QUOTED.findall(expected)
    if len(values) < 2 or expected != f"{', '.join(values[:-1])} or {values[-1]}":
        return expected
    return msg("{choices} or {last}", choices=tuple(values[:-1]), last=values[-1])


#: pydantic's length refusals of a collection, and a text's own (see `_text_length`).
_TEXT_LENGTH = {"too_long": ("string_too_long", "max_length"), "too_short": ("string_too_short", "min_length")}


def _text_length(err: dict[str, Any]) -> dict[str, Any]:
    """A text's length refused as a collection's ("Value should have at most 500 items after
    validation"; 最多只能包含 500 项): what pydantic says of a length on an optional field whose
    text type runs a validator (`NameText | None`, `OptionalLine`), checked after it. Said and
    typed as any other text's: `string_too_long`, "at most 500 characters" (an independent
    review, December 2026: clients matching on the type, and both languages, read "items")."""
    kind = _TEXT_LENGTH.get(str(err.get("type", "")))
    ctx = err.get("ctx") or {}
    if (kind is None or ctx.get("field_type") != "Value" or not isinstance(err.get("input"), str)
            or not isinstance(ctx.get(kind[1]), int)):  # a list's or a dict's own length stays as it is
        return err
    return {**err, "type": kind[0], "ctx": {kind[1]: ctx[kind[1]]}}


def field_errors(raw: Iterable[dict[str, Any]], language: str = "en") -> list[dict[str, Any]]:
    """FastAPI/Pydantic errors -> our FieldError dicts in `language` (never echoing the input)."""
    out = []
    for err in map(_text_length, raw):
        loc = list(err.get("loc", ()))
        location = str(loc[0]) if loc else "body"
        message = field_message(err)
        out.append(
            {
                "location": location,
                "pointer": _pointer(loc[1:]),
                "message": message.render(language) if isinstance(message, Message) else message,
                "type": str(err.get("type", "invalid")),
                **({"context": c} if (c := _safe_context(err.get("ctx"))) else {}),
            }
        )
    return out


def mark_idempotent_outcome(request: Request, *, store: bool) -> None:
    """Tell the unit of work whether this error is the request's final, replayable answer."""
    request.scope.setdefault("state", {})["store_error_response"] = store


def error_headers(err: errors.DomainError) -> dict[str, str]:
    """The headers a problem carries besides its body: the auth scheme of a 401, and
    Retry-After where the error says how long to wait."""
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else {}
    if err.retry_after_header and "retry_after" in err.extra:
        headers["Retry-After"] = str(err.extra["retry_after"])
    return headers


async def domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.DomainError)
    mark_idempotent_outcome(request, store=not exc.transient and exc.status != 422)
    headers = error_headers(exc)
    language = scope_language(request.scope)
    return problem_response(
        error_body(exc, language=language, instance=request.scope["path"]),
        status=exc.status,
        language=language,
        headers=headers,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    language = scope_language(request.scope)
    if any(e.get("type") == "json_invalid" for e in raw):
        return _http_problem(request, language, "malformed_json", msg(
            "the body could not be parsed as JSON; check quoting, commas and encoding (UTF-8)"))
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type and not is_json(media_type) and any(tuple(e.get("loc", ()))[:1] == ("body",) for e in raw):
        mark_idempotent_outcome(request, store=False)
        return _http_problem(request, language, "unsupported_media_type", msg(
            "send the body as JSON with Content-Type: application/json; a body of another type is not read"))
    collection = collection_methods(request)
    if collection and request.method not in collection and all(
            tuple(e.get("loc", ()))[:1] == ("path",) for e in raw):
        # GET /v1/redemptions/holds: "holds" is the path of POST's collection, not a redemption's
        # id that GET /v1/redemptions/{id} could not read.
        method, path = request.scope.get(SENT_METHOD, request.method), request.scope["path"]
        return _http_problem(request, language, "method_not_allowed", msg(
            "{method} is not allowed on {path}; the Allow header lists the methods it takes",
            method=method, path=path), headers={"Allow": ", ".join(collection)})
    items = field_errors(raw, language)
    detail = errors.ValidationFailed(items).message
    return _http_problem(request, language, "validation_failed", detail, extra={"errors": items})


def is_json(media_type: str) -> bool:
    """application/json or a JSON-based type (application/problem+json, ...)."""
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _http_problem(
    request: Request,
    language: str,
    code: str,
    detail: Message | None,
    *,
    status: int | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    known, title = _status_and_title(code)
    status = status or known
    body = bilingual_body(
        language=language, status=status, code=code, title=title, detail=detail,
        instance=request.scope["path"], extra=extra,
    )
    return problem_response(body, status=status, language=language, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    language = scope_language(request.scope)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    method, path = request.scope.get(SENT_METHOD, request.method), request.scope["path"]
    detail: Message | None = None  # Starlette's own details are English phrases of the status
    if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_UNREADABLE:
        # json.loads raised other than a syntax error: bytes that are no Unicode text, an integer
        # past Python's digit limit, nesting past its recursion limit. As malformed as bad syntax.
        return _http_problem(request, language, "malformed_json", msg(
            "the body could not be read as JSON: it is not UTF-8 text, holds a number with thousands of "
            "digits, or is nested too deep; send UTF-8 JSON of ordinary depth"))
    if exc.status_code == 404:
        detail = msg("no route matches {method} {path}; check the path", method=method, path=path)
    if exc.status_code == 405:
        detail = msg("{method} is not allowed on {path}; the Allow header lists the methods it takes",
                     method=method, path=path)
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        starlettes = next((v for k, v in headers.items() if k.lower() == "allow"), "")
        headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
        headers["Allow"] = ", ".join(allowed_methods(request)) or starlettes
    return _http_problem(request, language, code, detail, status=exc.status_code, headers=headers or None)


#: FastAPI's detail when reading a JSON body raised anything but a JSON syntax error.
_FASTAPI_BODY_UNREADABLE = "There was an error parsing the body"


def allowed_methods(request: Request) -> list[str]:
    """Every method the API documents on this path: Starlette's own Allow names only the first
    route that matches the path, and a path such as /v1/programmes has a route per method."""
    methods: set[str] = set()
    for pattern, documented in _documented_paths(request.app).items():
        if pattern.fullmatch(request.scope["path"]):
            methods.update(documented)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def collection_methods(request: Request) -> list[str]:
    """The methods of the documented path without parameters that is exactly this request's path,
    such as POST /v1/redemptions/holds; none when no such path is documented."""
    for pattern, documented in _documented_paths(request.app).items():
        if _PARAMETER not in pattern.pattern and pattern.fullmatch(request.scope["path"]):
            return sorted(documented | {"HEAD"} if "GET" in documented else documented)
    return []


#: What a template's {parameter} becomes in its pattern.
_PARAMETER = "[^/]+"


_PATHS: WeakKeyDictionary[Any, dict[re.Pattern[str], frozenset[str]]] = WeakKeyDictionary()


def _documented_paths(app: Any) -> dict[re.Pattern[str], frozenset[str]]:
    found = _PATHS.get(app)
    if found is None:
        found = {}
        for template, operations in app.openapi().get("paths", {}).items():
            regex = re.sub(r"\\\{[^}]+\\\}", _PARAMETER, re.escape(template))
            found[re.compile(regex)] = frozenset(m.upper() for m in operations if not m.startswith("x-"))
        _PATHS[app] = found
    return found


def internal_error_body(path: str, language: str = "en") -> bytes:
    return bilingual_body(
        language=language,
        status=500,
        code="internal_error",
        title=HTTP_PROBLEMS["internal_error"][1],
        detail=msg("the service failed to handle this request; nothing was changed. "
                   "Quote the request_id when reporting it."),
        instance=path,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.DomainError, domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def responses(*error_classes: type[errors.DomainError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the domain errors a route can return, grouped by status."""
    by_status: dict[int, list[type[errors.DomainError]]] = {}
    for cls in error_classes:
        by_status.setdefault(cls.status, []).append(cls)
    out: dict[int | str, dict[str, Any]] = {}
    for status, classes in sorted(by_status.items()):
        first = classes[0]  # the example shows one problem whole: its code, title and type agree
        out[status] = {
            "description": "; ".join(f"`{c.code}`: {c.title}" for c in classes),
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "example": {
                        "type": problem_type(first.code),
                        "title": first.title,
                        "status": status,
                        "detail": first.title,
                        "code": first.code,
                        "request_id": "5f2b8c1e9d6a4b7f8e3c2a1d0b9f8e7d",
                    },
                }
            },
        }
    return out


#: Every authenticated operation can answer these.
AUTH_ERRORS: tuple[type[errors.DomainError], ...] = (errors.Unauthenticated, errors.InsufficientScope)
