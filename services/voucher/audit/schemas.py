"""Request and response models of the audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from services.voucher.instants import Instant

_EVENT: JsonDict = {
    "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e90", "occurred_at": "2026-03-02T01:00:00Z",
    "actor_principal_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e01", "actor_role": "provider",
    "actor_key_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e02", "action": "redemption.captured",
    "resource_type": "redemption", "resource_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e30",
    "programme_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20", "enterprise_id": None, "provider_id": None,
    "voucher_id": None, "before": {"status": "held"}, "after": {"status": "captured", "captured_amount": 120000},
    "request_id": "4f1c0a9e2b7d4c7e9a1b2c3d4e5f6a7b", "idempotency_key": "order-PO-2026-0001",
    "rule_version": None, "journal_id": None, "seq": 41, "chain_hash": "9f" * 32,
}
_HASH = "3b" * 32


class AuditEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EVENT]})

    id: uuid.UUID
    occurred_at: datetime
    actor_principal_id: uuid.UUID | None = Field(description="Null for the system (jobs, the end of a period).")
    actor_role: str = Field(description="operator, auditor, enterprise, provider or system.")
    actor_key_id: uuid.UUID | None
    action: str = Field(description="What happened, e.g. `voucher.issued`, `ledger.posted`.")
    resource_type: str
    resource_id: uuid.UUID
    programme_id: uuid.UUID | None
    enterprise_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    voucher_id: uuid.UUID | None
    before: Any = Field(description="The changed fields before the change: an object, or null. Shown as stored, "
                        "so a value written behind the service (which verification reports) is shown too.")
    after: Any = Field(description="The changed fields after it: an object, or null; shown as stored.")
    request_id: str | None
    idempotency_key: str | None
    rule_version: int | None = Field(description="The eligibility rule version that decided, if one did.")
    journal_id: uuid.UUID | None = Field(description="The ledger journal this event accounts for.")
    seq: int | None = Field(description="Place in the hash chain; null until sealed (seconds after commit).")
    chain_hash: str | None = Field(description="SHA-256(previous link ‖ SHA-256(canonical event)), hex.")


class ChainHead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"seq": 1204, "chain_hash": _HASH, "unsealed": 3}]})

    seq: int = Field(description="Events sealed into the chain so far.")
    chain_hash: str = Field(description="The link of the last sealed event (64 zeros for an empty chain).")
    unsealed: int = Field(description="Committed events still waiting for the sealer.")


class CheckpointPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e91", "seq": 1204, "chain_hash": _HASH,
        "signed_at": "2026-03-02T02:00:00Z", "key_id": "a1" * 16, "signature": "c2lnbmF0dXJl" * 7 + "AA==",
        "message": '{"chain_hash":"…","seq":1204,"signed_at":"2026-03-02T02:00:00.000000Z",'
                   '"statement":"voucher-audit-checkpoint/1"}'}]})

    id: uuid.UUID
    seq: int
    chain_hash: str
    signed_at: datetime
    key_id: str = Field(description="Names the signing key: the first 16 bytes of SHA-256(public key), hex.")
    signature: str = Field(description="Ed25519 signature of `message`, base64.")
    message: str = Field(description="The exact bytes signed (canonical JSON), to verify without this service.")


class RetiredKey(BaseModel):
    key_id: str
    public_key: str = Field(description="The raw 32-byte Ed25519 public key, base64.")


class PublicKey(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "algorithm": "Ed25519", "key_id": "a1" * 16, "public_key": "MCowBQYDK2VwAyEA" + "A" * 28,
        "is_development_key": False}]})

    algorithm: str
    key_id: str
    public_key: str = Field(description="The raw 32-byte Ed25519 public key, base64.")
    is_development_key: bool = Field(
        description="True when no VOUCHER_AUDIT_SIGNING_KEY is configured: the key is published and "
        "its checkpoints prove nothing.")
    retired_keys: list[RetiredKey] = Field(
        default_factory=list,
        description="Keys that signed checkpoints before this one (VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS): a stored "
        "checkpoint is checked with the key its `key_id` names.")


class KeptCheckpoint(BaseModel):
    """A checkpoint the auditor kept outside the system, to verify the chain against."""

    model_config = ConfigDict(extra="forbid")

    seq: int = Field(ge=0, le=2**62)
    chain_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    signed_at: Instant
    signature: str = Field(min_length=1, max_length=200)
    key_id: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{32}$",
        description="The key that signed it, as the checkpoint named it (optional): the service's current key or "
                    "one it lists as retired. Without it, each is tried. A retired key vouches only for a "
                    "checkpoint signed before the current key signed its first.")


class VerificationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {}, {"checkpoint": {"seq": 1204, "chain_hash": _HASH, "signed_at": "2026-03-02T02:00:00Z",
                            "signature": "c2lnbmF0dXJl" * 7 + "AA=="}}]})

    checkpoint: KeptCheckpoint | None = Field(
        default=None,
        description="A checkpoint kept outside the system: the chain, rechecked from its first event, must "
        "hash to it at its position; its signature must verify with this service's public key.")
    check_ledger: bool = Field(default=True, description="Also match every ledger journal against its event.")


class ChainProblem(BaseModel):
    kind: str = Field(description="event_altered, event_deleted, event_inserted, events_reordered, "
                      "checkpoint_mismatch, checkpoint_signature_invalid, event_outside_chain, "
                      "posting_without_event, postings_differ, event_without_posting, account_without_event, "
                      "account_differs, event_without_account or account_event_repeated.")
    detail: str
    seq: int | None = None
    journal_id: uuid.UUID | None = None

    model_config = ConfigDict(extra="allow")


class VerificationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e92", "is_intact": False, "from_seq": 0, "to_seq": 1204,
        "events_checked": 1204, "journals_checked": 388, "accounts_checked": 57,
        "problems": [{"kind": "event_altered", "seq": 77, "detail": "the event does not hash to its link"}],
        "created_at": "2026-03-02T02:00:00Z"}]})

    id: uuid.UUID
    is_intact: bool = Field(description="True when nothing below was found.")
    from_seq: int
    to_seq: int
    events_checked: int
    journals_checked: int
    accounts_checked: int = Field(description="Ledger accounts matched against the events that recorded them.")
    problems: list[ChainProblem] = Field(description="The first broken link first; at most 100.")
    created_at: datetime
