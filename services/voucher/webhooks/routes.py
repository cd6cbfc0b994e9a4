"""Webhook endpoints over HTTP: an enterprise or a provider manages its own; nobody else sees
them, but for their delivery health, which the programme office reads too (no path, no secret)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Response

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.db import encode_cursor
from services.voucher.http.auth import require
from services.voucher.http.conditional import check_if_match, etag
from services.voucher.http.deps import Now, Session, get_settings
from services.voucher.http.idempotency import idempotent
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.settings import Settings
from services.voucher.tables import WebhookEndpoint
from services.voucher.webhooks import service
from services.voucher.webhooks.schemas import (
    DeliveryPublic,
    EndpointHealth,
    WebhookEndpointCreate,
    WebhookEndpointPublic,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])
Owner = Annotated[Actor, Depends(require(Scope.WEBHOOKS_MANAGE))]
EventsReader = Annotated[Actor, Depends(require(Scope.EVENTS_READ))]
Config = Annotated[Settings, Depends(get_settings)]
_IDEMPOTENT = (errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress)
#: A retry of a creation or a rotation replays an answer kept sealed (docs/security.md).
_REPLAYS_A_SECRET = (*_IDEMPOTENT, errors.SecretUnavailable, errors.SecretAnswerWithdrawn)


def _public(endpoint: WebhookEndpoint, response: Response | None = None) -> WebhookEndpointPublic:
    if response is not None:
        response.headers["ETag"] = etag(endpoint.version)
    return WebhookEndpointPublic.model_validate(endpoint, from_attributes=True)


def _with_secret(made: tuple[WebhookEndpoint, str], response: Response) -> WebhookEndpointWithSecret:
    """The endpoint with its new secret in the clear (the row keeps it sealed)."""
    endpoint, secret = made
    response.headers["ETag"] = etag(endpoint.version)
    response.headers["Cache-Control"] = "no-store"
    return WebhookEndpointWithSecret.model_validate(endpoint, from_attributes=True).model_copy(update={"secret": secret})


def _delivery(row: dict[str, Any]) -> DeliveryPublic:
    return DeliveryPublic.model_validate(row)


@router.post(
    "",
    operation_id="create_webhook_endpoint",
    summary="Register a webhook endpoint for yourself (its signing secret is shown only now)",
    description="An enterprise or a provider (`webhooks:manage`) registers an endpoint for its own events, "
    "optionally only some event types; the signing secret is in this answer only (a retry with the same "
    "Idempotency-Key within a day gets it again; after the day, `idempotent_answer_withdrawn` naming the endpoint, "
    "and nothing is registered again). Stores the endpoint and records "
    "the audit event `webhook_endpoint.created`; the worker delivers later events to it, signed and retried. "
    "Refused with `webhook_url_refused` (not https, carrying credentials, or not a public address), "
    "`too_many_webhook_endpoints` (an owner keeps at most `VOUCHER_MAX_WEBHOOK_ENDPOINTS_PER_OWNER`, 16 by "
    "default, paused ones included), `validation_failed` or an Idempotency-Key conflict.",
    status_code=201,
    response_model=WebhookEndpointWithSecret,
    responses=responses(*AUTH_ERRORS, errors.WebhookUrlRefused, errors.TooManyWebhookEndpoints, errors.ValidationFailed,
                        *_REPLAYS_A_SECRET),
    dependencies=[Depends(idempotent(Scope.WEBHOOKS_MANAGE))],
)
async def create_webhook_endpoint(
    body: WebhookEndpointCreate, session: Session, now: Now, actor: Owner, settings: Config, response: Response
) -> WebhookEndpointWithSecret:
    made = await service.create(session, actor, body.model_dump(mode="json"), settings, now)
    response.headers["Location"] = f"/v1/webhook-endpoints/{made[0].id}"
    return _with_secret(made, response)


@router.get(
    "",
    operation_id="list_webhook_endpoints",
    summary="List your webhook endpoints",
    description="An enterprise or a provider (`webhooks:manage`) lists its own endpoints, never their secrets; "
    "changes nothing. Answers `invalid_cursor` for a cursor this service did not issue.",
    response_model=Page[WebhookEndpointPublic],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_webhook_endpoints(session: Session, actor: Owner, page: Paging) -> Page[WebhookEndpointPublic]:
    rows, last = await service.list_endpoints(session, actor, page)
    return Page(items=[_public(e) for e in rows], next_cursor=encode_cursor(last) if last else None)


@router.get(
    "/health",
    operation_id="webhook_health",
    summary="How webhook deliveries are going, endpoint by endpoint",
    description="The programme office and auditors (`events:read`) see every enterprise's and provider's "
    "endpoints — their addresses (scheme, host and port), never their paths, queries or secrets; an enterprise or "
    "a provider sees its own. For each: its newest success, its newest failed attempt and what it was answered, "
    "the deliveries it is still owed, and how many of its newest deliveries in a row have not got through. "
    "Changes nothing. Answers `invalid_cursor` for a cursor this service did not issue.",
    response_model=Page[EndpointHealth],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def webhook_health(session: Session, actor: EventsReader, page: Paging) -> Page[EndpointHealth]:
    rows, last = await service.health(session, actor, page)
    return Page(items=[EndpointHealth.model_validate(r) for r in rows],
                next_cursor=encode_cursor(last) if last else None)


@router.get(
    "/{endpoint_id}",
    operation_id="get_webhook_endpoint",
    summary="Read one of your webhook endpoints (never its secret)",
    description="An enterprise or a provider (`webhooks:manage`) reads one of its endpoints, never its secret; the "
    "`ETag` header is the version to send as `If-Match`. Changes nothing. Answers `not_found` when the endpoint "
    "does not exist or is not yours.",
    response_model=WebhookEndpointPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_webhook_endpoint(
    endpoint_id: uuid.UUID, session: Session, actor: Owner, response: Response
) -> WebhookEndpointPublic:
    return _public(await service.get(session, actor, endpoint_id), response)


@router.patch(
    "/{endpoint_id}",
    operation_id="update_webhook_endpoint",
    summary="Change an endpoint's URL, event types, description, or enable/disable it (If-Match required)",
    description="The endpoint's owner (`webhooks:manage`) changes its URL, event types or description, or disables "
    "or enables it, sending the ETag it read as `If-Match`; a new URL is checked as at registration. Records the "
    "audit event `webhook_endpoint.updated`. Refused with `not_found`, `webhook_url_refused`, "
    "`precondition_failed` (changed since you read it) or `precondition_required` (no If-Match).",
    response_model=WebhookEndpointPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.WebhookUrlRefused, errors.PreconditionFailed,
                        errors.PreconditionRequired),
)
async def update_webhook_endpoint(
    endpoint_id: uuid.UUID,
    body: WebhookEndpointUpdate,
    session: Session,
    now: Now,
    actor: Owner,
    settings: Config,
    response: Response,
    if_match: Annotated[str | None, Header(description="The ETag you read.")] = None,
) -> WebhookEndpointPublic:
    endpoint = await service.update(
        session, actor, endpoint_id, body.model_dump(mode="json", exclude_unset=True),
        check_version=lambda version: check_if_match(if_match, version), settings=settings, now=now,
    )
    return _public(endpoint, response)


@router.delete(
    "/{endpoint_id}",
    operation_id="delete_webhook_endpoint",
    summary="Delete an endpoint: nothing more is sent to it and its pending deliveries are cancelled",
    description="The endpoint's owner (`webhooks:manage`) deletes it: nothing more is sent to it and its pending "
    "deliveries are cancelled; the row is kept, hidden, for the audit trail. Records the audit event "
    "`webhook_endpoint.deleted`. Answers `not_found` when the endpoint does not exist or is not yours.",
    status_code=204,
    response_class=Response,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def delete_webhook_endpoint(endpoint_id: uuid.UUID, session: Session, now: Now, actor: Owner) -> Response:
    await service.delete(session, actor, endpoint_id, now)
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/secret-rotations",
    operation_id="rotate_webhook_secret",
    summary="Rotate the signing secret (the old one keeps signing for 24 hours alongside the new)",
    description="The endpoint's owner (`webhooks:manage`) gets a new signing secret, shown in this answer only (a "
    "retry with the same Idempotency-Key within a day gets it again; after the day, `idempotent_answer_withdrawn`, "
    "and the secret is not rotated again); "
    "for 24 hours the old secret signs alongside the new one, so the receiver can switch without losing a "
    "delivery. Records the audit event `webhook_endpoint.secret_rotated`. Refused with `not_found` or an "
    "Idempotency-Key conflict.",
    response_model=WebhookEndpointWithSecret,
    responses=responses(*AUTH_ERRORS, errors.NotFound, *_REPLAYS_A_SECRET),
    dependencies=[Depends(idempotent(Scope.WEBHOOKS_MANAGE))],
)
async def rotate_webhook_secret(
    endpoint_id: uuid.UUID, session: Session, now: Now, actor: Owner, settings: Config, response: Response
) -> WebhookEndpointWithSecret:
    return _with_secret(await service.rotate_secret(session, actor, endpoint_id, settings, now), response)


@router.get(
    "/{endpoint_id}/deliveries",
    operation_id="list_webhook_deliveries",
    summary="The endpoint's delivery log, newest first, each delivery with its attempts",
    description="The endpoint's owner (`webhooks:manage`) reads its delivery log, newest first, each delivery with "
    "its attempts; filter by status. Changes nothing. Answers `not_found` for an endpoint that is not yours and "
    "`invalid_cursor` for a cursor this service did not issue.",
    response_model=Page[DeliveryPublic],
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidCursor),
)
async def list_webhook_deliveries(
    endpoint_id: uuid.UUID, session: Session, actor: Owner, page: Paging,
    status: Annotated[Literal["pending", "succeeded", "failed", "cancelled"] | None, Query()] = None,
) -> Page[DeliveryPublic]:
    rows, last = await service.deliveries(session, actor, endpoint_id, page, status)
    return Page(items=[_delivery(r) for r in rows], next_cursor=encode_cursor(last) if last else None)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliveries",
    operation_id="redeliver_webhook",
    summary="Send a delivery again now, with a fresh round of retries (same webhook-id)",
    description="The endpoint's owner (`webhooks:manage`) queues a delivery again now, with a fresh round of "
    "retries and the same `webhook-id`, so a receiver that already has it can tell. The delivery is reset to "
    "pending, the worker sends it, and the audit event `webhook_delivery.redelivered` is recorded. Refused with "
    "`not_found` (endpoint or delivery), `webhook_endpoint_disabled` or an Idempotency-Key conflict.",
    status_code=202,
    response_model=DeliveryPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.WebhookEndpointDisabled, *_IDEMPOTENT),
    dependencies=[Depends(idempotent(Scope.WEBHOOKS_MANAGE))],
)
async def redeliver_webhook(
    endpoint_id: uuid.UUID, delivery_id: uuid.UUID, session: Session, now: Now, actor: Owner
) -> DeliveryPublic:
    return _delivery(await service.redeliver(session, actor, endpoint_id, delivery_id, now))
