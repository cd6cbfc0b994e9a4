"""Service-level routes: liveness, readiness, and the catalogue of problem types so every `type` URI in an
error body resolves to an explanation."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.voucher import deployment, errors, observability
from services.voucher.http.language import Language, content_language
from services.voucher.http.problems import HTTP_PROBLEMS, problem_type, responses
from services.voucher.i18n import msg, translate

router = APIRouter(tags=["service"])
log = logging.getLogger("voucher.http")
READINESS_TIMEOUT_SECONDS = 5.0


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})
    status: str


class ProblemType(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"type": "/v1/problems/not_found", "code": "not_found", "title": "资源不存在",
                 "title_en": "Resource not found", "title_zh": "资源不存在", "status": 404}
            ]
        }
    )

    type: str
    code: str
    title: str = Field(description="In the language chosen by Accept-Language (zh-CN or English).")
    title_en: str
    title_zh: str
    status: int


def catalogue(language: str = "en") -> dict[str, ProblemType]:
    """Every DomainError class (recursively) and every problem the HTTP layer answers itself."""
    titles: dict[str, tuple[int, str]] = {}
    for cls in errors.every_class():
        titles.setdefault(cls.code, (cls.status, cls.title))
    for code, entry in HTTP_PROBLEMS.items():
        titles.setdefault(code, entry)
    return {
        code: ProblemType(type=problem_type(code), code=code, title=translate(title, language),
                          title_en=title, title_zh=translate(title, "zh"), status=status)
        for code, (status, title) in sorted(titles.items())
    }


@router.get(
    "/healthz",
    operation_id="healthz",
    summary="Liveness: the process is up",
    description="For load balancers and orchestrators; no API key. Answers 200 `ok` while the process serves "
    "requests, without touching the database; changes nothing and answers no problem.",
    response_model=Health,
)
async def healthz() -> Health:
    return Health(status="ok")


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ready", "checks": {"database": "ok", "migrations": "ok"},
                          "revision": ["0008"], "head": ["0008"]}]
        }
    )
    status: str
    checks: dict[str, str] = Field(description="Each check: `ok`, or why it failed.")
    revision: list[str] = Field(description="The database's Alembic revision(s).")
    head: list[str] = Field(description="The head revision(s) of this build's migrations.")


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="Readiness: the database answers and is migrated to this build's head",
    description="For load balancers; no API key. Answers 200 once the database answers and is migrated to this "
    "build's head, so traffic is sent only then; otherwise 503 `not_ready`, saying which check failed. Changes "
    "nothing.",
    response_model=Readiness,
    responses=responses(errors.NotReady),
)
async def readyz(request: Request) -> Readiness:
    """A load balancer sends traffic only once this answers 200; 503 says which check failed."""
    head = observability.migration_heads()
    checks = {"database": "ok", "migrations": "ok"}
    current: frozenset[str] = frozenset()
    try:
        current = await asyncio.wait_for(
            observability.database_heads(request.app.state.database), READINESS_TIMEOUT_SECONDS
        )
    except Exception as exc:  # whatever the driver raises: the database does not answer
        log.warning("not ready: the database does not answer (%s)", type(exc).__name__)
        checks["database"] = f"the database does not answer ({type(exc).__name__})"
        checks["migrations"] = "unknown: the database does not answer"
    else:
        watch = request.app.state.database.info.get("schema_watch")
        if watch is not None:  # the writes' check learns it too (observability.SchemaWatch)
            watch.saw(current)
        if current != head:
            checks["migrations"] = (
                f"the database is at {sorted(current) or 'no revision'}, this build needs "
                f"{sorted(head)}: run `voucher db upgrade`"
            )
        else:
            try:  # a database used as a sandbox is never served in production, nor production's elsewhere,
                # even if unread at start
                await deployment.refuse_another_environment(request.app.state.database)
            except RuntimeError as refused:
                checks["sandbox_clock" if request.app.state.settings.environment == "production"
                       else "environment"] = str(refused)
    failed = {name: result for name, result in checks.items() if result != "ok"}
    if failed:
        raise errors.NotReady(
            msg("not ready: {checks}", checks=[f"{name}: {result}" for name, result in failed.items()]),
            checks=checks, revision=sorted(current), head=sorted(head),
        )
    return Readiness(status="ready", checks=checks, revision=sorted(current), head=sorted(head))


@router.get(
    "/v1/problems",
    operation_id="list_problem_types",
    summary="Every problem type the API can answer with",
    description="Public: no API key. Lists every problem `code` the API can answer with, its HTTP status and its "
    "title in zh-CN and English (`title` follows Accept-Language); changes nothing and answers no problem of its "
    "own.",
    response_model=list[ProblemType],
)
async def list_problem_types(language: Language, response: Response) -> list[ProblemType]:
    response.headers["Content-Language"] = content_language(language)
    return list(catalogue(language).values())


@router.get(
    "/v1/problems/{code}",
    operation_id="get_problem_type",
    summary="Explain one problem type (the `type` of an error body)",
    description="Public: no API key. Explains one problem type: the `type` of every error body, "
    "`/v1/problems/{code}`, resolves here. Changes nothing. Answers `not_found` for an unknown code.",
    response_model=ProblemType,
    responses=responses(errors.NotFound),
)
async def get_problem_type(code: str, language: Language, response: Response) -> ProblemType:
    found = catalogue(language).get(code)
    if found is None:
        raise errors.NotFound(msg("no problem type {code}", code=repr(code)))
    response.headers["Content-Language"] = content_language(language)
    return found
