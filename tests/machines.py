"""What the Hypothesis state machines share: running one, and the programme a redemption needs
(open, with an approved provider enrolled and an enterprise registered), made through the
services as the office would."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import SYSTEM
from services.voucher.db import Database
from services.voucher.enterprises import service as enterprises
from services.voucher.enterprises.schemas import EnterpriseCreate
from services.voucher.programmes import service as programmes
from services.voucher.programmes.rules import ProgrammeStatus
from services.voucher.programmes.schemas import ProgrammeCreate
from services.voucher.providers import service as providers
from services.voucher.providers.rules import ProviderStatus
from services.voucher.providers.schemas import ProviderCreate
from services.voucher.settings import Settings
from services.voucher.tables import Enterprise, Programme, Provider
from tests.conftest import T0
from tests.support import enterprise_payload, programme_payload, provider_payload

T = TypeVar("T")


class DatabaseMachine(RuleBasedStateMachine):
    """A state machine on the database `run_machine` gives it, at the tests' frozen start, with an
    event loop of its own to drive the services from Hypothesis's synchronous rules."""

    database_url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.loop = asyncio.new_event_loop()
        self.db = Database(Settings(database_url=self.database_url, environment="test"))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


def run_machine(machine: type[DatabaseMachine], database_url: str, *, examples: int, steps: int) -> None:
    """Run `machine` against `database_url`."""
    machine.database_url = database_url
    runner = machine.TestCase
    runner.settings = settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    runner().runTest()


async def redeemable_programme(
    session: AsyncSession, now: datetime, **terms: Any
) -> tuple[Programme, Enterprise, Provider]:
    """An open programme on `terms` (over the test payload's), an enterprise, and an approved
    provider enrolled in it."""
    created = ProgrammeCreate(**programme_payload(**terms)).model_dump()
    programme = await programmes.create_programme(session, created, now)
    await programmes.transition(session, SYSTEM, programme.id, ProgrammeStatus.OPEN, now)
    enterprise = await enterprises.register(
        session, {**EnterpriseCreate(**enterprise_payload()).model_dump(mode="json"), "founded_on": None}, now)
    provider = await providers.register(session, ProviderCreate(**provider_payload()).model_dump(mode="json"), now)
    await providers.change_status(session, SYSTEM, provider.id, ProviderStatus.APPROVED, "ok", now)
    await programmes.enrol_provider(session, SYSTEM, programme.id, provider.id, now)
    return programme, enterprise, provider
