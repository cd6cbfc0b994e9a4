"""Events over HTTP: page through your own events, the pull alternative to webhooks."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.db import encode_int_cursor
from services.voucher.events import service
from services.voucher.events.rules import EventType
from services.voucher.events.schemas import EventPage, EventPublic
from services.voucher.http.auth import require
from services.voucher.http.deps import Session
from services.voucher.http.pagination import IntPaging
from services.voucher.http.problems import AUTH_ERRORS, responses

router = APIRouter(prefix="/v1/events", tags=["events"])
Reader = Annotated[Actor, Depends(require(Scope.EVENTS_READ))]


@router.get(
    "",
    operation_id="list_events",
    summary="Your events in publication order (all events, for the programme office and auditors)",
    description="Any key with `events:read`: an enterprise or a provider reads its own events, operators "
    "and auditors all; changes nothing. "
    "Page with `next_cursor` until it is null, keep `poll_cursor`, and poll with it as "
    "`cursor` later: positions are given in commit order and never skip, so nothing is missed. An "
    "event appears once the worker has published it (seconds after its change committed). "
    "Answers `invalid_cursor` for a cursor this service did not issue.",
    response_model=EventPage,
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_events(
    session: Session,
    actor: Reader,
    page: IntPaging,
    cursor: Annotated[str | None, Query(include_in_schema=False)] = None,
    type: Annotated[list[EventType] | None, Query(description="Only these types (repeatable).")] = None,
    programme_id: Annotated[uuid.UUID | None, Query()] = None,
    resource_id: Annotated[uuid.UUID | None, Query()] = None,
) -> EventPage:
    found = await service.list_events(
        session, actor, after=page.after or 0, limit=page.limit, types=[t.value for t in type] if type else None,
        programme_id=programme_id, resource_id=resource_id,
    )
    items = [EventPublic.model_validate(r) for r in found.items]
    return EventPage(items=items, next_cursor=encode_int_cursor(found.next_after) if found.next_after else None,
                     poll_cursor=encode_int_cursor(items[-1].seq) if items else cursor)


@router.get(
    "/{event_id}",
    operation_id="get_event",
    summary="Read one of your events",
    description="Any key with `events:read`, for an event it may see (an enterprise or a provider its own, "
    "operators and auditors any): the event as webhooks deliver it. Changes nothing. Answers `not_found` when the "
    "event does not exist or is not yours.",
    response_model=EventPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_event(event_id: uuid.UUID, session: Session, actor: Reader) -> EventPublic:
    return EventPublic.model_validate(await service.get_event(session, actor, event_id))
