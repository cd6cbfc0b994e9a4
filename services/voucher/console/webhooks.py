"""Webhook endpoint health: the endpoints the signed-in key may see (`GET /v1/webhook-endpoints`),
each with what its recent deliveries say — the last success, the last failed attempt and how
many deliveries in a row have not got through — and one endpoint's delivery log with every
attempt.

The API shows endpoints only to the enterprise or provider that registered them (the scope
`webhooks:manage`, which the office's keys do not hold): the enterprise's and provider's pages
show theirs, and the office's page says that the API shows it none rather than guess.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from services.voucher.console.api import Refusal
from services.voucher.console.web import Page, signed_in

#: How many of an endpoint's newest deliveries its health is read from.
RECENT = 50
DELIVERY_STATUSES = ("pending", "succeeded", "failed", "cancelled")


@dataclass
class Health:
    """What an endpoint's newest deliveries say about it."""

    last_success: str | None  # when the newest successful delivery got through
    last_failure: str | None  # when the newest failed attempt was made
    failure_status: int | None  # what that attempt was answered (None: no answer)
    failure_error: str | None
    streak: int  # the newest deliveries in a row that were tried and have not got through
    streak_is_more: bool  # every delivery read is in the streak: there may be more


def health(recent: list[dict[str, Any]], last_succeeded: dict[str, Any] | None,
           last_failed: dict[str, Any] | None) -> Health:
    """From the newest deliveries (newest first, with their attempts), and the newest succeeded
    and failed (given up) delivery the API lists: a delivery not yet tried, or cancelled, is
    neither a success nor a failure."""
    attempts = [a for d in recent for a in d["attempt_log"] if not _answered_2xx(a)]
    if not attempts and last_failed is not None:
        attempts = [a for a in last_failed["attempt_log"] if not _answered_2xx(a)]
    newest_failure = max(attempts, key=lambda a: _instant(a["attempted_at"]), default=None)
    streak = 0
    for delivery in recent:
        if delivery["status"] == "succeeded":
            break
        if delivery["status"] == "cancelled" or not delivery["attempt_log"]:
            continue
        streak += 1
    every = bool(recent) and len(recent) >= RECENT and all(d["status"] != "succeeded" for d in recent)
    return Health(
        last_success=last_succeeded["delivered_at"] if last_succeeded else None,
        last_failure=newest_failure["attempted_at"] if newest_failure else None,
        failure_status=newest_failure["status_code"] if newest_failure else None,
        failure_error=newest_failure["error"] if newest_failure else None,
        streak=streak, streak_is_more=every,
    )


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _answered_2xx(attempt: dict[str, Any]) -> bool:
    code = attempt.get("status_code")
    return code is not None and 200 <= code < 300


def install(console: FastAPI) -> None:
    for role in ("enterprise", "provider", "operator"):
        _install_for(console, role)


def _install_for(console: FastAPI, role: str) -> None:
    async def endpoints(request: Request, cursor: str | None = None) -> Response:
        page = await signed_in(request, role)
        return await _endpoints_page(page, cursor)

    console.add_api_route(f"/{role}/webhooks", endpoints, methods=["GET"])
    if role == "operator":
        return

    async def endpoint(request: Request, endpoint_id: uuid.UUID, status: str | None = None,
                       cursor: str | None = None) -> Response:
        page = await signed_in(request, role)
        found = await page.api.get(f"/v1/webhook-endpoints/{endpoint_id}")
        status = status if status in DELIVERY_STATUSES else None
        deliveries = await page.api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", status=status,
                                        cursor=cursor, limit=50)
        return page.render("webhook.html", endpoint=found, deliveries=deliveries, status_filter=status or "",
                           statuses=DELIVERY_STATUSES, base=f"/console/{role}/webhooks")

    console.add_api_route(f"/{role}/webhooks/{{endpoint_id}}", endpoint, methods=["GET"])


async def _endpoints_page(page: Page, cursor: str | None) -> Response:
    base = f"/console/{page.role}/webhooks"
    try:
        listing = await page.api.get("/v1/webhook-endpoints", cursor=cursor, limit=50)
    except Refusal as refusal:
        if refusal.status != 403:
            raise
        # The office's keys cannot read endpoints: the page says so in the API's words too.
        return page.render("webhooks.html", listing=None, rows=[], refused=refusal.detail, base=base)
    rows = []
    for item in listing["items"]:
        path = f"/v1/webhook-endpoints/{item['id']}/deliveries"
        recent = (await page.api.get(path, limit=RECENT))["items"]
        succeeded = (await page.api.get(path, status="succeeded", limit=1))["items"]
        failed = (await page.api.get(path, status="failed", limit=1))["items"]
        rows.append((item, health(recent, succeeded[0] if succeeded else None, failed[0] if failed else None)))
    return page.render("webhooks.html", listing=listing, rows=rows, refused=None, base=base, recent=RECENT)
