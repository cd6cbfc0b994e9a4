"""Audit events are queued on their transaction and written together just before it commits:
what a savepoint or a transaction rolls back must not be written, what commits must all be."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from services.voucher.audit import service as audit
from services.voucher.tables import AuditEvent


async def _actions(app: Any) -> list[str]:
    async with app.state.database.unit_of_work(write=False) as session:
        rows = await session.execute(select(AuditEvent.action).where(AuditEvent.resource_type == "probe")
                                     .order_by(AuditEvent.id))
        return [r.action for r in rows]


async def _record(session: Any, action: str, now: Any) -> None:
    await audit.record(session, action, "probe", uuid.uuid4(), now=now, after={"n": action})


class Refused(Exception):
    pass


async def test_events_of_a_rolled_back_savepoint_are_dropped_and_the_rest_written(app: Any, clock: Any) -> None:
    async with app.state.database.unit_of_work() as session:
        await _record(session, "probe.before", clock())
        try:
            async with session.begin_nested():
                await _record(session, "probe.inside_rolled_back", clock())
                async with session.begin_nested():
                    await _record(session, "probe.deeper_released", clock())
                raise Refused
        except Refused:
            pass
        async with session.begin_nested():
            await _record(session, "probe.inside_released", clock())
        await _record(session, "probe.after", clock())
    assert await _actions(app) == ["probe.before", "probe.inside_released", "probe.after"]


async def test_events_of_a_rolled_back_transaction_are_never_written(app: Any, clock: Any) -> None:
    with pytest.raises(Refused):
        async with app.state.database.unit_of_work() as session:
            await _record(session, "probe.lost", clock())
            raise Refused
    assert await _actions(app) == []
    # The session's queue does not leak into the next transaction.
    async with app.state.database.unit_of_work() as session:
        await _record(session, "probe.kept", clock())
    assert await _actions(app) == ["probe.kept"]


async def test_many_events_in_one_transaction_are_all_written(app: Any, clock: Any) -> None:
    async with app.state.database.unit_of_work() as session:
        for i in range(250):
            await _record(session, f"probe.n{i}", clock())
    async with app.state.database.unit_of_work(write=False) as session:
        count = (await session.execute(select(func.count()).select_from(AuditEvent)
                                       .where(AuditEvent.resource_type == "probe"))).scalar_one()
    assert count == 250


async def test_a_commit_with_a_savepoint_still_open_writes_every_event(app: Any, clock: Any) -> None:
    async with app.state.database.unit_of_work() as session:
        await _record(session, "probe.outer", clock())
        await session.begin_nested()  # never closed: the outer commit commits it too
        await _record(session, "probe.in_open_savepoint", clock())
    assert await _actions(app) == ["probe.outer", "probe.in_open_savepoint"]
