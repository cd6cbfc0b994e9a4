"""An enterprise's claims (`enterprise_claim` programmes): filing one after paying a provider in
full, and its own claims, listed by status and programme and read one by one.

The form offers the enterprise's active vouchers of programmes that pay by claim and the
providers enrolled in them; amounts are read as people write them (`parse_major`, in the
voucher's unit), hours and tokens likewise. Documents are files the person chooses: the console
reads each once for its name, type, size and SHA-256 — what the API keeps — and keeps nothing
of them. Every rule of a claim (the invoice claimed once, lines adding up to the amount paid,
the voucher's programme paying by claim…) is the API's, whose refusal is shown beside the form.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from services.voucher.console.api import Refusal, field_problem
from services.voucher.console.web import Page, form_key, redirect, signed_in
from services.voucher.i18n import Message, msg
from services.voucher.money import parse_major, typed_example

CLAIM_STATUSES = ("submitted", "under_review", "approved", "paid", "rejected")
LINES = 3
MAX_LINES = 10
#: The API takes at most 20 documents to a claim.
MAX_DOCUMENTS = 20
FIELDS = ("voucher_id", "provider_id", "contract_number", "invoice_number", "invoice_code", "invoice_date",
          "amount_paid")
LINE_FIELDS = ("category", "description", "usage_name", "usage", "amount")
#: What the form calls each field of the API's body, to say which one a refusal is about.
FIELD_NAMES: dict[str, Message] = {
    "voucher_id": msg("Voucher"), "provider_id": msg("Provider"), "contract_number": msg("Contract number"),
    "invoice_number": msg("Invoice number"), "invoice_code": msg("Invoice code"),
    "invoice_date": msg("Invoice date"), "amount_paid": msg("Amount paid"), "line_items": msg("Order lines"),
    "documents": msg("Documents"),
}


def install(console: FastAPI) -> None:
    @console.get("/enterprise/claims")
    async def claims(request: Request, programme_id: str | None = None, status: str | None = None,
                     cursor: str | None = None) -> Response:
        page = await signed_in(request, "enterprise")
        status = status if status in CLAIM_STATUSES else None
        programme = _uuid_or_none(programme_id)
        listing = await page.api.get("/v1/claims", programme_id=programme, status=status, cursor=cursor, limit=50)
        choices = await page.api.every("/v1/programmes")
        return page.render("enterprise/claims.html", listing=listing, status_filter=status or "",
                           programme_id=programme or "", statuses=CLAIM_STATUSES,
                           programmes={p["id"]: p for p in choices})

    @console.get("/enterprise/claims/new")
    async def claim_form(request: Request, lines: int = LINES) -> Response:
        page = await signed_in(request, "enterprise")
        return await _form_page(page, {}, lines=lines)

    @console.post("/enterprise/claims")
    async def file_claim(request: Request) -> Response:
        page = await signed_in(request, "enterprise")
        form = await page.form(files=MAX_DOCUMENTS)
        values = {k: str(form.get(k) or "").strip() for k in FIELDS}
        count = _line_count(form.get("lines"))
        lines = form_lines(form, count)
        choices = await _claimable(page)
        voucher = choices.vouchers.get(values["voucher_id"])
        if voucher is None:
            return await _form_page(page, values, lines=count, rows=lines, status=422, choices=choices,
                                    error=msg("choose one of your vouchers").render(page.language))
        body, problem = _body(values, lines, voucher["unit"])
        if problem is not None:
            return await _form_page(page, values, lines=count, rows=lines, status=422, choices=choices,
                                    error=problem.render(page.language))
        body["documents"] = await _documents(form.getlist("documents"))
        try:
            created = await page.api.post("/v1/claims", body, idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form(page_is_the_resource=False):
                raise
            errors = _field_errors(refusal, page.language)
            # The API's detail of a 422 points at its `errors` list, which the form shows in its own words.
            lead = msg("check these fields:").render(page.language) if errors else refusal.detail
            return await _form_page(page, values, lines=count, rows=lines, status=refusal.status, choices=choices,
                                    error=lead, errors=errors)
        return redirect(f"/console/enterprise/claims/{created['id']}")

    @console.get("/enterprise/claims/{claim_id}")
    async def claim(request: Request, claim_id: uuid.UUID) -> Response:
        page = await signed_in(request, "enterprise")
        found = await page.api.get(f"/v1/claims/{claim_id}")
        programme = await page.api.get(f"/v1/programmes/{found['programme_id']}")
        voucher = await page.api.get(f"/v1/vouchers/{found['voucher_id']}")
        enrolled = await page.api.every(f"/v1/programmes/{found['programme_id']}/enrolments")
        provider = next((e["provider_name"] for e in enrolled if e["provider_id"] == found["provider_id"]),
                        found["provider_id"])
        return page.render("enterprise/claim.html", claim=found, programme=programme, voucher=voucher,
                           provider_name=provider)


@dataclass
class Choices:
    """The form's choices: the enterprise's active vouchers of programmes that pay by claim (by
    id), their programmes, and the providers enrolled in those programmes (by id)."""

    vouchers: dict[str, dict[str, Any]]
    programmes: dict[str, dict[str, Any]]
    providers: dict[str, str]


async def _claimable(page: Page) -> Choices:
    active = await page.api.every("/v1/vouchers", status="active")
    programmes: dict[str, dict[str, Any]] = {}
    for programme_id in dict.fromkeys(v["programme_id"] for v in active):
        programmes[programme_id] = await page.api.get(f"/v1/programmes/{programme_id}")
    claimable = {pid: p for pid, p in programmes.items() if p["mode"] == "enterprise_claim"}
    providers: dict[str, str] = {}
    for programme_id in claimable:
        enrolled = await page.api.every(f"/v1/programmes/{programme_id}/enrolments", active_only=True)
        providers.update({e["provider_id"]: e["provider_name"] for e in enrolled})
    vouchers = {v["id"]: v for v in active if v["programme_id"] in claimable}
    return Choices(vouchers, claimable, providers)


def _line_count(value: object) -> int:
    try:
        return max(1, min(MAX_LINES, int(str(value or LINES))))
    except ValueError:
        return LINES


def _body(values: dict[str, str], lines: list[dict[str, str]], unit: str) -> tuple[dict[str, Any], Message | None]:
    """The API's body from the form, amounts in minor units; or what the person must mend (an
    amount, hours or tokens that do not read as a number)."""
    try:
        paid = parse_major(values["amount_paid"], unit)
    except ValueError:
        return {}, msg("enter the amount paid in the programme's unit, e.g. {example}", example=typed_example(unit))
    items, problem = order_items(lines, unit)
    if problem is not None:
        return {}, problem
    body: dict[str, Any] = {
        "voucher_id": values["voucher_id"], "provider_id": values["provider_id"],
        "contract_number": values["contract_number"], "invoice_number": values["invoice_number"],
        "invoice_code": values["invoice_code"] or None, "invoice_date": values["invoice_date"],
        "amount_paid": paid, "line_items": items,
    }
    return body, None


def form_lines(form: Any, count: int) -> list[dict[str, str]]:
    """The order lines a form sent (`line-<i>-<field>`), as typed."""
    return [{k: str(form.get(f"line-{i}-{k}") or "").strip() for k in LINE_FIELDS} for i in range(count)]


def order_items(lines: list[dict[str, str]], unit: str) -> tuple[list[dict[str, Any]], Message | None]:
    """The API's order lines from a form's (blank ones left out), amounts in minor units; or what
    the person must mend (an amount, hours or tokens that do not read as a number). The claim
    form and the provider's quote share it."""
    items = []
    for number, line in enumerate(lines, start=1):
        if not any(line.values()):
            continue
        item: dict[str, Any] = {"category": line["category"], "description": line["description"]}
        try:
            item["amount"] = parse_major(line["amount"], unit)
        except ValueError:
            return [], msg("enter the amount of line {number} in the programme's unit, e.g. {example}",
                           number=number, example=typed_example(unit))
        group = line["category"].split(":", 1)[0]
        if group in ("accelerator", "model"):
            try:
                usage = parse_major(line["usage"], "GPU_HOUR" if group == "accelerator" else "TOKEN")
            except ValueError:
                return [], msg("enter the hours (e.g. 150.5) or the tokens (a whole number) of line {number}",
                               number=number)
            name, measure = ("accelerator", "hours_milli") if group == "accelerator" else ("model", "tokens")
            item[name] = line["usage_name"]
            item[measure] = usage
        items.append(item)
    return items, None


async def _documents(files: list[UploadFile | str]) -> list[dict[str, Any]]:
    """Each chosen file's name, type, size and SHA-256; the file itself is not kept."""
    documents = []
    for upload in files:
        if isinstance(upload, str) or not upload.filename:
            continue  # a file input left empty
        digest, size = hashlib.sha256(), 0
        while chunk := await upload.read(1 << 16):
            digest.update(chunk)
            size += len(chunk)
        if size == 0:
            continue
        media_type = (upload.content_type or "").split(";", 1)[0].strip().lower() or "application/octet-stream"
        documents.append({"file_name": upload.filename, "media_type": media_type, "size": size,
                          "sha256": digest.hexdigest()})
    return documents


def _field_errors(refusal: Refusal, language: str) -> list[str]:
    """A 422's field errors, each named as the form names its field (order lines, number 2…)."""
    return [field_problem(error, language, FIELD_NAMES) for error in refusal.errors[:20]]


async def _form_page(page: Page, values: dict[str, str], *, lines: int, rows: list[dict[str, str]] | None = None,
                     status: int = 200, error: str | None = None, errors: list[str] | None = None,
                     choices: Choices | None = None) -> Response:
    choices = choices or await _claimable(page)
    count = max(1, min(MAX_LINES, lines))
    rows = (rows or []) + [{}] * (count - len(rows or []))
    categories = sorted({c for p in choices.programmes.values() for c in p["rate_table"]})
    return page.render("enterprise/claim_new.html", status=status, values=values, rows=rows[:count], lines=count,
                       more=min(MAX_LINES, count + LINES) if count < MAX_LINES else None, choices=choices,
                       categories=categories, error=error, errors=errors or [], form_key=str(uuid.uuid4()))


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None
