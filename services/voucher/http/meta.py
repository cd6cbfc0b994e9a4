"""Service-level routes: liveness, and the catalogue of problem types so every `type` URI in an
error body resolves to an explanation."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from services.voucher import errors
from services.voucher.http.problems import problem_type, responses

router = APIRouter(tags=["service"])


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})
    status: str


class ProblemType(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"type": "/v1/problems/not_found", "code": "not_found", "title": "Resource not found",
                 "status": 404}
            ]
        }
    )

    type: str
    code: str
    title: str
    status: int


#: Problems raised by the HTTP layer itself rather than by a DomainError class.
_HTTP_PROBLEMS = [
    ("validation_failed", "The request has invalid fields", 422),
    ("malformed_json", "The request body is not valid JSON", 400),
    ("method_not_allowed", "Method not allowed", 405),
    ("internal_error", "Internal error", 500),
]


def catalogue() -> dict[str, ProblemType]:
    found: dict[str, ProblemType] = {}
    pending: list[type[errors.DomainError]] = [errors.DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is not errors.DomainError:
            found.setdefault(
                cls.code, ProblemType(type=problem_type(cls.code), code=cls.code, title=cls.title,
                                      status=cls.status)
            )
    for code, title, status in _HTTP_PROBLEMS:
        found.setdefault(code, ProblemType(type=problem_type(code), code=code, title=title, status=status))
    return dict(sorted(found.items()))


@router.get(
    "/healthz",
    operation_id="healthz",
    summary="Liveness: the process is up",
    response_model=Health,
)
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/v1/problems",
    operation_id="list_problem_types",
    summary="Every problem type the API can answer with",
    response_model=list[ProblemType],
)
async def list_problem_types() -> list[ProblemType]:
    return list(catalogue().values())


@router.get(
    "/v1/problems/{code}",
    operation_id="get_problem_type",
    summary="Explain one problem type (the `type` of an error body)",
    response_model=ProblemType,
    responses=responses(errors.NotFound),
)
async def get_problem_type(code: str) -> ProblemType:
    found = catalogue().get(code)
    if found is None:
        raise errors.NotFound(f"no problem type {code!r}")
    return found
