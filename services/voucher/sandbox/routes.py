"""The sandbox clock over HTTP (docs/sandbox.md). Always in the OpenAPI document, marked
sandbox-only; outside sandbox mode both operations answer 404 `sandbox_disabled`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from services.voucher import errors, jobs
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.clock import SandboxClock
from services.voucher.db import Database
from services.voucher.http.auth import current_actor, require
from services.voucher.http.deps import Session, get_database
from services.voucher.http.idempotency import idempotent, keep_answer_from
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.http.unit_of_work import after_commit
from services.voucher.i18n import msg
from services.voucher.sandbox import service
from services.voucher.sandbox.schemas import ClockMove, ClockState

router = APIRouter(prefix="/v1/sandbox", tags=["sandbox"])

SANDBOX_ONLY = ("**Sandbox mode only** (`VOUCHER_SANDBOX=true`, as `make run` starts); anywhere else it "
                "answers 404 `sandbox_disabled`, before any other check. ")


async def sandbox_clock(request: Request) -> SandboxClock:
    """The app's sandbox clock; outside sandbox mode, 404 before anything else is looked at."""
    clock = request.app.state.clock
    if not isinstance(clock, SandboxClock):
        raise errors.SandboxDisabled(msg("sandbox mode is off (VOUCHER_SANDBOX): the service runs on real time"))
    return clock


Clock = Annotated[SandboxClock, Depends(sandbox_clock)]


def _state(state: service.ClockState) -> ClockState:
    return ClockState(sandbox=True, now=state.now, real_time=state.real_time,
                      offset_seconds=state.offset.total_seconds(), moved_at=state.moved_at)


@router.get(
    "/clock",
    operation_id="get_sandbox_clock",
    summary="Sandbox: the service's clock, real time and how far ahead the clock is",
    description=SANDBOX_ONLY + "Any key may read it: integrators see the time their requests are judged by "
                "(also on every response, header `Voucher-Sandbox-Clock`). Changes nothing; beyond "
                "`sandbox_disabled` it answers only `unauthenticated`.",
    response_model=ClockState,
    responses=responses(errors.Unauthenticated, errors.SandboxDisabled),
)
async def get_clock(clock: Clock, _: Annotated[Actor, Depends(current_actor)], session: Session) -> ClockState:
    return _state(await service.read(session, clock))


@router.post(
    "/clock",
    operation_id="move_sandbox_clock",
    summary="Sandbox: move the clock forward by a duration, to a time or to the next day, month or year (operators)",
    description=SANDBOX_ONLY + "The programme office calls it (`programmes:write`, with a required "
                "Idempotency-Key), and every time-dependent rule reads this clock: hold TTLs, voucher validity and "
                "expiry, publicity periods, cap periods and the Asia/Shanghai year, settlement periods, key "
                "expiry, Idempotency-Key retention, webhook retries and the worker's jobs. Once the move commits, "
                "the jobs that became due run before the answer is sent (expired holds and vouchers, ended "
                "publicity, the settlements of every month that ended, events); reads already apply expiry themselves. The move "
                "is an audit event (`sandbox.clock_moved`). Refused with `sandbox_clock_backwards` (never "
                "backwards), `validation_failed` or an Idempotency-Key conflict.",
    response_model=ClockState,
    responses=responses(*AUTH_ERRORS, errors.SandboxDisabled, errors.SandboxClockBackwards, errors.ValidationFailed,
                        errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress),
    dependencies=[Depends(sandbox_clock), Depends(idempotent(Scope.PROGRAMMES_WRITE, required=True))],
)
async def move_clock(
    clock: Clock,
    _: Annotated[Actor, Depends(require(Scope.PROGRAMMES_WRITE))],
    request: Request,
    body: ClockMove,
    session: Session,
    database: Annotated[Database, Depends(get_database)],
) -> ClockState:
    state = await service.move(session, clock, advance=body.advance, to=body.to, advance_to=body.advance_to,
                               timezone=database.settings.default_timezone)
    keep_answer_from(request, state.now)  # a retry after the move still finds the answer (and moves nothing)

    async def run_due() -> None:
        clock.offset = max(clock.offset, state.offset)  # this process now; the others at their next request
        await jobs.run_due(database, clock())

    after_commit(request.scope, run_due)
    return _state(state)
