"""A provider's pages: look a voucher up by its code and the enterprise's USCC and quote the
subsidy an order would get, and its settlements with their statements to download."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, Request
from starlette.responses import Response

from services.voucher.console.api import Refusal
from services.voucher.console.filing import LINE_FIELDS, form_lines, order_items
from services.voucher.console.redemptions import computation_words
from services.voucher.console.web import PageError, form_key, passthrough, redirect, signed_in
from services.voucher.i18n import msg


def install(console: FastAPI) -> None:
    @console.get("/provider")
    async def lookup_form(request: Request) -> Response:
        page = await signed_in(request, "provider")
        return page.render("provider/lookup.html", values={}, quote=None, error=None, rows=_blank(),
                           result=None, words={})

    @console.post("/provider/lookup")
    async def lookup(request: Request) -> Response:
        """A lookup changes nothing, but sends a code and a USCC: a POST with its CSRF token, so
        neither lands in a URL or a log."""
        page = await signed_in(request, "provider")
        form = await page.form()
        values = {k: str(form.get(k) or "").strip() for k in ("code", "uscc")}
        if not values["code"] or not values["uscc"]:
            return page.render("provider/lookup.html", status=422, values=values, quote=None, rows=_blank(),
                               result=None, words={},
                               error=msg("enter the voucher's code and the enterprise's USCC").render(page.language))
        try:
            quote = await page.api.post("/v1/vouchers/lookup", {"code": values["code"],
                                                                "enterprise_uscc": values["uscc"]})
        except Refusal as refusal:
            if not refusal.for_the_form(page_is_the_resource=False):
                raise
            return page.render("provider/lookup.html", status=refusal.status, values=values, quote=None,
                               rows=_blank(), result=None, words={}, error=refusal.detail)
        return page.render("provider/lookup.html", values=values, quote=quote, error=None, rows=_blank(),
                           result=None, words={})

    @console.post("/provider/quote")
    async def quote(request: Request) -> Response:
        """What a hold for this order would grant now, step by step (POST /v1/redemptions/quote:
        the hold's own code, nothing held or written)."""
        page = await signed_in(request, "provider")
        form = await page.form()
        values = {k: str(form.get(k) or "").strip() for k in ("code", "uscc", "order_reference")}
        lines = form_lines(form, QUOTE_LINES)

        def again(status: int, error: str, found: dict[str, object] | None = None) -> Response:
            return page.render("provider/lookup.html", status=status, values=values, quote=found, rows=lines,
                               error=error, result=None, words=computation_words(page.language))

        try:
            found = await page.api.post("/v1/vouchers/lookup", {"code": values["code"],
                                                                "enterprise_uscc": values["uscc"]})
        except Refusal as refusal:
            if not refusal.for_the_form(page_is_the_resource=False):
                raise
            return again(refusal.status, refusal.detail)
        items, problem = order_items(lines, found["unit"])
        if problem is None and not items:
            problem = msg("enter at least one order line")
        if problem is None and not values["order_reference"]:
            problem = msg("enter the order's reference")
        if problem is not None:
            return again(422, problem.render(page.language), found)
        try:
            result = await page.api.post("/v1/redemptions/quote", {
                "voucher_code": values["code"], "enterprise_uscc": values["uscc"],
                "order_reference": values["order_reference"], "line_items": items})
        except Refusal as refusal:
            if not refusal.for_the_form(page_is_the_resource=False):
                raise
            return again(refusal.status, refusal.detail, found)
        return page.render("provider/lookup.html", values=values, quote=found, rows=lines, error=None,
                           result=result, words=computation_words(page.language))

    @console.get("/provider/settlements")
    async def settlements(request: Request, cursor: str | None = None) -> Response:
        page = await signed_in(request, "provider")
        listing = await page.api.get("/v1/settlements", cursor=cursor, limit=50)
        return page.render("provider/settlements.html", listing=listing)

    async def settlement_page(request: Request, settlement_id: uuid.UUID, *, error: str | None = None,
                              status: int = 200, values: dict[str, str] | None = None) -> Response:
        page = await signed_in(request, "provider")
        found = await page.api.get(f"/v1/settlements/{settlement_id}")
        statement = await page.api.get(f"/v1/settlements/{settlement_id}/statement")
        return page.render("provider/settlement.html", status=status, settlement=found, statement=statement,
                           error=error, form_key=str(uuid.uuid4()), dispute_key=str(uuid.uuid4()),
                           values=values or {})

    @console.get("/provider/settlements/{settlement_id}")
    async def settlement(request: Request, settlement_id: uuid.UUID) -> Response:
        return await settlement_page(request, settlement_id)

    @console.post("/provider/settlements/{settlement_id}/confirm")
    async def confirm(request: Request, settlement_id: uuid.UUID) -> Response:
        page = await signed_in(request, "provider")
        form = await page.form()
        note = str(form.get("note") or "").strip() or None
        try:
            await page.api.post(f"/v1/settlements/{settlement_id}/submit", {"note": note},
                                idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form():
                raise
            return await settlement_page(request, settlement_id, error=refusal.detail, status=refusal.status)
        return redirect(f"/console/provider/settlements/{settlement_id}")

    @console.post("/provider/settlements/{settlement_id}/dispute")
    async def dispute(request: Request, settlement_id: uuid.UUID) -> Response:
        page = await signed_in(request, "provider")
        form = await page.form()
        reason = str(form.get("reason") or "").strip()
        if not reason:
            return await settlement_page(request, settlement_id, status=422, error=msg(
                "give the reason for the dispute").render(page.language))
        try:
            await page.api.post(f"/v1/settlements/{settlement_id}/dispute", {"reason": reason},
                                idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form():
                raise
            return await settlement_page(request, settlement_id, error=refusal.detail, status=refusal.status,
                                         values={"reason": reason})
        return redirect(f"/console/provider/settlements/{settlement_id}")

    @console.get("/provider/settlements/{settlement_id}/statement.{extension}")
    async def statement(request: Request, settlement_id: uuid.UUID, extension: str) -> Response:
        page = await signed_in(request, "provider")
        if extension not in ("csv", "xlsx"):
            raise PageError(404, msg("there is no such page in the console"))
        return passthrough(await page.api.get_raw(f"/v1/settlements/{settlement_id}/statement.{extension}"))


#: Order lines on the quote form.
QUOTE_LINES = 3


def _blank() -> list[dict[str, str]]:
    return [dict.fromkeys(LINE_FIELDS, "") for _ in range(QUOTE_LINES)]
