"""RFC 9457 problem+json: the one shape of every error response.

Every body has `type`, `title`, `status`, `detail`, a stable machine `code` and the
`request_id`; validation failures add `errors`, one entry per bad field with a JSON pointer.
Nothing from an exception's traceback or from the rejected input is ever echoed back.
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


def problem_response(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        problem_body(
            status=status, code=code, title=title, detail=detail, instance=instance, extra=extra
        ),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
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


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.DomainError)
    mark_idempotent_outcome(request, store=not exc.transient and exc.status != 422)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem_response(
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        instance=request.url.path,
        extra=exc.extra,
        headers=headers,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in raw):
        return problem_response(
            status=400,
            code="malformed_json",
            title="The request body is not valid JSON",
            detail="the body could not be parsed as JSON; check quoting, commas and encoding (UTF-8)",
            instance=request.url.path,
        )
    items = field_errors(raw)
    return problem_response(
        status=422,
        code="validation_failed",
        title="The request has invalid fields",
        detail=f"{len(items)} field(s) are invalid: "
        + "; ".join(f"{e['location']}{e['pointer']}: {e['message']}" for e in items[:5]),
        instance=request.url.path,
        extra={"errors": items},
    )


_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    404: ("not_found", "Resource not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, (f"http_{exc.status_code}", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route matches {request.method} {request.url.path}"
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(
        status=exc.status_code,
        code=code,
        title=title,
        detail=detail,
        instance=request.url.path,
        headers=dict(exc.headers) if exc.headers else None,
    )


def internal_error_body(path: str) -> bytes:
    return problem_body(
        status=500,
        code="internal_error",
        title="Internal error",
        detail="the service failed to handle this request; nothing was changed. "
        "Quote the request_id when reporting it.",
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
        codes = sorted({c.code for c in classes})
        out[status] = {
            "description": "; ".join(f"`{c.code}`: {c.title}" for c in classes),
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "example": {
                        "type": problem_type(codes[0]),
                        "title": classes[0].title,
                        "status": status,
                        "detail": classes[0].title,
                        "code": codes[0],
                        "request_id": "5f2b8c1e9d6a4b7f8e3c2a1d0b9f8e7d",
                    },
                }
            },
        }
    return out


#: Every authenticated operation can answer these.
AUTH_ERRORS: tuple[type[errors.DomainError], ...] = (errors.Unauthenticated, errors.InsufficientScope)
