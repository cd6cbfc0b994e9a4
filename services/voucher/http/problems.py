"""RFC 9457 problem+json: the one shape of every error response.

Every body has `type`, `title`, `status`, `detail`, a stable machine `code` and the
`request_id`; validation failures add `errors`, one entry per bad field with a JSON pointer.
Nothing from an exception's traceback or from the rejected input is ever echoed back.

`title` and `detail` are in the request's language (Accept-Language, else the configured
default; see http/language.py and docs/errors.md) and `Content-Language` says which; `code`,
`type` and `status` never change with it. A Chinese body also carries the English detail as
`detail_en`, so the specifics a raise site wrote in English are never lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from services.voucher import errors
from services.voucher.http.language import content_language, default_language, preferred
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
        description="In a Chinese (zh-CN) response: the detail in English, with every specific the "
        "service wrote (field messages in `errors` stay English too).",
    )


#: Problems the HTTP layer answers itself (no DomainError class): code -> status, English and
#: Chinese title. `not_found` and `validation_failed` share their classes' titles.
HTTP_PROBLEMS: dict[str, tuple[int, str, str]] = {
    "bad_request": (400, "Bad request", "请求有误"),
    "malformed_json": (400, "The request body is not valid JSON", "请求体不是有效的 JSON"),
    "not_found": (404, errors.NotFound.title, errors.NotFound.title_zh),
    "method_not_allowed": (405, "Method not allowed", "不支持该请求方法"),
    "not_acceptable": (406, "Not acceptable", "无法提供所要求格式的响应"),
    "payload_too_large": (413, "Request body too large", "请求体过大"),
    "unsupported_media_type": (415, "Unsupported media type", "不支持该请求内容类型"),
    "validation_failed": (422, errors.ValidationFailed.title, errors.ValidationFailed.title_zh),
    "internal_error": (500, "Internal error", "服务内部错误"),
}
_HTTP_CODES = {status: code for code, (status, _, _) in HTTP_PROBLEMS.items() if code != "malformed_json"}


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
    titles: tuple[str, str],
    details: tuple[str, str],
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A problem in `language`; `titles` and `details` are (English, Chinese)."""
    zh = language == "zh"
    if zh:
        extra = {"detail_en": details[0], **(extra or {})}
    return problem_body(
        status=status, code=code, title=titles[zh], detail=details[zh], instance=instance, extra=extra
    )


def error_body(err: errors.DomainError, *, language: str, instance: str | None = None) -> bytes:
    """A DomainError as problem+json in `language`."""
    return bilingual_body(
        language=language,
        status=err.status,
        code=err.code,
        titles=(err.title, err.title_zh),
        details=(err.detail, err.detail_zh),
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
    safe = {k: v for k, v in ctx.items() if isinstance(v, str | int | float | bool)}
    return safe or None


def field_errors(raw: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """FastAPI/Pydantic errors -> our FieldError dicts (never echoing the input)."""
    out = []
    for err in raw:
        loc = list(err.get("loc", ()))
        location = str(loc[0]) if loc else "body"
        message = str(err.get("msg", "invalid value"))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        out.append(
            {
                "location": location,
                "pointer": _pointer(loc[1:]),
                "message": message,
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


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.DomainError)
    mark_idempotent_outcome(request, store=not exc.transient and exc.status != 422)
    headers = error_headers(exc)
    language = scope_language(request.scope)
    return problem_response(
        error_body(exc, language=language, instance=request.url.path),
        status=exc.status,
        language=language,
        headers=headers,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    language = scope_language(request.scope)
    if any(e.get("type") == "json_invalid" for e in raw):
        return _http_problem(
            request, language, "malformed_json",
            "the body could not be parsed as JSON; check quoting, commas and encoding (UTF-8)",
            "请求体无法按 JSON 解析，请检查引号、逗号和编码（须为 UTF-8）",
        )
    items = field_errors(raw)
    return _http_problem(
        request, language, "validation_failed",
        f"{len(items)} field(s) are invalid: "
        + "; ".join(f"{e['location']}{e['pointer']}: {e['message']}" for e in items[:5]),
        "有 {} 个字段不符合要求：{}（各字段说明见 errors 列表，为英文）".format(
            len(items), "、".join(f"{e['location']}{e['pointer']}" for e in items[:5])
        ),
        extra={"errors": items},
    )


def _http_problem(
    request: Request,
    language: str,
    code: str,
    detail: str,
    detail_zh: str,
    *,
    status: int | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    known, title, title_zh = HTTP_PROBLEMS.get(code, (0, "HTTP error", "HTTP 错误"))
    status = status or known
    body = bilingual_body(
        language=language, status=status, code=code, titles=(title, title_zh),
        details=(detail, detail_zh), instance=request.url.path, extra=extra,
    )
    return problem_response(body, status=status, language=language, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    language = scope_language(request.scope)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    _, title, title_zh = HTTP_PROBLEMS.get(code, (0, "HTTP error", "HTTP 错误"))
    method, path = request.method, request.url.path
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else title
    detail_zh = title_zh  # Starlette's own details are English phrases of the status
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route matches {method} {path}"
        detail_zh = f"没有与 {method} {path} 匹配的接口，请核对路径"
    if exc.status_code == 405:
        detail = f"{method} is not allowed on {path}"
        detail_zh = f"{path} 不支持 {method} 方法，可用方法见 Allow 响应头"
    return _http_problem(
        request, language, code, detail, detail_zh,
        status=exc.status_code, headers=dict(exc.headers) if exc.headers else None,
    )


def internal_error_body(path: str, language: str = "en") -> bytes:
    _, title, title_zh = HTTP_PROBLEMS["internal_error"]
    return bilingual_body(
        language=language,
        status=500,
        code="internal_error",
        titles=(title, title_zh),
        details=(
            "the service failed to handle this request; nothing was changed. "
            "Quote the request_id when reporting it.",
            "服务未能处理此请求，未做任何更改。反馈问题时请提供 request_id。",
        ),
        instance=path,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.DomainError, _domain_error)
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
