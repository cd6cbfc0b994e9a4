"""Webhook endpoint health: the API's report (`GET /v1/webhook-endpoints/health`) — each endpoint
the signed-in key may see with its newest success, its newest failed attempt and what it was
answered, what it is still owed, and how many of its newest deliveries in a row have not got
through — and, for the enterprise or provider that registered it, its delivery log with every
attempt. The office sees every tenant's endpoints by their address (scheme, host and port), as
the API shows them; only their owner reads their delivery log.
"""

from __future__ import annotations

import uuid

from fastapi import FastAPI, Request
from starlette.responses import Response

from services.voucher.console.web import ROLE_NAMES, Page, signed_in

DELIVERY_STATUSES = ("pending", "succeeded", "failed", "cancelled")


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
    report = await page.api.get("/v1/webhook-endpoints/health", cursor=cursor, limit=50)
    owners = {kind: ROLE_NAMES[kind].render(page.language) for kind in ("enterprise", "provider")}
    return page.render("webhooks.html", report=report, base=base, owner_view=page.role != "operator",
                       owners=owners)
