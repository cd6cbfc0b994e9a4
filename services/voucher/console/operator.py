"""The programme office's pages: programmes and their dashboard, the application review
queue, and bulk issue from a spreadsheet with a preview before anything is written."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from services.voucher.console import bulk, dashboard
from services.voucher.console.api import Refusal
from services.voucher.console.web import Page, PageError, form_key, redirect, script_json, signed_in
from services.voucher.i18n import msg
from services.voucher.money import parse_major, typed_example

APPLICATION_STATUSES = ("submitted", "under_review", "approved", "publicity", "issued", "rejected",
                        "ineligible", "withdrawn")


def install(console: FastAPI) -> None:
    @console.get("/operator")
    async def programmes(request: Request, cursor: str | None = None) -> Response:
        page = await signed_in(request, "operator")
        listing = await page.api.get("/v1/programmes", cursor=cursor, limit=50)
        return page.render("operator/programmes.html", listing=listing)

    @console.get("/operator/programmes/{programme_id}")
    async def programme_dashboard(request: Request, programme_id: uuid.UUID) -> Response:
        page = await signed_in(request, "operator")
        board = await dashboard.build(page.api, str(programme_id), page.request.app.state.settings.default_timezone)
        return page.render("operator/dashboard.html", board=board, charts=script_json(board.charts(page.language)))

    @console.get("/operator/applications")
    async def applications(request: Request, status: str | None = "under_review", programme_id: str | None = None,
                           cursor: str | None = None) -> Response:
        page = await signed_in(request, "operator")
        if status and status not in APPLICATION_STATUSES:
            status = None
        listing = await page.api.get("/v1/applications", status=status, programme_id=_uuid_or_none(programme_id),
                                     cursor=cursor, limit=50)
        choices = await page.api.every("/v1/programmes")
        return page.render("operator/applications.html", listing=listing, status_filter=status or "",
                           programme_id=programme_id or "", statuses=APPLICATION_STATUSES,
                           programmes={p["id"]: p for p in choices})

    async def application_page(request: Request, application_id: uuid.UUID, *, error: str | None = None,
                               status: int = 200, values: dict[str, str] | None = None) -> Response:
        page = await signed_in(request, "operator")
        application = await page.api.get(f"/v1/applications/{application_id}")
        history = await page.api.get(f"/v1/applications/{application_id}/history")
        programme = await page.api.get(f"/v1/programmes/{application['programme_id']}")
        enterprise = await page.api.get(f"/v1/enterprises/{application['enterprise_id']}")
        notice = (await _notice_entry(page, application, enterprise) if application["status"] == "publicity"
                  else None)
        objections = [t for t in history if t["from_status"] == "publicity" and t["to_status"] == "under_review"]
        return page.render("operator/application.html", status=status, application=application, history=history,
                           programme=programme, enterprise=enterprise, error=error, notice=notice,
                           notice_searched=NOTICE_PAGES * NOTICE_PAGE_SIZE, objections=objections,
                           values=values or {}, form_key=str(uuid.uuid4()))

    @console.get("/operator/applications/{application_id}")
    async def application(request: Request, application_id: uuid.UUID) -> Response:
        return await application_page(request, application_id)

    @console.post("/operator/applications/{application_id}/approve")
    async def approve(request: Request, application_id: uuid.UUID) -> Response:
        page = await signed_in(request, "operator")
        form = await page.form()
        current = await page.api.get(f"/v1/applications/{application_id}")
        # A refused approval comes back with what the operator typed, never the requested amount
        # again: one more click would have approved more than was decided (an independent review).
        typed = {"amount": str(form.get("amount") or ""), "note": str(form.get("note") or "")}
        try:
            amount = parse_major(typed["amount"], current["unit"])
        except ValueError:
            return await application_page(request, application_id, status=422, values=typed, error=msg(
                "enter the amount to approve in the programme's unit, e.g. {example}",
                example=typed_example(current["unit"])).render(page.language))
        note = typed["note"].strip() or None
        try:
            await page.api.post(f"/v1/applications/{application_id}/approve", {"amount": amount, "note": note},
                                idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form():
                raise
            return await application_page(request, application_id, status=refusal.status, values=typed,
                                          error=refusal.detail)
        return redirect(f"/console/operator/applications/{application_id}")

    @console.post("/operator/applications/{application_id}/reject")
    async def reject(request: Request, application_id: uuid.UUID) -> Response:
        page = await signed_in(request, "operator")
        form = await page.form()
        reason = str(form.get("reason") or "").strip()
        if not reason:
            return await application_page(request, application_id, status=422,
                                          error=msg("give the reason for the rejection").render(page.language))
        try:
            await page.api.post(f"/v1/applications/{application_id}/reject", {"reason": reason},
                                idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form():
                raise
            return await application_page(request, application_id, status=refusal.status,
                                          values={"reason": reason}, error=refusal.detail)
        return redirect(f"/console/operator/applications/{application_id}")

    @console.post("/operator/applications/{application_id}/objections")
    async def object_to(request: Request, application_id: uuid.UUID) -> Response:
        """An objection received during publicity, recorded as received: the API returns the
        application to review and releases its commitment, or says why not (publicity over)."""
        page = await signed_in(request, "operator")
        form = await page.form()
        values = {k: str(form.get(k) or "").strip() for k in ("statement", "objector")}
        if not values["statement"]:
            return await application_page(request, application_id, status=422, values=values, error=msg(
                "write down the objection as it was received").render(page.language))
        try:
            await page.api.post(f"/v1/applications/{application_id}/objections",
                                {"statement": values["statement"], "objector": values["objector"] or None},
                                idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form():
                raise
            return await application_page(request, application_id, status=refusal.status, values=values,
                                          error=refusal.detail)
        return redirect(f"/console/operator/applications/{application_id}")

    @console.get("/operator/vouchers/bulk")
    async def bulk_form(request: Request) -> Response:
        page = await signed_in(request, "operator")
        choices = await page.api.every("/v1/programmes", status="open")
        return page.render("operator/bulk.html", programmes=choices, preview=None)

    @console.post("/operator/vouchers/bulk/preview")
    async def bulk_preview(request: Request) -> Response:
        page = await signed_in(request, "operator")
        form = await page.form()
        choices = await page.api.every("/v1/programmes", status="open")
        programme_id = _uuid_or_none(str(form.get("programme_id") or ""))
        programme = next((p for p in choices if p["id"] == programme_id), None)
        if programme is None:
            raise PageError(422, msg("choose an open programme"))
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise PageError(422, msg("choose a CSV or .xlsx file to upload"))
        content = await upload.read()
        preview = await bulk.preview(page.api, programme, upload.filename or "", content, page.language)
        return page.render("operator/bulk.html", status=200 if preview.is_valid else 422,
                           programmes=choices, programme=programme, preview=preview,
                           grants=json.dumps(preview.grants, ensure_ascii=False), rows=json.dumps(preview.numbers),
                           form_key=str(uuid.uuid4()))

    @console.post("/operator/vouchers/bulk/issue")
    async def bulk_issue(request: Request) -> Response:
        page = await signed_in(request, "operator")
        form = await page.form()
        try:
            grants = json.loads(str(form.get("grants") or ""))
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep to parse
            raise PageError(422, msg("the preview could not be read; upload the file again")) from exc
        body = {"programme_id": str(form.get("programme_id") or ""), "grants": grants}
        # The batch's own keys: the same rows for the same programme are one issue however they
        # come back (a second upload of the file, Back and resend), answered with its success;
        # a refusal (budget, caps) is tried again under the batch's next key, so it is never
        # replayed once the cause is gone. Rows meant to be issued again carry new references.
        batch = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        keys = [f"bulk-{batch[:48]}", *(f"bulk-{batch[:44]}-{n}" for n in range(1, BULK_TRIES))]
        try:
            issued, replayed = await page.api.post_once("/v1/vouchers/bulk", body, keys)
        except Refusal as refusal:
            row = _file_row(form.get("rows"), refusal.members.get("grant_index"))
            reason = refusal.members.get("grant_reason")
            if row is None or not isinstance(reason, str):
                raise
            raise PageError(refusal.status, msg("line {row} of the file: {reason}; no voucher of this batch was issued",
                                                row=row, reason=reason)) from refusal
        # The same rows for the same programme within the answers' retention (90 days) are the
        # batch issued then: the page had said "N vouchers were issued" of vouchers issued
        # before, and nothing was (an independent review, December 2026).
        return page.render("operator/bulk_done.html", vouchers=issued, replayed=replayed)


def _file_row(rows: object, index: object) -> int | None:
    """The line of the file the preview showed for grant `index` (the `rows` it sent along)."""
    try:
        numbers = json.loads(str(rows or ""))
    except (ValueError, RecursionError):
        return None
    if not isinstance(numbers, list) or not isinstance(index, int) or not 0 <= index < len(numbers):
        return None
    number = numbers[index]
    return number if isinstance(number, int) and not isinstance(number, bool) else None


#: Keys a bulk batch may be tried under (`Api.post_once`): its refusals, one per key.
BULK_TRIES = 50

#: How much of a programme's public notice an application page reads to find the application's
#: entry (pages of the API's largest size): a programme has far fewer approvals in publicity at
#: once; past that the page says it was not among the entries read.
NOTICE_PAGES = 5
NOTICE_PAGE_SIZE = 200


async def _notice_entry(page: Page, application: dict[str, Any], enterprise: dict[str, Any]) -> dict[str, Any] | None:
    """The application's entry on its programme's public 公示 notice, as the public reads it (the
    API's `GET /v1/programmes/{id}/publicity`: name, masked USCC, amount, end), found by the
    enterprise's name, the visible ends of its USCC, the approved amount and the end of publicity."""
    ends = _instant(application["publicity_ends_at"])
    cursor = None
    for _ in range(NOTICE_PAGES):
        notice = await page.api.get(f"/v1/programmes/{application['programme_id']}/publicity",
                                    limit=NOTICE_PAGE_SIZE, cursor=cursor)
        for entry in notice["items"]:
            masked = entry["uscc_masked"]
            if (entry["enterprise_name"] == enterprise["name"] and masked[:6] == enterprise["uscc"][:6]
                    and masked[-4:] == enterprise["uscc"][-4:] and entry["approved_amount"] == application["approved_amount"]
                    and _instant(entry["publicity_ends_at"]) == ends):
                return {**entry, "unit": notice["unit"]}
        cursor = notice["next_cursor"]
        if cursor is None:
            break
    return None


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None
