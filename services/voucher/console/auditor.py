"""An auditor's pages: the audit chain's head and a verification run now with each problem it
found, and exports downloaded with the manifest that describes them (row count, SHA-256, the
chain head they are consistent with)."""

from __future__ import annotations

import contextlib
import uuid

from fastapi import FastAPI, Request
from starlette.responses import Response

from services.voucher.console.api import Refusal
from services.voucher.console.web import (
    EXPORTS_COOKIE,
    PageError,
    form_key,
    redirect,
    set_cookie,
    signed_in,
    streamed_passthrough,
)
from services.voucher.i18n import msg

DATASETS = ("ledger-entries", "redemptions", "redemption-line-items", "settlements", "settlement-items",
            "audit-events", "audit-event-changes")
FORMATS = ("csv", "xlsx", "jsonl")
#: The ids of the browser's last exports, so the exports page can link their manifests (an id
#: is no secret: a manifest is read with the auditor's key, like everything else).
KEPT_EXPORTS = 5


def install(console: FastAPI) -> None:
    @console.get("/auditor")
    async def chain(request: Request) -> Response:
        page = await signed_in(request, "auditor")
        head = await page.api.get("/v1/audit/head")
        return page.render("auditor/chain.html", head=head, form_key=str(uuid.uuid4()))

    @console.post("/auditor/verifications")
    async def verify(request: Request) -> Response:
        page = await signed_in(request, "auditor")
        form = await page.form()
        # The form's key: a double click runs one verification (it reads the whole chain).
        verification = await page.api.post("/v1/audit/verifications", {"check_ledger": True},
                                           idempotency_key=form_key(form))
        return redirect(f"/console/auditor/verifications/{verification['id']}")

    @console.get("/auditor/verifications/{verification_id}")
    async def verification(request: Request, verification_id: uuid.UUID) -> Response:
        page = await signed_in(request, "auditor")
        found = await page.api.get(f"/v1/audit/verifications/{verification_id}")
        return page.render("auditor/verification.html", verification=found)

    @console.get("/auditor/exports")
    async def exports(request: Request) -> Response:
        page = await signed_in(request, "auditor")
        manifests, kept = [], _kept(request)
        for export_id in kept:
            try:
                manifests.append(await page.api.get(f"/v1/exports/manifests/{export_id}"))
            except Refusal as refusal:  # a database reset since (a sandbox, `make run` again): not listed
                if refusal.status != 404:
                    raise
        programmes = await page.api.every("/v1/programmes")
        response = page.render("auditor/exports.html", manifests=manifests, datasets=DATASETS, formats=FORMATS,
                               programmes=programmes)
        if len(manifests) < len(kept):  # one unknown id had made the page a 404 for the cookie's 8 hours
            set_cookie(response, request, EXPORTS_COOKIE, ".".join(m["id"] for m in manifests), max_age=8 * 3600)
        return response

    @console.get("/auditor/exports/download")
    async def download(request: Request, dataset: str, format: str = "csv", programme_id: str | None = None) -> Response:
        page = await signed_in(request, "auditor")
        if dataset not in DATASETS or format not in FORMATS:
            raise PageError(404, msg("there is no such page in the console"))
        programme = _uuid_or_none(programme_id)
        if programme_id and programme is None:  # dropped, it would export every programme's rows
            raise PageError(422, msg("{value} is not a programme's id; nothing was exported",
                                     value=programme_id[:40]))
        # Streamed through as the API writes it: a million rows are never held here, and the
        # browser (and the page's progress line) sees them arrive.
        closing = contextlib.AsyncExitStack()
        try:
            upstream = await closing.enter_async_context(page.api.streamed(
                f"/v1/exports/{dataset}", format=format, programme_id=programme))
        except BaseException:
            await closing.aclose()
            raise
        response = streamed_passthrough(upstream, closing)
        export_id = upstream.headers.get("export-id")
        if export_id:
            kept = [export_id, *[e for e in _kept(request) if e != export_id]][:KEPT_EXPORTS]
            set_cookie(response, request, EXPORTS_COOKIE, ".".join(kept), max_age=8 * 3600)
        return response

    @console.get("/auditor/exports/{export_id}")
    async def manifest(request: Request, export_id: uuid.UUID) -> Response:
        page = await signed_in(request, "auditor")
        found = await page.api.get(f"/v1/exports/manifests/{export_id}")
        return page.render("auditor/manifest.html", manifest=found)


def _kept(request: Request) -> list[str]:
    found = []
    for value in request.cookies.get(EXPORTS_COOKIE, "").split(".")[:KEPT_EXPORTS]:
        try:
            found.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    return found


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None
