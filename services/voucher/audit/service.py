"""Audit use cases: record an event with the change it describes, seal the chain after commit,
sign checkpoints of its head, verify the chain and the ledger against it.

Design (docs/decisions.md, "Audit chain"): a request inserts its events unsealed, in its own
transaction, touching no shared row, so independent redemptions never wait on each other for
the audit. A sealer (one at a time) then takes committed, unsealed events in id order and gives
each its `seq` and chain link. Once sealed, an event cannot be altered, removed, inserted or
moved without a link breaking; a signed checkpoint held outside the system makes even a
wholesale rewrite of the chain detectable. Every ledger journal has its own `ledger.posted`
event naming its postings, so a posting written behind the service's back is found too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.audit import repository
from services.voucher.audit.rules import (
    GENESIS,
    SYSTEM_ROLE,
    Link,
    ProblemKind,
    account_compared,
    account_record,
    checkpoint_message,
    classify,
    digest,
    journal_compared,
    journal_record,
    journal_refs,
    link,
    plain,
)
from services.voucher.audit.schemas import VerificationCreate
from services.voucher.audit.signing import Signer
from services.voucher.audit.signing import verify as verify_signature
from services.voucher.db import Database, PageRequest
from services.voucher.errors import NotFound
from services.voucher.events import service as outbox
from services.voucher.i18n import msg
from services.voucher.ids import uuid7
from services.voucher.observability import REQUEST_ID
from services.voucher.tables import AuditCheckpoint, AuditEvent, AuditVerification

#: Who the current request acts for (set by authentication) and its Idempotency-Key; work
#: outside a request (jobs, the CLI) is recorded as the system.
ACTOR: ContextVar[Actor | None] = ContextVar("audit_actor", default=None)
IDEMPOTENCY_KEY: ContextVar[str | None] = ContextVar("audit_idempotency_key", default=None)

SEAL_BATCH = 5000
MAX_PROBLEMS = 100


async def record(
    session: AsyncSession,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID,
    *,
    now: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    programme_id: uuid.UUID | None = None,
    enterprise_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
    voucher_id: uuid.UUID | None = None,
    rule_version: int | None = None,
    journal_id: uuid.UUID | None = None,
    announce: bool = True,
    announce_to_provider: bool = True,
) -> None:
    """Write the event for a change, in the transaction making the change (so both commit or
    neither does). The changes subscribers are told about go into the outbox here too, unless
    `announce` is false: the caller writes `outbox.announcement(...)` itself. With
    `announce_to_provider` false the event still names its provider, but the announcement does
    not (a claim's redemption is the enterprise's: its provider is not told of it)."""
    if announce:
        await outbox.announce(session, action, resource_type, resource_id, now=now, after=after,
                              programme_id=programme_id, enterprise_id=enterprise_id,
                              provider_id=provider_id if announce_to_provider else None, voucher_id=voucher_id)
    if session.info.get("audit_disabled"):
        return
    actor = ACTOR.get()
    is_system = actor is None or actor.key_id is None
    request_id = REQUEST_ID.get()
    await repository.insert_event(session, {
        "id": uuid7(),
        "occurred_at": now,
        "actor_principal_id": None if is_system else actor.principal_id,  # type: ignore[union-attr]
        "actor_role": SYSTEM_ROLE if is_system else actor.role.value,  # type: ignore[union-attr]
        "actor_key_id": None if is_system else actor.key_id,  # type: ignore[union-attr]
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "programme_id": programme_id,
        "enterprise_id": enterprise_id,
        "provider_id": provider_id,
        "voucher_id": voucher_id,
        "before": None if before is None else plain(before),
        "after": None if after is None else plain(after),
        "request_id": None if request_id == "-" else request_id,
        "idempotency_key": IDEMPOTENCY_KEY.get(),
        "rule_version": rule_version,
        "journal_id": journal_id,
    })


@contextmanager
def as_system() -> Iterator[None]:
    """Record what happens inside as the system's doing, whichever request triggered it (the
    end of a publicity period written by a read, say). The request id stays, to trace it; the
    request's Idempotency-Key does not, since retrying that request would not redo this."""
    token, key_token = ACTOR.set(None), IDEMPOTENCY_KEY.set(None)
    try:
        yield
    finally:
        ACTOR.reset(token)
        IDEMPOTENCY_KEY.reset(key_token)


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields that changed, before and after."""
    keys = [k for k in after if before.get(k) != after[k]]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def fields(row: Any, names: str) -> dict[str, Any]:
    """The named attributes of a row (space-separated), for an event's before or after."""
    return {name: getattr(row, name) for name in names.split()}


# -- sealing and checkpoints ----------------------------------------------------------------


async def seal_batch(session: AsyncSession, limit: int = SEAL_BATCH) -> int:
    """Give the oldest committed unsealed events their places in the chain; how many."""
    await repository.lock_sealer(session)
    seq, head = await repository.sealed_head(session)
    rows = await repository.unsealed(session, limit)
    links = []
    for row in rows:
        seq += 1
        head = link(head, digest(row))
        links.append({"event_id": row["id"], "new_seq": seq, "new_hash": head})
    await repository.seal(session, links)
    return len(links)


async def seal_pending(database: Database) -> int:
    """Seal everything committed so far, a batch per transaction."""
    total = 0
    while True:
        async with database.unit_of_work() as session:
            sealed = await seal_batch(session)
        total += sealed
        if sealed < SEAL_BATCH:
            return total


@dataclass(frozen=True)
class Head:
    seq: int
    chain_hash: str
    unsealed: int


async def head(session: AsyncSession) -> Head:
    seq, chain_hash = await repository.sealed_head(session)
    return Head(seq, chain_hash, await repository.count_unsealed(session))


async def sign_checkpoint(session: AsyncSession, signer: Signer, now: datetime) -> AuditCheckpoint:
    """Sign the current sealed head (call `seal_pending` first for a fresh one)."""
    seq, chain_hash = await repository.sealed_head(session)
    checkpoint = AuditCheckpoint(
        id=uuid7(), seq=seq, chain_hash=chain_hash, signed_at=now, key_id=signer.key_id,
        signature=signer.sign(checkpoint_message(seq, chain_hash, now)),
    )
    session.add(checkpoint)
    await session.flush()
    return checkpoint


async def checkpoint(session: AsyncSession, checkpoint_id: uuid.UUID) -> AuditCheckpoint:
    found = await repository.checkpoint(session, checkpoint_id)
    if found is None:
        raise NotFound(msg("no audit checkpoint with id {checkpoint_id}", checkpoint_id=checkpoint_id))
    return found


async def verification(session: AsyncSession, verification_id: uuid.UUID) -> AuditVerification:
    found = await repository.verification(session, verification_id)
    if found is None:
        raise NotFound(msg("no audit verification with id {verification_id}", verification_id=verification_id))
    return found


async def checkpoints(session: AsyncSession, page: PageRequest) -> tuple[list[AuditCheckpoint], str | None]:
    rows, cursor = await repository.checkpoints_page(session, page)
    return list(rows), cursor


# -- verification ---------------------------------------------------------------------------


@dataclass
class Verification:
    from_seq: int
    to_seq: int = 0
    head: str = GENESIS
    events_checked: int = 0
    journals_checked: int = 0
    accounts_checked: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)

    def problem(self, kind: ProblemKind, detail: str, **where: Any) -> None:
        """A difference, with the stored values it names shown as they are: a row planted behind
        the service may hold what the service never records (a float), and reporting it must not
        stop the verification (it had answered 500 for good; an independent review, December 2026)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append({"kind": kind.value, "detail": detail, **plain(where, strict=False)})

    @property
    def is_intact(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Pin:
    """A checkpoint an auditor kept outside the system (its signature already checked): the
    chain, walked from its first event, must hash to `chain_hash` at `seq`."""

    seq: int
    chain_hash: str


#: A verification made before its request's unit of work (`verify_ahead`), with what it was
#: asked: the route keeps it instead of verifying again under the write lock.
AHEAD: ContextVar[tuple[tuple[Pin | None, bool], Verification] | None] = ContextVar("audit_verified_ahead",
                                                                                     default=None)


def verifies(scope: Any) -> bool:
    """A request for a verification of the chain."""
    return scope.get("method") == "POST" and str(scope.get("path", "")).rstrip("/") == "/v1/audit/verifications"


async def verify_ahead(database: Database, signer: Signer, body: bytes) -> tuple[tuple[Pin | None, bool],
                                                                                  Verification] | None:
    """Seal and verify before the request's unit of work begins, for a body the route will take:
    its Idempotency-Key claim opens the request's transaction (on SQLite, the database's one write
    lock, and the process's queue of writers), and a verification of a large ledger held it for
    its whole run, so every hold and redeem waited (an independent review, December 2026). None
    when the body is not one the route takes, or its checkpoint does not verify: the route refuses
    it, or verifies itself. Only the sealing writes, in short transactions of its own."""
    try:  # as the route reads it
        asked = VerificationCreate.model_validate_json(body)
    except ValueError:
        return None
    pin = None
    # One at a time in a process: they had queued behind the one writer, and a burst of them
    # would now read the whole ledger side by side.
    async with database.info.setdefault(_VERIFYING, asyncio.Lock()):
        await seal_pending(database)  # a write unit per batch, each queued as any other write
        async with database.snapshot() as snapshot:
            if (kept := asked.checkpoint) is not None:
                if not await kept_checkpoint_verifies(snapshot, signer, kept.seq, kept.chain_hash, kept.signed_at,
                                                      kept.signature, kept.key_id):
                    return None
                pin = Pin(kept.seq, kept.chain_hash)
            return (pin, asked.check_ledger), await verify(snapshot, signer, pin, check_ledger=asked.check_ledger)


#: `Database.info` key: the lock verifications made ahead of their requests take in turn.
_VERIFYING = "audit:verifying"


async def kept_checkpoint_verifies(
    session: AsyncSession, signer: Signer, seq: int, chain_hash: str, signed_at: datetime, signature: str,
    key_id: str | None,
) -> bool:
    """Whether a checkpoint the auditor kept was signed by the service: by its current key, or by
    a retired one (VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS) before the current key signed its first
    checkpoint — the rule stored checkpoints are held to. Only the current key had been tried, so
    after a change of key every checkpoint the auditor kept was refused (an independent review
    of exports and audit, December 2026)."""
    message = checkpoint_message(seq, chain_hash, signed_at)
    keys = signer.verifying_keys
    candidates = [key_id] if key_id is not None else list(keys)
    for candidate in candidates:
        public = keys.get(candidate)
        if public is None or not verify_signature(public, message, signature):
            continue
        if candidate == signer.key_id:
            return True
        took_over = _took_over(await repository.checkpoints_signed_by(session, signer.key_id), signer)
        return took_over is None or signed_at < took_over[0]
    return False


def _took_over(checkpoints: list[AuditCheckpoint], signer: Signer) -> tuple[datetime, uuid.UUID] | None:
    """When the current key took over: the first stored checkpoint (by signing time, then id)
    signed with it whose signature verifies. Any row naming the key had counted, so one inserted
    behind the service and dated 1970 made every genuine checkpoint of a retired key refused
    from then on (an independent review, December 2026). What it cannot do: a retired key that
    leaked signs whatever `signed_at` it likes, so the rule bounds a retired key's checkpoints
    only as far as the time inside them is true."""
    public = signer.verifying_keys.get(signer.key_id)
    if public is None:
        return None
    for checkpoint in sorted((c for c in checkpoints if c.key_id == signer.key_id), key=lambda c: (c.signed_at, c.id)):
        message = checkpoint_message(checkpoint.seq, checkpoint.chain_hash, checkpoint.signed_at)
        if verify_signature(public, message, checkpoint.signature):
            return checkpoint.signed_at, checkpoint.id
    return None


async def verify(
    session: AsyncSession, signer: Signer, kept: Pin | None = None, *, check_ledger: bool = True
) -> Verification:
    """Recheck the whole sealed chain from its first event against every stored checkpoint and
    `kept`, and (by default) every ledger journal against its event. Reads one snapshot;
    changes nothing."""
    result = Verification(from_seq=0)
    pins: list[tuple[int, str, dict[str, Any]]] = []
    checkpoints = await repository.all_checkpoints(session)
    # A retired key vouches only for what it signed before the current key took over: one that
    # leaked after it was retired cannot sign a later checkpoint that verifies.
    # (Ordered by signing time, then id: ids are time-ordered, and tell apart two signed in one instant.)
    took_over = _took_over(checkpoints, signer)
    for checkpoint in checkpoints:
        where = {"checkpoint_id": checkpoint.id, "seq": checkpoint.seq}
        message = checkpoint_message(checkpoint.seq, checkpoint.chain_hash, checkpoint.signed_at)
        public = signer.verifying_keys.get(checkpoint.key_id)
        if (public is not None and checkpoint.key_id != signer.key_id and took_over is not None
                and (checkpoint.signed_at, checkpoint.id) > took_over):
            result.problem(ProblemKind.CHECKPOINT_SIGNATURE_INVALID,
                           f"a stored checkpoint is signed with the retired key {checkpoint.key_id} after the "
                           "service's current key signed its first: a retired key vouches only for what it signed "
                           "before", **where)
        elif public is None:
            result.problem(ProblemKind.CHECKPOINT_SIGNATURE_INVALID,
                           f"a stored checkpoint names key {checkpoint.key_id}, which is neither the service's "
                           "key nor one listed in VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS: list that key's public half "
                           "there if the service signed with it before", **where)
        elif not verify_signature(public, message, checkpoint.signature):
            result.problem(ProblemKind.CHECKPOINT_SIGNATURE_INVALID,
                           "a stored checkpoint's signature does not verify", **where)
        pins.append((checkpoint.seq, checkpoint.chain_hash, where))
    if kept is not None:
        pins.append((kept.seq, kept.chain_hash, {"seq": kept.seq, "checkpoint": "kept by the auditor"}))
    for planted in await repository.events_outside_chain(session):
        result.problem(ProblemKind.EVENT_OUTSIDE_CHAIN,
                       "an event carries a position the chain does not have: it was planted with its seal "
                       "filled in", event_id=planted["id"], seq=planted["seq"])
    links_at = await _walk_chain(session, result, {seq for seq, _, _ in pins})
    for seq, chain_hash, where in sorted(pins, key=lambda p: p[0]):
        if seq > result.to_seq:
            result.problem(ProblemKind.CHECKPOINT_MISMATCH,
                           f"a checkpoint pinned {seq} events but the chain now ends at {result.to_seq}: "
                           "events at its end were removed", **where)
        elif links_at.get(seq) != chain_hash:
            result.problem(ProblemKind.CHECKPOINT_MISMATCH,
                           "the chain does not hash to what a signed checkpoint pinned: it was rewritten",
                           **where)
    if check_ledger:
        await _check_ledger(session, result)
        await _check_accounts(session, result)
    return result


async def _walk_chain(session: AsyncSession, result: Verification, wanted: set[int]) -> dict[int, str]:
    previous, expected = GENESIS, 1
    links_at: dict[int, str] = {0: GENESIS}
    events = _links(session, 0)
    current = await anext(events, None)
    while current is not None:
        following = await anext(events, None)
        result.events_checked += 1
        skip_following = False
        if current.seq != expected:
            # The event after the gap links from the last missing one, so what it holds cannot be
            # checked: it is named, where the report had let an event altered there pass as sound.
            result.problem(ProblemKind.EVENT_DELETED,
                           f"events {expected}..{current.seq - 1} are missing from the chain; event {current.seq}, "
                           "which links from the last of them, cannot be checked",
                           seq=expected, missing=current.seq - expected, unverifiable_seq=current.seq)
            previous = current.chain_hash  # resynchronise on the stored link
        elif link(previous, current.digest) == current.chain_hash:
            previous = current.chain_hash
        else:
            kind = classify(previous, current, following)
            result.problem(kind, _EXPLAIN[kind], seq=current.seq)
            if kind is ProblemKind.EVENTS_REORDERED:
                previous, skip_following = current.chain_hash, True
            elif kind is ProblemKind.EVENT_ALTERED:
                previous = current.chain_hash
            # an inserted event is skipped: the chain goes on from `previous`
        if current.seq in wanted:
            links_at[current.seq] = previous
        expected = current.seq + 1
        result.to_seq, result.head = current.seq, previous
        if skip_following and following is not None:
            result.events_checked += 1
            expected = following.seq + 1
            if following.seq in wanted:
                links_at[following.seq] = previous
            result.to_seq = max(result.to_seq, following.seq)
            following = await anext(events, None)
        current = following
    return links_at


_EXPLAIN = {
    ProblemKind.EVENT_ALTERED: "the event does not hash to its link: its content was changed "
    "(or an earlier event was removed and the rest renumbered)",
    ProblemKind.EVENT_INSERTED: "the event is not part of the chain: the next event links straight "
    "from the one before it, so it was inserted",
    ProblemKind.EVENTS_REORDERED: "this event and the next are in each other's places: their links "
    "only verify in the opposite order",
}


async def _links(session: AsyncSession, after_seq: int) -> AsyncIterator[Link]:
    async for row in repository.stream_sealed(session, after_seq):
        yield Link(int(row["seq"]), row["chain_hash"], digest(row))


async def _check_ledger(session: AsyncSession, result: Verification) -> None:
    """Merge the ledger's journals with the `ledger.posted` events, both ordered by journal id.
    An event planted outside the chain does not account for a journal."""
    journals = _journals(session)
    events = _posting_events(session)
    journal = await anext(journals, None)
    event = await anext(events, None)
    while journal is not None or event is not None:
        if event is None or (journal is not None and journal[0] < event[0]):
            assert journal is not None
            result.journals_checked += 1
            result.problem(ProblemKind.POSTING_WITHOUT_EVENT,
                           "a journal transaction in the ledger has no audit event: it was written "
                           "behind the service's back", journal_id=journal[0])
            journal = await anext(journals, None)
        elif journal is None or event[0] < journal[0]:
            result.problem(ProblemKind.EVENT_WITHOUT_POSTING,
                           "an audit event records a journal transaction the ledger no longer has",
                           journal_id=event[0], seq=event[1])
            event = await anext(events, None)
        else:
            result.journals_checked += 1
            recorded, ledger = journal_compared(event[2], journal[1])
            if recorded != ledger:
                result.problem(ProblemKind.POSTINGS_DIFFER,
                               "the ledger's journal (its kind, time, references or postings) differs from what "
                               "its audit event recorded", journal_id=journal[0], seq=event[1], recorded=recorded,
                               ledger=ledger)
            journal = await anext(journals, None)
            event = await anext(events, None)


async def _check_accounts(session: AsyncSession, result: Verification) -> None:
    """Merge the ledger's accounts with the `ledger.account_opened` events, both ordered by
    account: every account has one event, is what it recorded (whose it is, its kind and unit),
    and every such event names an account the ledger has."""
    accounts = repository.stream_accounts(session)
    events = _account_events(session)
    account = await anext(accounts, None)
    event = await anext(events, None)
    matched = False
    while account is not None or event is not None:
        if event is None or (account is not None and account["id"] < event[0]):
            assert account is not None
            if not matched:
                result.problem(ProblemKind.ACCOUNT_WITHOUT_EVENT,
                               "a ledger account has no audit event recording whose it is: it was opened behind "
                               "the service's back", account_id=account["id"], code=account["code"])
            result.accounts_checked += 1
            account, matched = await anext(accounts, None), False
        elif account is None or event[0] < account["id"]:
            result.problem(ProblemKind.EVENT_WITHOUT_ACCOUNT,
                           "an audit event records a ledger account the ledger no longer has",
                           account_id=event[0], seq=event[1])
            event = await anext(events, None)
        else:
            # Every event for the account is compared, not only the first: one planted to match
            # an account given to another owner must not stand for the account's own.
            recorded, ledger = account_compared(event[2], account_record(account))
            if matched:
                result.problem(ProblemKind.ACCOUNT_EVENT_REPEATED,
                               "a second audit event records a ledger account: the service records each once",
                               account_id=account["id"], seq=event[1])
            if recorded != ledger:
                result.problem(ProblemKind.ACCOUNT_DIFFERS,
                               "the ledger account (its owner, kind, unit or code) differs from what its audit "
                               "event recorded", account_id=account["id"], seq=event[1], recorded=recorded,
                               ledger=ledger)
            matched = True
            event = await anext(events, None)


async def _account_events(session: AsyncSession) -> AsyncIterator[tuple[uuid.UUID, int | None, Any]]:
    """An event planted outside the chain does not account for an account."""
    async for account_id, seq, after in repository.stream_account_events(session):
        if seq is None or seq > 0:
            yield account_id, seq, after


async def _posting_events(session: AsyncSession) -> AsyncIterator[tuple[uuid.UUID, int | None, dict[str, Any]]]:
    async for journal_id, seq, after in repository.stream_posting_events(session):
        if seq is None or seq > 0:
            # An event inserted behind the service may record anything: what is not an object
            # records no journal, and differs from the one it names (it had been a 500).
            yield journal_id, seq, after if isinstance(after, dict) else {"recorded": after}


async def _journals(session: AsyncSession) -> AsyncIterator[tuple[uuid.UUID, dict[str, Any]]]:
    """Each journal as its event should have recorded it (`journal_record`)."""
    current: Any = None
    legs: list[tuple[Any, int, str, datetime]] = []
    async for row in repository.stream_journal_legs(session):
        if current is None or row.id != current.id:
            if current is not None:
                yield current.id, _rebuilt(current, legs)
            current, legs = row, []
        if row.account_id is not None:
            legs.append((row.account_id, row.amount, row.unit, row.posted_at))
    if current is not None:
        yield current.id, _rebuilt(current, legs)


def _rebuilt(journal: Any, legs: list[tuple[Any, int, str, datetime]]) -> dict[str, Any]:
    refs = journal_refs(journal.programme_id, journal.voucher_id, journal.redemption_id, journal.memo)
    return journal_record(journal.kind, journal.created_at, legs, refs)


async def keep_verification(
    session: AsyncSession, result: Verification, requested_by: uuid.UUID | None, now: datetime
) -> AuditVerification:
    row = AuditVerification(
        id=uuid7(), requested_by=requested_by, from_seq=result.from_seq, to_seq=result.to_seq,
        is_intact=result.is_intact, events_checked=result.events_checked,
        journals_checked=result.journals_checked, accounts_checked=result.accounts_checked,
        problems=result.problems, created_at=now,
    )
    await repository.add_verification(session, row)
    return row


async def events(session: AsyncSession, page: PageRequest, **filters: Any) -> tuple[list[AuditEvent], str | None]:
    rows, cursor = await repository.events_page(session, page, **filters)
    return list(rows), cursor
