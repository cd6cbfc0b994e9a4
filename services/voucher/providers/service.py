"""Provider registry use cases: register, read, update, approve and suspend."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.audit import service as audit
from services.voucher.db import PageRequest
from services.voucher.errors import AlreadyExists, NotFound, ProviderKindMismatch
from services.voucher.i18n import msg
from services.voucher.providers import repository
from services.voucher.providers.rules import ProviderStatus, check_transition
from services.voucher.tables import Provider


async def register(session: AsyncSession, data: dict[str, Any], now: datetime) -> Provider:
    """New providers start `pending` until an operator approves them."""
    if await repository.uscc_taken(session, data["uscc"]):
        raise AlreadyExists(msg("a provider with USCC {uscc} is already registered", uscc=data["uscc"]))
    provider = Provider(**data, status=ProviderStatus.PENDING.value, created_at=now, updated_at=now)
    await repository.add(session, provider)
    await audit.record(session, "provider.registered", "provider", provider.id, now=now, after=_public(provider),
                       provider_id=provider.id)
    return provider


def _public(provider: Provider) -> dict[str, Any]:
    return {k: v for k, v in provider.model_dump().items() if k not in ("id", "created_at", "updated_at", "version")}


async def get_provider(
    session: AsyncSession, actor: Actor, provider_id: uuid.UUID, *, for_update: bool = False
) -> Provider:
    """404 both when it does not exist and when it is another tenant's."""
    provider = await repository.get(session, actor, provider_id, for_update=for_update)
    if provider is None:
        raise NotFound(msg("no provider with id {provider_id}", provider_id=provider_id))
    return provider


async def list_providers(
    session: AsyncSession, actor: Actor, page: PageRequest, *, status: str | None = None
) -> tuple[list[Provider], str | None]:
    return await repository.list_page(session, actor, page, status=status)


async def update(
    session: AsyncSession,
    actor: Actor,
    provider_id: uuid.UUID,
    changes: dict[str, Any],
    *,
    check_version: Callable[[int], None],
    now: datetime,
) -> Provider:
    provider = await get_provider(session, actor, provider_id, for_update=True)
    check_version(provider.version)
    changed = {k: v for k, v in changes.items() if getattr(provider, k) != v}
    if "kinds" in changed:
        # Enrolment needs the provider to offer the programme's kind; dropping a kind it is
        # enrolled for had left it redeeming vouchers of that kind (an independent review of the
        # registries, December 2026). Read after the provider's lock: an enrolment and a
        # programme's change of kind hold the provider's row shared (after their programme's),
        # so one in progress commits first and is seen here, or waits and then sees this change.
        kinds = [str(k) for k in changed["kinds"]]  # a StrEnum member is its value
        serving = await repository.enrolled_programmes_of_kinds_not(session, provider.id, kinds)
        if serving:
            raise ProviderKindMismatch(
                msg("the provider is enrolled in {programmes}, whose kind these kinds leave out; withdraw it from "
                    "them first", programmes=[code for _, code, _ in serving]),
                programme_ids=[str(pid) for pid, _, _ in serving])
    before = {k: getattr(provider, k) for k in changed}
    if changed:
        for field, value in changed.items():
            setattr(provider, field, value)
        provider.version += 1
        provider.updated_at = now
        await session.flush()
        await audit.record(session, "provider.updated", "provider", provider.id, now=now, before=before, after=changed,
                           provider_id=provider.id)
    return provider


async def change_status(
    session: AsyncSession,
    actor: Actor,
    provider_id: uuid.UUID,
    target: ProviderStatus,
    reason: str,
    now: datetime,
) -> Provider:
    """pending → approved ⇄ suspended; the reason is kept so a refusal can be explained."""
    provider = await get_provider(session, actor, provider_id, for_update=True)
    check_transition(ProviderStatus(provider.status), target)
    before = {"status": provider.status, "status_reason": provider.status_reason}
    provider.status = target.value
    provider.status_reason = reason
    provider.version += 1
    provider.updated_at = now
    await session.flush()
    await audit.record(session, f"provider.{target.value}", "provider", provider.id, now=now, before=before,
                       after={"status": provider.status, "status_reason": reason}, provider_id=provider.id)
    return provider
