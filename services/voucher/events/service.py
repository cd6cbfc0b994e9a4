"""The transactional outbox: announce changes in their own transaction, publish after commit.

Design (docs/decisions.md, "Events and webhooks"): a change inserts its event row in the
transaction that makes it, so an event exists exactly when its change committed. A publisher,
one at a time, gives committed events their `seq` (commit order, gap-free) and a delivery row
per matching webhook endpoint; subscribers page on `seq` and senders work from the deliveries.
A slow receiver therefore never touches the request path.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.audit.rules import plain
from services.voucher.db import Database
from services.voucher.errors import NotFound
from services.voucher.events import repository
from services.voucher.events.rules import (
    ANNOUNCED_ACTIONS,
    EventType,
    balance_low_key,
    expiring_key,
    marks_reached,
)
from services.voucher.i18n import msg
from services.voucher.ids import uuid7
from services.voucher.webhooks import repository as webhooks

PUBLISH_BATCH = 1000


def event_row(
    type: EventType,
    resource_type: str,
    resource_id: uuid.UUID,
    *,
    now: datetime,
    data: dict[str, Any],
    programme_id: uuid.UUID | None = None,
    enterprise_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
    dedupe_key: str | None = None,
) -> dict[str, Any]:
    """The outbox row of an event, for `emit` (or a caller writing it in its own statement)."""
    ids = {"programme_id": programme_id, "enterprise_id": enterprise_id, "provider_id": provider_id}
    return {
        "id": uuid7(), "type": type.value, "occurred_at": now, **ids,
        "resource_type": resource_type, "resource_id": resource_id,
        "data": {"resource_type": resource_type, "resource_id": str(resource_id),
                 **{k: str(v) for k, v in ids.items() if v is not None}, **plain(data, strict=False)},
        "dedupe_key": dedupe_key,
    }


async def emit(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Write an event (`event_row`) in the caller's transaction. With a `dedupe_key` it is
    written at most once ever; False when it already was."""
    return await repository.insert_event(session, row)


def announcement(
    action: str, resource_type: str, resource_id: uuid.UUID, *, now: datetime,
    after: dict[str, Any] | None, programme_id: uuid.UUID | None, enterprise_id: uuid.UUID | None,
    provider_id: uuid.UUID | None, voucher_id: uuid.UUID | None,
) -> dict[str, Any] | None:
    """The outbox row announcing an audited change, or None if the action is not announced:
    its data is what changed (the audit's `after`) plus the ids; subscribers read the resource
    for the rest."""
    if action not in ANNOUNCED_ACTIONS:
        return None
    data = dict(after or {})
    if voucher_id is not None:
        data["voucher_id"] = str(voucher_id)
    return event_row(EventType(action), resource_type, resource_id, now=now, data=data,
                     programme_id=programme_id, enterprise_id=enterprise_id, provider_id=provider_id)


async def announce(
    session: AsyncSession, action: str, resource_type: str, resource_id: uuid.UUID, *, now: datetime,
    after: dict[str, Any] | None, programme_id: uuid.UUID | None, enterprise_id: uuid.UUID | None,
    provider_id: uuid.UUID | None, voucher_id: uuid.UUID | None,
) -> None:
    """Called for every audited change: the announced ones become events."""
    row = announcement(action, resource_type, resource_id, now=now, after=after, programme_id=programme_id,
                       enterprise_id=enterprise_id, provider_id=provider_id, voucher_id=voucher_id)
    if row is not None:
        await emit(session, row)


def balance_marks(
    *, voucher_id: uuid.UUID, programme_id: uuid.UUID, enterprise_id: uuid.UUID,
    face_value: int, used: int, unit: str, now: datetime,
) -> list[dict[str, Any]]:
    """The outbox rows of the 80 % / 100 % marks a voucher's use has reached (each inserted
    at most once ever: they carry a dedupe key)."""
    return [
        event_row(
            EventType.VOUCHER_BALANCE_LOW, "voucher", voucher_id, now=now,
            data={"mark_percent": mark // 100, "face_value": face_value, "used": used, "unit": unit},
            programme_id=programme_id, enterprise_id=enterprise_id,
            dedupe_key=balance_low_key(voucher_id, mark),
        )
        for mark in marks_reached(face_value, used)
    ]


def defer_marks(session: AsyncSession, **fields: Any) -> None:
    """`note_use`, written with the commit (the value engine's captures)."""
    repository.defer_once(session, balance_marks(**fields))


async def note_use(
    session: AsyncSession, *, voucher_id: uuid.UUID, programme_id: uuid.UUID, enterprise_id: uuid.UUID,
    face_value: int, used: int, unit: str, now: datetime,
) -> None:
    """After a capture: announce each 80 % / 100 % mark the voucher's use has reached, once."""
    for row in balance_marks(voucher_id=voucher_id, programme_id=programme_id, enterprise_id=enterprise_id,
                             face_value=face_value, used=used, unit=unit, now=now):
        await emit(session, row)


async def announce_expiring(database: Database, now: datetime, days: int, limit: int = 500) -> int:
    """The `announce-expiring` job: warn each active voucher's enterprise once, `days` before
    it expires. Safe with several workers: the dedupe key makes the second insert a no-op."""
    async with database.unit_of_work() as session:
        due = await repository.expiring(session, now, now + timedelta(days=days), limit)
        done = 0
        for row in due:
            done += await emit(session, event_row(
                EventType.VOUCHER_EXPIRING, "voucher", row["id"], now=now,
                data={"expires_at": row["expires_at"].isoformat().replace("+00:00", "Z"),
                      "available": row["available"], "face_value": row["face_value"], "unit": row["unit"],
                      "days_before": days},
                programme_id=row["programme_id"], enterprise_id=row["enterprise_id"],
                dedupe_key=expiring_key(row["id"]),
            ))
    return done


async def publish_batch(session: AsyncSession, now: datetime) -> int:
    """Give committed, unpublished events their place and a delivery per matching endpoint."""
    await repository.lock_publisher(session)
    pending = await repository.unpublished(session, PUBLISH_BATCH)
    if not pending:
        return 0
    seq = await repository.last_seq(session)
    rows = []
    for event in pending:
        seq += 1
        rows.append({"event_id": event["id"], "new_seq": seq, "at": now})
    await repository.publish(session, rows)
    # The events' owners' endpoints, read once and held shared till this commits: their event
    # types and status as held decide (endpoints read first and held later had been written for
    # as first read: one enabled in between was left owed with no time to try, for good), and an
    # owner's change after this waits for the commit, then finds the deliveries. A paused
    # endpoint is owed them too, with no time to be tried until it is enabled.
    owners = {owner for event in pending for owner in (event["enterprise_id"], event["provider_id"]) if owner}
    deliveries = [{"id": uuid7(), "endpoint_id": endpoint["id"], "event_id": event["id"], "status": "pending",
                   "attempts": 0, "next_attempt_at": now if endpoint["status"] == "enabled" else None,
                   "created_at": now}
                  for endpoint in await webhooks.endpoints_of(session, owners)
                  for event in pending if _wants(endpoint, event)]
    await webhooks.insert_deliveries(session, deliveries)
    return len(rows)


def _wants(endpoint: dict[str, Any], event: dict[str, Any]) -> bool:
    owner = endpoint["enterprise_id"] or endpoint["provider_id"]
    concerns = owner in (event["enterprise_id"], event["provider_id"])
    return concerns and event["type"] in endpoint["event_types"]


async def publish_pending(database: Database, now: datetime) -> int:
    total = 0
    while True:
        async with database.unit_of_work() as session:
            published = await publish_batch(session, now)
        total += published
        if published < PUBLISH_BATCH:
            return total


@dataclass(frozen=True)
class EventPage:
    items: list[dict[str, Any]]
    next_after: int | None


async def list_events(
    session: AsyncSession, actor: Actor, *, after: int, limit: int, types: list[str] | None,
    programme_id: uuid.UUID | None, resource_id: uuid.UUID | None,
) -> EventPage:
    """Published events in `seq` order: a subscriber's own, or all for the office."""
    statement = repository.visible_to(repository.listing(types, programme_id, resource_id),
                                      actor.enterprise_id, actor.provider_id, actor.sees_everything)
    rows = await repository.page(session, statement, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return EventPage(rows, rows[-1]["seq"] if more else None)


async def get_event(session: AsyncSession, actor: Actor, event_id: uuid.UUID) -> dict[str, Any]:
    statement = repository.visible_to(repository.listing(None, None, None), actor.enterprise_id,
                                      actor.provider_id, actor.sees_everything)
    rows = await repository.page(session, statement.where(repository.E.c.id == event_id), 0, 1)
    if not rows:
        raise NotFound(msg("no published event with id {event_id}", event_id=event_id))
    return rows[0]
