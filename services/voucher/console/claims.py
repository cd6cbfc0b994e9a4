"""The programme office's claims (`enterprise_claim` programmes): a list by programme and status,
and one claim with its invoice, lines and documents, taken into review, approved (the held
subsidy or less), rejected with a reason and paid through the API."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, Request
from starlette.responses import Response

from services.voucher.console.api import Refusal
from services.voucher.console.web import PageError, form_key, redirect, signed_in, zone_of
from services.voucher.i18n import msg
from services.voucher.money import parse_major, typed_example

CLAIM_STATUSES = ("submitted", "under_review", "approved", "paid", "rejected")
ACTIONS = ("review", "approve", "reject", "pay")


def install(console: FastAPI) -> None:
    @console.get("/operator/claims")
    async def claims(request: Request, programme_id: str | None = None, status: str | None = None,
                     cursor: str | None = None) -> Response:
        page = await signed_in(request, "operator")
        status = status if status in CLAIM_STATUSES else None
        programme = _uuid_or_none(programme_id)
        listing = await page.api.get("/v1/claims", programme_id=programme, status=status, cursor=cursor, limit=50)
        choices = await page.api.every("/v1/programmes")
        return page.render("operator/claims.html", listing=listing, status_filter=status or "",
                           programme_id=programme or "", statuses=CLAIM_STATUSES,
                           programmes={p["id"]: p for p in choices})

    async def claim_page(request: Request, claim_id: uuid.UUID, *, error: str | None = None, status: int = 200,
                         values: dict[str, str] | None = None) -> Response:
        page = await signed_in(request, "operator")
        found = await page.api.get(f"/v1/claims/{claim_id}")
        programme = await page.api.get(f"/v1/programmes/{found['programme_id']}")
        enterprise = await page.api.get(f"/v1/enterprises/{found['enterprise_id']}")
        provider = await page.api.get(f"/v1/providers/{found['provider_id']}")
        return page.render("operator/claim.html", status=status, claim=found, programme=programme,
                           enterprise=enterprise, provider=provider, error=error, values=values or {},
                           today=page.service_now.astimezone(zone_of(request)).date().isoformat(),
                           form_key=str(uuid.uuid4()))

    @console.get("/operator/claims/{claim_id}")
    async def claim(request: Request, claim_id: uuid.UUID) -> Response:
        return await claim_page(request, claim_id)

    @console.post("/operator/claims/{claim_id}/{action}")
    async def act(request: Request, claim_id: uuid.UUID, action: str) -> Response:
        page = await signed_in(request, "operator")
        if action not in ACTIONS:
            raise PageError(404, msg("there is no such page in the console"))
        form = await page.form()
        values = {k: str(form.get(k) or "").strip() for k in ("amount", "note", "reason", "reference", "paid_on")}
        body: dict[str, object] | None = None
        if action == "approve":
            amount = None
            if values["amount"]:
                current = await page.api.get(f"/v1/claims/{claim_id}")
                try:
                    amount = parse_major(values["amount"], current["unit"])
                except ValueError:
                    return await claim_page(request, claim_id, status=422, values=values, error=msg(
                        "enter the amount to approve in the programme's unit, e.g. {example}",
                        example=typed_example(current["unit"])).render(page.language))
            body = {"amount": amount, "note": values["note"] or None}
        elif action == "reject":
            if not values["reason"]:
                return await claim_page(request, claim_id, status=422, values=values, error=msg(
                    "give the reason for the rejection").render(page.language))
            body = {"reason": values["reason"]}
        elif action == "pay":
            if not values["reference"] or not values["paid_on"]:
                return await claim_page(request, claim_id, status=422, values=values, error=msg(
                    "enter the bank's payment reference and the day it was paid").render(page.language))
            body = {"reference": values["reference"], "paid_on": values["paid_on"]}
        try:
            await page.api.post(f"/v1/claims/{claim_id}/{action}", body, idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form():
                raise
            return await claim_page(request, claim_id, status=refusal.status, values=values, error=refusal.detail)
        return redirect(f"/console/operator/claims/{claim_id}")


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None
