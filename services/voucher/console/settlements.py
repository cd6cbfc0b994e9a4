"""The programme office's settlements: a list by programme and status, and one settlement with
its statement lines, approved, answered (a dispute), cancelled or paid through the API; its
statement downloaded as the provider downloads it."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, Request
from starlette.responses import Response

from services.voucher.console.api import Refusal
from services.voucher.console.web import (
    PageError,
    form_key,
    passthrough,
    redirect,
    signed_in,
    zone_of,
)
from services.voucher.i18n import msg

SETTLEMENT_STATUSES = ("draft", "submitted", "disputed", "approved", "paid", "cancelled")
#: Each action: its API path and whether it needs a reason (the API's `Reason` body) rather
#: than an optional note.
ACTIONS = {"approve": "note", "resolve": "reason", "cancel": "reason"}


def install(console: FastAPI) -> None:
    async def list_page(request: Request, programme_id: str | None = None, status: str | None = None,
                        cursor: str | None = None, *, error: str | None = None, code: int = 200,
                        values: dict[str, str] | None = None) -> Response:
        page = await signed_in(request, "operator")
        status = status if status in SETTLEMENT_STATUSES else None
        programme = _uuid_or_none(programme_id)
        listing = await page.api.get("/v1/settlements", programme_id=programme, status=status, cursor=cursor,
                                     limit=50)
        choices = await page.api.every("/v1/programmes")
        providers = await page.api.every("/v1/providers")
        return page.render("operator/settlements.html", status=code, listing=listing, status_filter=status or "",
                           programme_id=programme or "", statuses=SETTLEMENT_STATUSES,
                           programmes={p["id"]: p for p in choices},
                           providers={p["id"]: p for p in providers}, error=error, values=values or {},
                           form_key=str(uuid.uuid4()))

    @console.get("/operator/settlements")
    async def settlements(request: Request, programme_id: str | None = None, status: str | None = None,
                          cursor: str | None = None) -> Response:
        return await list_page(request, programme_id, status, cursor)

    @console.post("/operator/settlements")
    async def create(request: Request) -> Response:
        """A draft of one provider's captures and refunds of one programme for whole days; which
        lines it takes, and whether there is anything to settle, is the API's to say."""
        page = await signed_in(request, "operator")
        form = await page.form()
        values = {k: str(form.get(k) or "").strip() for k in ("new_programme_id", "provider_id", "period_start",
                                                                "period_end")}
        if not all(values.values()):
            return await list_page(request, code=422, values=values, error=msg(
                "choose the programme and the provider and enter the first and last day").render(page.language))
        try:
            created = await page.api.post("/v1/settlements", {
                "programme_id": values["new_programme_id"], "provider_id": values["provider_id"],
                "period_start": values["period_start"], "period_end": values["period_end"]},
                idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form(page_is_the_resource=False):
                raise
            return await list_page(request, code=refusal.status, values=values, error=refusal.detail)
        return redirect(f"/console/operator/settlements/{created['id']}")

    async def settlement_page(request: Request, settlement_id: uuid.UUID, *, error: str | None = None,
                              status: int = 200, values: dict[str, str] | None = None) -> Response:
        page = await signed_in(request, "operator")
        found = await page.api.get(f"/v1/settlements/{settlement_id}")
        statement = await page.api.get(f"/v1/settlements/{settlement_id}/statement")
        programme = await page.api.get(f"/v1/programmes/{found['programme_id']}")
        provider = await page.api.get(f"/v1/providers/{found['provider_id']}")
        return page.render("operator/settlement.html", status=status, settlement=found, statement=statement,
                           programme=programme, provider=provider, error=error, values=values or {},
                           today=page.service_now.astimezone(zone_of(request)).date().isoformat(),
                           form_key=str(uuid.uuid4()))

    @console.get("/operator/settlements/{settlement_id}")
    async def settlement(request: Request, settlement_id: uuid.UUID) -> Response:
        return await settlement_page(request, settlement_id)

    @console.post("/operator/settlements/{settlement_id}/{action}")
    async def act(request: Request, settlement_id: uuid.UUID, action: str) -> Response:
        page = await signed_in(request, "operator")
        if action not in (*ACTIONS, "pay"):
            raise PageError(404, msg("there is no such page in the console"))
        form = await page.form()
        if action == "pay":
            values = {k: str(form.get(k) or "").strip() for k in ("reference", "paid_on")}
            if not values["reference"] or not values["paid_on"]:
                return await settlement_page(request, settlement_id, status=422, values=values, error=msg(
                    "enter the bank's payment reference and the day it was paid").render(page.language))
            body: dict[str, str | None] = {"reference": values["reference"], "paid_on": values["paid_on"]}
        elif ACTIONS[action] == "reason":
            reason = str(form.get("reason") or "").strip()
            if not reason:
                return await settlement_page(request, settlement_id, status=422, error=msg(
                    "give the reason").render(page.language))
            body, values = {"reason": reason}, {}
        else:
            body, values = {"note": str(form.get("note") or "").strip() or None}, {}
        try:
            await page.api.post(f"/v1/settlements/{settlement_id}/{action}", body, idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form():
                raise
            return await settlement_page(request, settlement_id, status=refusal.status, values=values,
                                         error=refusal.detail)
        return redirect(f"/console/operator/settlements/{settlement_id}")

    @console.get("/operator/settlements/{settlement_id}/statement.{extension}")
    async def statement(request: Request, settlement_id: uuid.UUID, extension: str) -> Response:
        page = await signed_in(request, "operator")
        if extension not in ("csv", "xlsx"):
            raise PageError(404, msg("there is no such page in the console"))
        return passthrough(await page.api.get_raw(f"/v1/settlements/{settlement_id}/statement.{extension}"))


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None
