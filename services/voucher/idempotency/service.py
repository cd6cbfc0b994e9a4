"""Idempotency-Key: a repeated request returns the first answer and moves value once.

Protocol (per principal and key):
1. claim — in its own committed transaction: insert the key as `in_progress`, or find the
   earlier record. Same key, different request: refused (422). Completed: the stored answer is
   replayed. In progress and recent: 409 (the first request is still running). In progress
   and older than the lock timeout: the first attempt died before committing (its changes
   and its completion commit together, so none of them exist) and this request takes over.
2. complete — in the request's own transaction, together with the changes it made, and only
   while the claim is still ours (a conditional update on `locked_at`).
3. release — on a failure that should not be replayed (5xx, lost race, malformed input) the
   claim is deleted so a retry runs afresh; nothing had committed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.db import Database
from services.voucher.errors import (
    IdempotencyKeyReused,
    IdempotencyRequestInProgress,
    InvalidIdempotencyKey,
)
from services.voucher.idempotency import repository
from services.voucher.ids import uuid7

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Claim:
    record_id: uuid.UUID
    locked_at: datetime


#: Response headers that are part of the answer and are replayed with it (a replay answers in
#: the first request's language, whatever the retry's Accept-Language).
REPLAYED_HEADERS = ("location", "etag", "content-language")


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    content_type: str | None
    headers: dict[str, str] | None = None


class Replay(Exception):  # noqa: N818 - control flow, not an error
    """The request was already answered; carry the stored answer out of the dependency."""

    def __init__(self, response: StoredResponse) -> None:
        self.response = response
        super().__init__("idempotent replay")


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidIdempotencyKey(
            f"an Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable ASCII characters "
            "(a UUID is a good choice)",
            detail_zh=f"幂等键须为 1 至 {MAX_KEY_LENGTH} 个可打印 ASCII 字符（建议使用 UUID）",
        )
    return key


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 of method, path (with query) and body; JSON bodies are compared canonically,
    so re-serialising the same object with other spacing or key order is the same request."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
    except (ValueError, UnicodeDecodeError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), b"\n", path.encode(), b"\n", canonical):
        digest.update(part)
    return digest.hexdigest()


async def claim(
    db: Database,
    *,
    principal_id: uuid.UUID,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    now: datetime,
    lock_seconds: int,
    retention_days: int,
) -> Claim:
    """Step 1 of the protocol (module docstring). Raises Replay, 409 or 422 as it says."""
    fresh = {
        "method": method,
        "path": path[:1000],
        "request_hash": fingerprint,
        "state": "in_progress",
        "response_status": None,
        "response_body": None,
        "response_content_type": None,
        "response_headers": None,
        "locked_at": now,
        "completed_at": None,
        "expires_at": now + timedelta(days=retention_days),
    }
    async with db.unit_of_work(write=True) as session:
        record_id = uuid7()
        created = await repository.insert_if_absent(
            session,
            {"id": record_id, "principal_id": principal_id, "key": key, "created_at": now, **fresh},
        )
        if created:
            return Claim(record_id, now)
        record = await repository.get_for_update(session, principal_id, key)
        if record is None:  # pragma: no cover - purged between the two statements
            raise IdempotencyRequestInProgress("the key is being recycled; retry", detail_zh="该幂等键正在回收，请重试")
        if record.expires_at <= now:
            # Past its retention: the key is free again, as a brand-new request.
            if await repository.relock(
                session, record.id, old_locked_at=record.locked_at, values={**fresh, "created_at": now}
            ):
                return Claim(record.id, now)
            raise IdempotencyRequestInProgress()
        if record.request_hash != fingerprint:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was first used for {record.method} {record.path} "
                "with a different body; use a new key for a new request",
                detail_zh=f"幂等键 {key!r} 首次用于 {record.method} {record.path} 时的请求体与本次不同；"
                "新的请求请使用新的幂等键",
            )
        if record.state == "completed":
            assert record.response_status is not None
            raise Replay(
                StoredResponse(
                    record.response_status,
                    record.response_body or b"",
                    record.response_content_type,
                    record.response_headers,
                )
            )
        if record.locked_at > now - timedelta(seconds=lock_seconds):
            raise IdempotencyRequestInProgress(
                f"the first request with Idempotency-Key {key!r} is still running; "
                "retry after it finishes to get its answer",
                detail_zh=f"使用幂等键 {key!r} 的首个请求仍在处理中，请待其完成后重试以获取其结果",
            )
        if await repository.relock(
            session, record.id, old_locked_at=record.locked_at, values={"locked_at": now}
        ):
            return Claim(record.id, now)
        raise IdempotencyRequestInProgress()


async def complete(session: AsyncSession, claim_: Claim, answer: StoredResponse, now: datetime) -> bool:
    """Step 2: store the answer in the caller's transaction; False if the claim was lost."""
    return await repository.complete(
        session,
        claim_.record_id,
        locked_at=claim_.locked_at,
        values={
            "response_status": answer.status,
            "response_body": answer.body,
            "response_content_type": answer.content_type,
            "response_headers": answer.headers or None,
        },
        now=now,
    )


async def store_refusal(db: Database, claim_: Claim, answer: StoredResponse, now: datetime) -> None:
    """A final business refusal is the request's answer too; the refused change rolled back."""
    async with db.unit_of_work(write=True) as session:
        await complete(session, claim_, answer, now)


async def release(db: Database, claim_: Claim) -> None:
    """Step 3: forget the claim so a retry runs afresh."""
    async with db.unit_of_work(write=True) as session:
        await repository.release(session, claim_.record_id, locked_at=claim_.locked_at)


async def purge_expired(session: AsyncSession, now: datetime) -> int:
    """Delete records past their retention (a job; never needed for correctness)."""
    return await repository.purge_expired(session, now)
