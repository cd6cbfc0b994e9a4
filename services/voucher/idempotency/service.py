"""Idempotency-Key: a repeated request returns the first answer and moves value once.

Protocol (per principal and key), all of it inside the request's own transaction:
1. claim — first thing in the transaction: take the key's lock (a transaction-scoped advisory
   lock on PostgreSQL; SQLite's one writer already serialises), then read the key's record.
   None (or one past its retention): the request runs. Completed: the stored answer is
   replayed; the same key with another path or body is refused (422). A second request with
   the key while the first still runs waits on the lock, then finds the first's answer and
   replays it; if the first failed, nothing of it was kept and the second runs afresh.
2. complete — the answer is inserted in the same transaction as the changes it answers for,
   sent with the COMMIT: both are kept or neither is.
3. A business refusal is an answer too: its transaction rolls back whatever was begun, and the
   refusal is stored by a transaction of its own that claims the key again — if another
   attempt answered in between, that answer is the key's and is replayed instead.
Failures that should not be replayed (5xx, a lost race, malformed input) store nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher import secretbox
from services.voucher.db import Database, dialect_name
from services.voucher.driver import Batch
from services.voucher.errors import (
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    SecretAnswerWithdrawn,
    SecretUnavailable,
)
from services.voucher.i18n import msg
from services.voucher.idempotency import repository
from services.voucher.ids import uuid7

log = logging.getLogger("voucher.idempotency")

MAX_KEY_LENGTH = 255
MAX_PATH_LENGTH = 1000


@dataclass(frozen=True)
class Claim:
    """A key this transaction holds: what to store with its answer."""

    principal_id: uuid.UUID
    key: str
    method: str
    path: str
    fingerprint: str
    now: datetime
    retention_days: int
    dialect: str
    #: A record past its retention is replaced by this request's answer.
    replaces: bool = False
    #: Keep the answer at least until this time plus the retention (a move of the sandbox clock
    #: answers at the time before the move: its record must outlive the time after it).
    kept_from: datetime | None = None


#: Response headers that are part of the answer and are replayed with it (a replay answers in
#: the first request's language, whatever the retry's Accept-Language; an answer that carries a secret
#: is as uncacheable when replayed: Cache-Control: no-store).
REPLAYED_HEADERS = ("location", "etag", "content-language", "cache-control")


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    content_type: str | None
    headers: dict[str, str] | None = None
    #: A stored answer read back: what its body is sealed for, if it carries a secret (`opened`).
    sealed_for: str | None = None


class Replay(Exception):  # noqa: N818 - control flow, not an error
    """The request was already answered; carry the stored answer out of the dependency."""

    def __init__(self, response: StoredResponse) -> None:
        self.response = response
        super().__init__("idempotent replay")


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidIdempotencyKey(msg(
            "an Idempotency-Key is 1 to {max_length} printable ASCII characters "
            "(a UUID is a good choice)",
            max_length=MAX_KEY_LENGTH,
        ))
    return key


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 of method, path (with query) and body; JSON bodies are compared canonically,
    so re-serialising the same object with other spacing or key order is the same request. A
    body that is not JSON — or nested too deep for Python's parser, which the request's own
    validation refuses later — is compared byte for byte."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
    except (ValueError, UnicodeDecodeError, RecursionError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), b"\n", path.encode(), b"\n", canonical):
        digest.update(part)
    return digest.hexdigest()


def lock_key(principal_id: uuid.UUID, key: str) -> int:
    """The key's advisory lock: 64 bits of SHA-256 (a collision only makes two unrelated
    requests wait for each other)."""
    digest = hashlib.sha256(principal_id.bytes + key.encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


#: For `driver.send_first`: a claim sent with the first reads whose key's lock waited too long
#: answers `idempotency_request_in_progress`, as a claim sent on its own does.
failed_with_reads = repository.failed_with_reads


def claim_batch(
    session: AsyncSession,
    *,
    principal_id: uuid.UUID,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    now: datetime,
    retention_days: int,
) -> tuple[Batch, Callable[[], Claim]]:
    """Step 1 of the protocol (module docstring), as statements to run in `session`'s
    transaction and what to do with their results: that raises Replay or 422 as it says, or
    returns the claim."""
    path = path[:MAX_PATH_LENGTH]
    batch, found = repository.lock_and_read(session, lock_key(principal_id, key), principal_id, key)
    dialect = dialect_name(session)

    def settle() -> Claim:
        record = repository.record_of(found)
        replaces = False
        if record is not None:
            if record.expires_at <= now or record.state != "completed":
                # Past its retention (or a claim left by the protocol before 0009): free again.
                replaces = True
            elif (record.method, record.path) != (method, path):
                raise IdempotencyKeyReused(
                    msg("Idempotency-Key {key!r} was first used for {method} {path}; "
                        "use a new key for a new request", key=key, method=record.method, path=record.path),
                    first_used_for=f"{record.method} {record.path}",
                )
            elif record.request_hash != fingerprint:
                raise IdempotencyKeyReused(
                    msg("Idempotency-Key {key!r} was first used for {method} {path} "
                        "with a different body; use a new key for a new request",
                        key=key, method=record.method, path=record.path),
                    first_used_for=f"{record.method} {record.path}",
                )
            else:
                assert record.response_status is not None
                stored = StoredResponse(record.response_status, record.response_body or b"",
                                        record.response_content_type, record.response_headers,
                                        secretbox.stored_answer_purpose(principal_id, key))
                if carries_secret(stored) and (not record.response_body or record.completed_at is None
                                               or now >= record.completed_at + SECRET_ANSWER_RETENTION):
                    raise SecretAnswerWithdrawn(
                        msg("the request with Idempotency-Key {key!r} succeeded at {at}; its answer held a secret, "
                            "kept for one day only, and is not sent again, nor is the request run again",
                            key=key, at=record.completed_at),
                        location=(record.response_headers or {}).get("location"))
                raise Replay(stored)
        return Claim(principal_id, key, method, path, fingerprint, now, retention_days, dialect, replaces)

    return batch, settle


async def claim(session: AsyncSession, **fields: Any) -> Claim:
    """Step 1, run on its own (`claim_batch` for the fields)."""
    batch, settle = claim_batch(session, **fields)
    await repository.run(session, batch)
    return settle()


#: How long an answer that carries a secret (a webhook endpoint's signing secret, on creation
#: and rotation: sent with Cache-Control: no-store) is kept for a retry that lost it: long
#: enough for any retry, not months of a secret readable in a second table. The record itself
#: is kept for the whole retention, without the body after this: a retry after it is refused
#: (`SecretAnswerWithdrawn`), not run again.
SECRET_ANSWER_RETENTION = timedelta(days=1)


def carries_secret(answer: StoredResponse) -> bool:
    return "no-store" in (answer.headers or {}).get("cache-control", "").lower()


def sealed(answer: StoredResponse, claim_: Claim, box: secretbox.Keyring) -> StoredResponse:
    """The answer as it is stored: one that carries a secret has its body sealed for this
    principal's key (docs/security.md, "Sealed secrets"); any other, as it is."""
    if not carries_secret(answer):
        return answer
    purpose = secretbox.stored_answer_purpose(claim_.principal_id, claim_.key)
    return dataclasses.replace(answer, body=box.seal_bytes(answer.body, purpose))


def opened(answer: StoredResponse, box: secretbox.Keyring) -> StoredResponse:
    """A stored answer as it is sent again: a sealed body opened (one stored before sealing
    existed is sent as it is); 503 `secret_unavailable` if no configured key opens it."""
    if answer.sealed_for is None or not carries_secret(answer) or not secretbox.is_sealed(answer.body):
        return answer
    try:
        body = box.open_bytes(answer.body, answer.sealed_for)
    except secretbox.CannotOpen as exc:
        log.error("a stored answer that carries a secret was not sent again: %s", exc)
        raise SecretUnavailable() from exc
    return dataclasses.replace(answer, body=body, sealed_for=None)


def completion(claim_: Claim, answer: StoredResponse) -> Batch:
    """Step 2: the statements that store the answer, to send with the COMMIT."""
    now = claim_.now
    kept = timedelta(days=claim_.retention_days)
    return repository.store({
        "id": uuid7(), "principal_id": claim_.principal_id, "key": claim_.key, "method": claim_.method,
        "path": claim_.path, "request_hash": claim_.fingerprint, "state": "completed",
        "response_status": answer.status, "response_body": answer.body,
        "response_content_type": answer.content_type, "response_headers": answer.headers or None,
        "created_at": now, "locked_at": now, "completed_at": now,
        "expires_at": max(now, claim_.kept_from or now) + kept,
    }, replaces=claim_.replaces, dialect=claim_.dialect)


async def store_refusal(db: Database, claim_: Claim, answer: StoredResponse) -> StoredResponse:
    """Step 3: store a refusal in a transaction of its own (the refused one rolled back). If
    another attempt with the key answered meanwhile, its answer is the key's: returned, and
    nothing is stored."""
    async with db.writer(), db.session(write=True) as session:
        try:
            again = await claim(session, principal_id=claim_.principal_id, key=claim_.key, method=claim_.method,
                                path=claim_.path, fingerprint=claim_.fingerprint, now=claim_.now,
                                retention_days=claim_.retention_days)
        except Replay as replay:
            return replay.response
        await db.commit(session, completion(again, answer))
        return answer


async def purge_expired(session: AsyncSession, now: datetime) -> int:
    """Delete records past their retention, and empty the answers that carry a secret once
    their day is over (a job: a replay judges the day by itself, so the secret is never sent
    after it; the job keeps it from staying in the table)."""
    purged = await repository.purge_expired(session, now)
    return purged + await repository.withdraw_bodies(
        session, WEBHOOK_ANSWER_PATHS, now - SECRET_ANSWER_RETENTION,
        keep=lambda record: not carries_secret(StoredResponse(record.response_status or 0, b"", None,
                                                               record.response_headers)))


#: The only answers that carry a secret: a webhook endpoint's creation and its rotations.
WEBHOOK_ANSWER_PATHS = "/v1/webhook-endpoints%"


async def reseal(session: AsyncSession, box: secretbox.Keyring) -> tuple[int, list[str]]:
    """Seal every stored answer that carries a secret under the current key (`voucher secrets
    reseal`); as `webhooks.reseal`, returns how many changed and what did not open."""
    changed, unreadable = 0, []
    for record in await repository.answers_under(session, WEBHOOK_ANSWER_PATHS):
        answer = StoredResponse(record.response_status or 0, record.response_body or b"",
                                record.response_content_type, record.response_headers)
        if not carries_secret(answer) or box.current_for(answer.body):
            continue
        purpose = secretbox.stored_answer_purpose(record.principal_id, record.key)
        try:
            record.response_body = box.seal_bytes(box.open_bytes(answer.body, purpose), purpose)
        except secretbox.CannotOpen as exc:
            unreadable.append(f"stored answer {record.id}: {exc}")
            continue
        changed += 1
    await session.flush()
    return changed, unreadable
