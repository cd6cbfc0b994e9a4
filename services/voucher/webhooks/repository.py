"""Every query of webhook endpoints, deliveries and attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher.db import PageRequest, dialect_name, table_of
from services.voucher.tables import (
    Enterprise,
    OutboxEvent,
    Provider,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

EP = table_of(WebhookEndpoint)
D = table_of(WebhookDelivery)
A = table_of(WebhookAttempt)
EV = table_of(OutboxEvent)


async def endpoints_of(session: AsyncSession, owners: set[uuid.UUID]) -> list[dict[str, Any]]:
    """The endpoints of these enterprises and providers not deleted, as they are now (owner,
    event types, status), each held shared until the transaction ends, in id order: an owner's
    change of one (its events, a pause, a resume, a deletion) waits for the deliveries being
    written to it, and then finds them. A disabled (paused) one is owed its events too; its
    deliveries wait, pending, until it is enabled again (`claim_due` skips them meanwhile)."""
    if not owners:
        return []
    rows = await session.execute(
        select(EP.c.id, EP.c.enterprise_id, EP.c.provider_id, EP.c.event_types, EP.c.status)
        .where(EP.c.status != "deleted", or_(EP.c.enterprise_id.in_(owners), EP.c.provider_id.in_(owners)))
        .order_by(EP.c.id)
        .with_for_update(read=True)
    )
    return [dict(row._mapping) for row in rows.all()]


async def insert_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(D.insert(), rows)


async def add(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    session.add(endpoint)
    await session.flush()


async def endpoints_kept(session: AsyncSession, enterprise_id: uuid.UUID | None, provider_id: uuid.UUID | None) -> int:
    """How many endpoints of this owner are not deleted (enabled or paused)."""
    owner = EP.c.enterprise_id == enterprise_id if enterprise_id is not None else EP.c.provider_id == provider_id
    return int((await session.execute(
        select(func.count()).select_from(EP).where(owner, EP.c.status != "deleted"))).scalar_one())


async def get(session: AsyncSession, endpoint_id: uuid.UUID, *, for_update: bool = False) -> WebhookEndpoint | None:
    statement = select(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint_id,
                                              col(WebhookEndpoint.status) != "deleted")
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def list_owned(session: AsyncSession, enterprise_id: uuid.UUID | None, provider_id: uuid.UUID | None,
                     page: PageRequest) -> list[WebhookEndpoint]:
    statement = select(WebhookEndpoint).where(col(WebhookEndpoint.status) != "deleted")
    if enterprise_id is not None:
        statement = statement.where(col(WebhookEndpoint.enterprise_id) == enterprise_id)
    elif provider_id is not None:
        statement = statement.where(col(WebhookEndpoint.provider_id) == provider_id)
    if page.after is not None:
        statement = statement.where(col(WebhookEndpoint.id) > page.after)
    rows = await session.execute(statement.order_by(col(WebhookEndpoint.id)).limit(page.limit + 1))
    return list(rows.scalars().all())


async def pause_pending(session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    """A paused endpoint's deliveries wait with no time to be tried, out of every claim's way
    (a sent one keeps its lease until it is settled)."""
    await session.execute(
        update(D).where(D.c.endpoint_id == endpoint_id, D.c.status == "pending", D.c.lease_id.is_(None))
        .values(next_attempt_at=None)
    )


async def resume_pending(session: AsyncSession, endpoint_id: uuid.UUID, now: datetime) -> None:
    """An endpoint enabled again: what it was owed meanwhile is due now, oldest first."""
    await session.execute(
        update(D).where(D.c.endpoint_id == endpoint_id, D.c.status == "pending", D.c.next_attempt_at.is_(None))
        .values(next_attempt_at=now)
    )


async def cancel_pending(session: AsyncSession, endpoint_id: uuid.UUID) -> int:
    result = await session.execute(
        update(D).where(D.c.endpoint_id == endpoint_id, D.c.status == "pending")
        .values(status="cancelled", next_attempt_at=None)
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)  # an UPDATE's result is a CursorResult


async def deliveries(session: AsyncSession, endpoint_id: uuid.UUID, page: PageRequest,
                     status: str | None) -> list[dict[str, Any]]:
    statement = (select(D, EV.c.type.label("event_type")).join(EV, EV.c.id == D.c.event_id)
                 .where(D.c.endpoint_id == endpoint_id))
    if status is not None:
        statement = statement.where(D.c.status == status)
    if page.after is not None:
        statement = statement.where(D.c.id < page.after)  # newest first
    rows = await session.execute(statement.order_by(D.c.id.desc()).limit(page.limit + 1))
    return [dict(r._mapping) for r in rows.all()]


async def attempts_of(session: AsyncSession, delivery_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    found: dict[uuid.UUID, list[dict[str, Any]]] = {d: [] for d in delivery_ids}
    if delivery_ids:
        rows = await session.execute(select(A).where(A.c.delivery_id.in_(delivery_ids)).order_by(A.c.number))
        for r in rows.all():
            found[r.delivery_id].append(dict(r._mapping))
    return found


async def delivery(session: AsyncSession, endpoint_id: uuid.UUID, delivery_id: uuid.UUID, *,
                   for_update: bool = False) -> dict[str, Any] | None:
    statement = (select(D, EV.c.type.label("event_type")).join(EV, EV.c.id == D.c.event_id)
                 .where(D.c.id == delivery_id, D.c.endpoint_id == endpoint_id))
    if for_update:
        statement = statement.with_for_update(of=D)
    row = (await session.execute(statement)).first()
    return None if row is None else dict(row._mapping)


async def redeliver(session: AsyncSession, delivery_id: uuid.UUID, now: datetime) -> None:
    """A new round: whichever worker may still be sending the old one loses its lease."""
    await session.execute(
        update(D).where(D.c.id == delivery_id)
        .values(status="pending", attempts=0, next_attempt_at=now, delivered_at=None, lease_id=None)
    )


# -- the sender's side ---------------------------------------------------------------------------


#: How many due deliveries a claim reads for each one it may take: it takes one per owner.
CLAIM_READ_AHEAD = 8
OWNER = func.coalesce(EP.c.enterprise_id, EP.c.provider_id)


async def oldest_due(session: AsyncSession, now: datetime) -> datetime | None:
    """The earliest `next_attempt_at` of a pending delivery due at `now` to an enabled endpoint
    (the due index, in order)."""
    found = (await session.execute(
        select(func.min(D.c.next_attempt_at)).select_from(D.join(EP, EP.c.id == D.c.endpoint_id))
        .where(D.c.status == "pending", D.c.next_attempt_at <= now, EP.c.status == "enabled"))).scalar_one()
    return cast(datetime | None, found)


async def claim_due(session: AsyncSession, now: datetime, lease_until: datetime, limit: int,
                    lease_id: uuid.UUID, *, skip_endpoints: set[uuid.UUID] | frozenset[uuid.UUID] = frozenset(),
                    skip_owners: set[uuid.UUID] | frozenset[uuid.UUID] = frozenset()) -> list[dict[str, Any]]:
    """Take due deliveries for this worker under `lease_id`, at most one per owner (an
    enterprise or a provider, whatever its number of endpoints), none of the endpoints and
    owners skipped: on PostgreSQL rows other workers hold are skipped (SKIP LOCKED); the lease
    (a later `next_attempt_at`) keeps them from being taken again while this worker sends, and
    hands them to another worker if this one dies. A paused endpoint's deliveries have no
    `next_attempt_at` until it is enabled again, so a claim never reads them."""
    statement = (
        select(D.c.id, OWNER).join(EP, EP.c.id == D.c.endpoint_id)
        .where(D.c.status == "pending", D.c.next_attempt_at <= now, EP.c.status == "enabled")
        .order_by(D.c.next_attempt_at, D.c.id).limit(limit * CLAIM_READ_AHEAD)
    )
    if skip_endpoints:
        statement = statement.where(D.c.endpoint_id.not_in(list(skip_endpoints)))
    if skip_owners:
        statement = statement.where(OWNER.not_in(list(skip_owners)))
    if dialect_name(session) == "postgresql":
        statement = statement.with_for_update(of=D, skip_locked=True)
    ids: list[uuid.UUID] = []
    taken: set[uuid.UUID] = set()
    for delivery_id, owner_id in (await session.execute(statement)).all():
        if owner_id not in taken and len(ids) < limit:
            taken.add(owner_id)
            ids.append(delivery_id)
    if not ids:
        return []
    await session.execute(
        update(D).where(D.c.id.in_(ids))
        .values(attempts=D.c.attempts + 1, next_attempt_at=lease_until, last_attempt_at=now, lease_id=lease_id)
    )
    rows = await session.execute(
        select(D.c.id, D.c.attempts, D.c.endpoint_id, D.c.event_id, EP.c.url, EP.c.secret, EP.c.previous_secret,
               EP.c.previous_secret_expires_at, EP.c.older_secrets, OWNER.label("owner_id"), EV.c.type, EV.c.occurred_at, EV.c.data)
        .join(EP, EP.c.id == D.c.endpoint_id).join(EV, EV.c.id == D.c.event_id)
        .where(D.c.id.in_(ids)).order_by(D.c.next_attempt_at, D.c.id)
    )
    return [dict(r._mapping) for r in rows.all()]


async def lock_delivery(session: AsyncSession, delivery_id: uuid.UUID) -> None:
    """Serialise the settling of one delivery (attempt numbers are max + 1)."""
    if dialect_name(session) == "postgresql":
        await session.execute(select(D.c.id).where(D.c.id == delivery_id).with_for_update())


async def record_attempt(session: AsyncSession, values: dict[str, Any]) -> None:
    number = (await session.execute(
        select(func.coalesce(func.max(A.c.number), 0)).where(A.c.delivery_id == values["delivery_id"])
    )).scalar_one()
    await session.execute(A.insert().values(number=int(number) + 1, **values))


async def finish(session: AsyncSession, delivery_id: uuid.UUID, lease_id: uuid.UUID, values: dict[str, Any]) -> bool:
    """Settle the attempt made under `lease_id`; False when that lease was lost meanwhile
    (another worker re-claimed the delivery, or it was cancelled or redelivered): the newer
    state stands."""
    result = await session.execute(
        update(D).where(D.c.id == delivery_id, D.c.status == "pending", D.c.lease_id == lease_id)
        .values(lease_id=None, **values)
    )
    return bool(cast(CursorResult[Any], result).rowcount)  # an UPDATE's result is a CursorResult


#: How many of an endpoint's newest deliveries its failing streak is read from.
STREAK_WINDOW = 50


async def health_of(session: AsyncSession, endpoint_id: uuid.UUID) -> dict[str, Any]:
    """What an endpoint's deliveries say about it: its newest success, its newest failed attempt
    (a delivery given up on, or still being retried), what it is owed, and the statuses of its
    newest deliveries, newest first (for the streak, rules.failing_streak)."""
    mine = D.c.endpoint_id == endpoint_id
    last_success = (await session.execute(
        select(D.c.delivered_at).where(mine, D.c.status == "succeeded").order_by(D.c.id.desc()).limit(1)
    )).scalar_one_or_none()
    # A delivery a worker holds is being sent: the attempt it counted at its claim has no
    # outcome yet, so a first send is neither a failure nor in the streak (a healthy endpoint
    # had read as failing during every first send: an independent review, December 2026). A
    # retry being sent did fail before: its claim rewrote `last_attempt_at`, so the failure is
    # read from its newest recorded attempt (a review of that fix).
    failed = (await session.execute(
        select(D.c.id, D.c.lease_id, D.c.last_attempt_at, D.c.last_status_code, D.c.last_error)
        .where(mine, D.c.status.in_(("failed", "pending")),
               or_(and_(D.c.lease_id.is_(None), D.c.attempts > 0), D.c.attempts > 1))
        .order_by(D.c.last_attempt_at.desc()).limit(1)
    )).first()
    failure: tuple[Any, ...] | None = tuple(failed[2:]) if failed is not None else None
    if failed is not None and failed[1] is not None:
        recorded = (await session.execute(
            select(A.c.attempted_at, A.c.status_code, A.c.error).where(A.c.delivery_id == failed[0])
            .order_by(A.c.number.desc()).limit(1))).first()
        failure = tuple(recorded) if recorded is not None else None
    pending = (await session.execute(select(func.count()).where(mine, D.c.status == "pending"))).scalar_one()
    sending = case((D.c.lease_id.is_(None), 0), else_=1)
    newest = (await session.execute(
        select(D.c.status, D.c.attempts - sending).where(mine).order_by(D.c.id.desc()).limit(STREAK_WINDOW)
    )).all()
    return {"last_success_at": last_success,
            "last_failure_at": failure[0] if failure else None,
            "last_failure_status_code": failure[1] if failure else None,
            "last_failure_error": failure[2] if failure else None,
            "pending": int(pending), "newest": [(r[0], int(r[1])) for r in newest]}


async def owner_names(session: AsyncSession, endpoints: list[WebhookEndpoint]) -> dict[uuid.UUID, str]:
    enterprises = {e.enterprise_id for e in endpoints if e.enterprise_id}
    providers = {e.provider_id for e in endpoints if e.provider_id}
    names: dict[uuid.UUID, str] = {}
    if enterprises:
        names.update((await session.execute(
            select(col(Enterprise.id), col(Enterprise.name)).where(col(Enterprise.id).in_(enterprises)))).all())
    if providers:
        names.update((await session.execute(
            select(col(Provider.id), col(Provider.name)).where(col(Provider.id).in_(providers)))).all())
    return names


async def all_for_update(session: AsyncSession) -> list[WebhookEndpoint]:
    """Every endpoint, deleted ones too (their secrets are kept), locked (`voucher secrets reseal`)."""
    statement = select(WebhookEndpoint).order_by(WebhookEndpoint.id)  # type: ignore[arg-type]
    if dialect_name(session) == "postgresql":
        statement = statement.with_for_update()
    return list((await session.execute(statement)).scalars().all())
