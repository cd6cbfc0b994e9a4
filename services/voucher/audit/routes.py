"""The audit trail over HTTP: events, the chain head, signed checkpoints, verifications.

Operators and auditors read (`audit:read`); verifying and taking checkpoints (`audit:verify`)
are the only writes an auditor makes. The public key is public: anyone may check a checkpoint.
"""

from __future__ import annotations

import base64
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.audit import service
from services.voucher.audit.rules import checkpoint_message
from services.voucher.audit.schemas import (
    AuditEventPublic,
    ChainHead,
    CheckpointPublic,
    PublicKey,
    RetiredKey,
    VerificationCreate,
    VerificationPublic,
)
from services.voucher.audit.signing import Signer, key_id_of
from services.voucher.db import Database
from services.voucher.http.auth import require
from services.voucher.http.deps import Now, Session, get_database
from services.voucher.http.idempotency import idempotent
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.i18n import msg
from services.voucher.instants import Instant
from services.voucher.tables import AuditCheckpoint
from services.voucher.windows import range_problem

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Reader = Annotated[Actor, Depends(require(Scope.AUDIT_READ))]
Verifier = Annotated[Actor, Depends(require(Scope.AUDIT_VERIFY))]
DB = Annotated[Database, Depends(get_database)]


async def _sealed(actor: Verifier, database: DB) -> None:
    """Seal what is committed, in transactions of its own, BEFORE the Idempotency-Key is
    claimed: the claim opens the request's transaction (on SQLite, the database's one write
    lock), which the sealer must not wait for. Nothing to do when the middleware verified
    ahead (`service.verify_ahead`): it sealed first."""
    if service.AHEAD.get() is None:
        await service.seal_pending(database)
IDEM = (errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress)


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


def _checkpoint(row: AuditCheckpoint) -> CheckpointPublic:
    return CheckpointPublic(
        id=row.id, seq=row.seq, chain_hash=row.chain_hash, signed_at=row.signed_at, key_id=row.key_id,
        signature=row.signature, message=checkpoint_message(row.seq, row.chain_hash, row.signed_at).decode(),
    )


@router.get(
    "/events",
    operation_id="list_audit_events",
    summary="List audit events, filtered, oldest first",
    description="Operators and auditors (`audit:read`). Lists the hash-chained audit events (actor, action, "
    "resource, before and after, request id, chain position), filtered by programme, enterprise, provider, "
    "voucher, resource, action or time, oldest first; changes nothing. Answers `invalid_cursor` for a cursor this "
    "service did not issue.",
    response_model=Page[AuditEventPublic],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_audit_events(
    session: Session, actor: Reader, page: Paging,
    programme_id: Annotated[uuid.UUID | None, Query()] = None,
    enterprise_id: Annotated[uuid.UUID | None, Query()] = None,
    provider_id: Annotated[uuid.UUID | None, Query()] = None,
    voucher_id: Annotated[uuid.UUID | None, Query()] = None,
    resource_type: Annotated[str | None, Query(max_length=32)] = None,
    resource_id: Annotated[uuid.UUID | None, Query()] = None,
    action: Annotated[str | None, Query(max_length=64, description="e.g. `voucher.issued`")] = None,
    since: Annotated[Instant | None, Query(description="Events at or after this instant.")] = None,
    until: Annotated[Instant | None, Query(description="Events before this instant.")] = None,
) -> Page[AuditEventPublic]:
    if (problem := range_problem(since, until)) is not None:  # an empty page would read as "no events"
        raise errors.ValidationFailed([errors.field_error("until", problem, location="query")])
    rows, cursor = await service.events(
        session, page, programme_id=programme_id, enterprise_id=enterprise_id, provider_id=provider_id,
        voucher_id=voucher_id, resource_type=resource_type, resource_id=resource_id, action=action,
        since=since, until=until,
    )
    return Page(items=[AuditEventPublic.model_validate(r) for r in rows], next_cursor=cursor)


@router.get(
    "/head",
    operation_id="audit_chain_head",
    summary="The sealed chain's head, and how many events wait for the sealer",
    description="Operators and auditors (`audit:read`). Answers the last sealed event's position and chain hash, "
    "and how many committed events still wait to be sealed into the chain; changes nothing. It has no problem of "
    "its own beyond authentication.",
    response_model=ChainHead,
    responses=responses(*AUTH_ERRORS),
)
async def audit_chain_head(session: Session, actor: Reader) -> ChainHead:
    head = await service.head(session)
    return ChainHead(seq=head.seq, chain_hash=head.chain_hash, unsealed=head.unsealed)


@router.get(
    "/public-key",
    operation_id="audit_public_key",
    summary="The Ed25519 public key that checkpoints are signed with (no key needed)",
    description="Public: no API key, so anyone holding a checkpoint can check its signature. Answers the Ed25519 "
    "public key (base64), its key id, and whether it is the development key; changes nothing and answers no "
    "problem of its own.",
    response_model=PublicKey,
)
async def audit_public_key(request: Request) -> PublicKey:
    signer = _signer(request)
    return PublicKey(algorithm="Ed25519", key_id=signer.key_id,
                     public_key=base64.b64encode(signer.public_bytes).decode(),
                     is_development_key=signer.is_development,
                     retired_keys=[RetiredKey(key_id=key_id_of(key), public_key=base64.b64encode(key).decode())
                                   for key in signer.retired])


@router.post(
    "/checkpoints",
    operation_id="create_audit_checkpoint",
    summary="Seal every committed event and sign the chain head now",
    description="Operators and auditors (`audit:verify`). Seals every committed audit event into the hash chain, "
    "then signs the chain head with the service's Ed25519 key and keeps the checkpoint; store its `message` and "
    "`signature` outside the service to prove later that history was not rewritten. Writes only the seal and the "
    "checkpoint (no audit event, no ledger posting); beyond authentication it answers only an Idempotency-Key "
    "conflict (`idempotency_key_reused`, `idempotency_request_in_progress`).",
    status_code=201,
    response_model=CheckpointPublic,
    responses=responses(*AUTH_ERRORS, *IDEM),
    dependencies=[Depends(_sealed), Depends(idempotent(Scope.AUDIT_VERIFY))],
)
async def create_audit_checkpoint(
    request: Request, session: Session, now: Now, actor: Verifier, response: Response
) -> CheckpointPublic:
    row = await service.sign_checkpoint(session, _signer(request), now)
    response.headers["Location"] = f"/v1/audit/checkpoints/{row.id}"
    return _checkpoint(row)


@router.get(
    "/checkpoints",
    operation_id="list_audit_checkpoints",
    summary="List signed checkpoints, oldest first",
    description="Operators and auditors (`audit:read`). Lists signed checkpoints, oldest first: those the worker "
    "takes periodically and those taken on demand; changes nothing. Answers `invalid_cursor` for a cursor this "
    "service did not issue.",
    response_model=Page[CheckpointPublic],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_audit_checkpoints(session: Session, actor: Reader, page: Paging) -> Page[CheckpointPublic]:
    rows, cursor = await service.checkpoints(session, page)
    return Page(items=[_checkpoint(r) for r in rows], next_cursor=cursor)


@router.get(
    "/checkpoints/{checkpoint_id}",
    operation_id="get_audit_checkpoint",
    summary="One signed checkpoint, with the exact message its signature covers",
    description="Operators and auditors (`audit:read`). Answers one checkpoint with the exact message its "
    "signature covers; changes nothing. Answers `not_found` for an unknown checkpoint.",
    response_model=CheckpointPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_audit_checkpoint(checkpoint_id: uuid.UUID, session: Session, actor: Reader) -> CheckpointPublic:
    row = await service.checkpoint(session, checkpoint_id)
    return _checkpoint(row)


@router.post(
    "/verifications",
    operation_id="verify_audit_chain",
    summary="Recheck the whole chain (and against a kept checkpoint) and the ledger against it",
    description="Operators and auditors (`audit:verify`). "
    "Seals what is committed, then rechecks in one snapshot: every link of the chain, "
    "every stored checkpoint (signature and hash), and every ledger journal against its "
    "`ledger.posted` event. The result is kept (its only write besides the seal); `problems` lists the "
    "first broken link first. "
    "A broken chain is a finding (201 with `is_intact: false`), not an error. "
    "Refused with `checkpoint_signature_invalid` "
    "when the checkpoint sent was not signed by this service's key, nor by a key it lists as retired before the "
    "current key took over (nothing can be proved from it), "
    "`validation_failed` or an Idempotency-Key conflict.",
    status_code=201,
    response_model=VerificationPublic,
    responses=responses(*AUTH_ERRORS, errors.CheckpointSignatureInvalid, errors.ValidationFailed, *IDEM),
    dependencies=[Depends(_sealed), Depends(idempotent(Scope.AUDIT_VERIFY))],
)
async def verify_audit_chain(
    body: VerificationCreate, request: Request, session: Session, database: DB, now: Now, actor: Verifier,
    response: Response,
) -> VerificationPublic:
    signer = _signer(request)
    kept = body.checkpoint
    kept_pin = None if kept is None else service.Pin(kept.seq, kept.chain_hash)
    ahead = service.AHEAD.get()
    if ahead is not None and ahead[0] == (kept_pin, body.check_ledger):
        # Verified before the unit of work began (service.verify_ahead), the kept checkpoint's
        # signature with it: verify_ahead answers nothing for one that does not verify.
        result = ahead[1]
    else:
        if kept is not None and not await service.kept_checkpoint_verifies(
                session, signer, kept.seq, kept.chain_hash, kept.signed_at, kept.signature, kept.key_id):
            raise errors.CheckpointSignatureInvalid(
                msg("this checkpoint was not signed by this service's key, nor by a retired key before the current "
                    "one took over (or it was altered); nothing can be proved from it"), seq=kept.seq)
        async with database.snapshot() as snapshot:
            result = await service.verify(snapshot, signer, kept_pin, check_ledger=body.check_ledger)
    row = await service.keep_verification(session, result, actor.principal_id, now)
    response.headers["Location"] = f"/v1/audit/verifications/{row.id}"
    return VerificationPublic.model_validate(row)


@router.get(
    "/verifications/{verification_id}",
    operation_id="get_audit_verification",
    summary="A kept verification and what it found",
    description="Operators and auditors (`audit:read`). Answers a kept verification: whether the chain, the "
    "checkpoints and the ledger were intact, and every problem found; changes nothing. Answers `not_found` for an "
    "unknown verification.",
    response_model=VerificationPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_audit_verification(verification_id: uuid.UUID, session: Session, actor: Reader) -> VerificationPublic:
    return VerificationPublic.model_validate(await service.verification(session, verification_id))
