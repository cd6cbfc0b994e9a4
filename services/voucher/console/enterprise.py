"""An enterprise's pages: its vouchers with balances and history, its applications, and applying
with the eligibility dry run shown before the application is submitted."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from services.voucher.console.api import Refusal
from services.voucher.console.web import Page, form_key, redirect, signed_in
from services.voucher.i18n import msg
from services.voucher.money import parse_major, typed_example


def install(console: FastAPI) -> None:
    @console.get("/enterprise")
    async def vouchers(request: Request, cursor: str | None = None) -> Response:
        page = await signed_in(request, "enterprise")
        listing = await page.api.get("/v1/vouchers", cursor=cursor, limit=50)
        return page.render("enterprise/vouchers.html", listing=listing)

    @console.get("/enterprise/vouchers/{voucher_id}")
    async def voucher(request: Request, voucher_id: uuid.UUID, cursor: str | None = None) -> Response:
        page = await signed_in(request, "enterprise")
        found = await page.api.get(f"/v1/vouchers/{voucher_id}")
        history = await page.api.get(f"/v1/vouchers/{voucher_id}/history", cursor=cursor, limit=100)
        return page.render("enterprise/voucher.html", voucher=found, history=history)

    @console.get("/enterprise/applications")
    async def applications(request: Request, cursor: str | None = None) -> Response:
        page = await signed_in(request, "enterprise")
        listing = await page.api.get("/v1/applications", cursor=cursor, limit=50)
        return page.render("enterprise/applications.html", listing=listing)

    @console.get("/enterprise/applications/{application_id}")
    async def application(request: Request, application_id: uuid.UUID) -> Response:
        page = await signed_in(request, "enterprise")
        found = await page.api.get(f"/v1/applications/{application_id}")
        history = await page.api.get(f"/v1/applications/{application_id}/history")
        programme = await page.api.get(f"/v1/programmes/{found['programme_id']}")
        return page.render("enterprise/application.html", application=found, history=history, programme=programme)

    @console.get("/enterprise/apply")
    async def apply_form(request: Request) -> Response:
        page = await signed_in(request, "enterprise")
        return await _apply_page(page, {})

    @console.post("/enterprise/apply/check")
    async def check(request: Request) -> Response:
        """The dry run of the filled-in form: the verdict the application would get now."""
        page = await signed_in(request, "enterprise")
        form = await page.form()
        values, read = await _application_form(page, form)
        if isinstance(read, Response):
            return read
        programme, amount = read
        try:
            verdict = await page.api.post("/v1/applications/dry-run",
                                          {"programme_id": programme["id"], "requested_amount": amount})
        except Refusal as refusal:
            if not refusal.for_the_form(page_is_the_resource=False):
                raise
            return await _apply_page(page, values, error=refusal.detail, status=refusal.status)
        return await _apply_page(page, values, verdict=verdict, amount=amount, programme=programme)

    @console.post("/enterprise/apply")
    async def apply(request: Request) -> Response:
        page = await signed_in(request, "enterprise")
        form = await page.form()
        values, read = await _application_form(page, form)
        if isinstance(read, Response):
            return read
        programme, amount = read
        try:
            created = await page.api.post("/v1/applications", {
                "programme_id": programme["id"], "requested_amount": amount, "purpose": values["purpose"]},
                idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form(page_is_the_resource=False):
                raise
            return await _apply_page(page, values, error=refusal.detail, status=refusal.status)
        return redirect(f"/console/enterprise/applications/{created['id']}")


async def _application_form(
    page: Page, form: Any,
) -> tuple[dict[str, str], tuple[dict[str, Any], int] | Response]:
    """The apply form's values and, when they read, its open programme and amount in minor units;
    else the apply page again saying what is wrong (the check and the submission read it alike)."""
    values = {k: str(form.get(k) or "").strip() for k in ("programme_id", "amount", "purpose")}
    programme = (await _open_programmes(page)).get(values["programme_id"])
    if programme is None:
        return values, await _apply_page(page, values, status=422,
                                         error=msg("choose an open programme").render(page.language))
    try:
        return values, (programme, parse_major(values["amount"], programme["unit"]))
    except ValueError:
        return values, await _apply_page(page, values, status=422, error=msg(
            "enter the amount in the programme's unit, e.g. {example}",
            example=typed_example(programme["unit"])).render(page.language))


async def _open_programmes(page: Page) -> dict[str, dict[str, Any]]:
    listing = await page.api.every("/v1/programmes", status="open")
    return {p["id"]: p for p in listing}


async def _apply_page(page: Page, values: dict[str, str], *, error: str | None = None, status: int = 200,
                      verdict: object = None, amount: int | None = None, programme: object = None) -> Response:
    programmes = await _open_programmes(page)
    partial = page.request.headers.get("hx-request") == "true"
    template = "enterprise/dry_run.html" if partial else "enterprise/apply.html"
    # htmx swaps only a 2xx answer in: the partial that says what is wrong is sent as one.
    return page.render(template, status=200 if partial else status, programmes=list(programmes.values()), values=values, error=error,
                       verdict=verdict, amount=amount, programme=programme, form_key=str(uuid.uuid4()))
