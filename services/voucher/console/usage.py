"""A provider's usage reconciliation: upload its own usage records of a programme and a period
(a CSV file, sent to the API as the CSV text it takes), and its kept reports — the list with
each one's counts, and one report with every order in its category. The comparison is the
API's; the console only reads the file as UTF-8 text."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from services.voucher.console.api import Refusal, field_problem
from services.voucher.console.web import Page, form_key, redirect, signed_in
from services.voucher.i18n import msg

#: What each part of a report is called.
CATEGORIES = {"matched": msg("matched"), "mismatched": msg("amounts differ"),
              "missing_ours": msg("only in your file"), "missing_theirs": msg("only in our records")}
#: What the form calls each field of the API's body, to say which one a refusal is about.
FIELD_NAMES = {"programme_id": msg("Programme"), "period_start": msg("First day"),
               "period_end": msg("Last day (included)")}


def install(console: FastAPI) -> None:
    @console.get("/provider/usage")
    async def reports(request: Request, programme_id: str | None = None, cursor: str | None = None) -> Response:
        page = await signed_in(request, "provider")
        return await _reports_page(page, programme_id, cursor)

    @console.post("/provider/usage")
    async def upload(request: Request) -> Response:
        page = await signed_in(request, "provider")
        form = await page.form()
        values = {k: str(form.get(k) or "").strip() for k in ("new_programme_id", "period_start", "period_end")}
        if not all(values.values()):
            return await _reports_page(page, None, None, values=values, status=422, error=msg(
                "choose the programme and enter the first and last day").render(page.language))
        file = form.get("file")
        content = await file.read() if file is not None and not isinstance(file, str) else b""
        if not content:
            return await _reports_page(page, None, None, values=values, status=422, error=msg(
                "choose the CSV file of your usage records").render(page.language))
        try:
            text = content.decode("utf-8")  # a BOM stays: the kept SHA-256 is the file's own
        except UnicodeDecodeError:
            return await _reports_page(page, None, None, values=values, status=422, error=msg(
                "the file is not a CSV file in UTF-8").render(page.language))
        try:
            report = await page.api.post("/v1/usage-reconciliations", {
                "programme_id": values["new_programme_id"], "period_start": values["period_start"],
                "period_end": values["period_end"], "csv": text}, idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form(page_is_the_resource=False):
                raise
            errors = [_field_error(e, page.language) for e in refusal.errors[:20]]
            # The API's detail of a 422 points at its `errors` list, which the form shows in its own words.
            lead = msg("check these fields:").render(page.language) if errors else refusal.detail
            return await _reports_page(page, None, None, values=values, status=refusal.status, error=lead,
                                       errors=errors)
        return redirect(f"/console/provider/usage/{report['id']}")

    @console.get("/provider/usage/{report_id}")
    async def report(request: Request, report_id: uuid.UUID) -> Response:
        page = await signed_in(request, "provider")
        found = await page.api.get(f"/v1/usage-reconciliations/{report_id}")
        programme = await page.api.get(f"/v1/programmes/{found['programme_id']}")
        names = {code: name.render(page.language) for code, name in CATEGORIES.items()}
        return page.render("provider/usage_report.html", report=found, programme=programme, names=names)


async def _reports_page(page: Page, programme_id: str | None, cursor: str | None, *,
                        values: dict[str, str] | None = None, status: int = 200, error: str | None = None,
                        errors: list[str] | None = None) -> Response:
    programme = _uuid_or_none(programme_id)
    listing = await page.api.get("/v1/usage-reconciliations", programme_id=programme, cursor=cursor, limit=50)
    choices = await page.api.every("/v1/programmes")
    programmes: dict[str, dict[str, Any]] = {p["id"]: p for p in choices}
    return page.render("provider/usage.html", status=status, listing=listing, programme_id=programme or "",
                       programmes=programmes, values=values or {}, error=error, errors=errors or [],
                       form_key=str(uuid.uuid4()))


def _field_error(error: dict[str, Any], language: str) -> str:
    """A refused field named as the form names it; a refused record by its line in the file
    (the API's `/csv/3` is the file's third line)."""
    parts = [p for p in str(error.get("pointer", "")).split("/") if p]
    problem = str(error.get("message", ""))
    if len(parts) >= 2 and parts[0] == "csv" and parts[1].isdigit():
        return msg("line {number} of the file: {problem}", number=int(parts[1]), problem=problem).render(language)
    if parts and parts[0] == "csv":
        return msg("the file: {problem}", problem=problem).render(language)
    return field_problem(error, language, FIELD_NAMES)


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None
