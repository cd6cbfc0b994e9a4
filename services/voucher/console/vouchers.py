"""The programme office's vouchers: a list by programme and status, one voucher issued, and one
voucher with its postings, suspended, resumed or revoked through the API, and an ended one's
clawback recorded, repaid or written off."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from services.voucher.console.api import Refusal
from services.voucher.console.bulk import registered
from services.voucher.console.web import Page, form_key, redirect, signed_in
from services.voucher.i18n import msg
from services.voucher.money import parse_major, typed_example

VOUCHER_STATUSES = ("active", "suspended", "exhausted", "expired", "revoked")


def install(console: FastAPI) -> None:
    @console.get("/operator/vouchers")
    async def vouchers(request: Request, programme_id: str | None = None, status: str | None = None,
                       cursor: str | None = None) -> Response:
        page = await signed_in(request, "operator")
        status = status if status in VOUCHER_STATUSES else None
        programme = _uuid_or_none(programme_id)
        listing = await page.api.get("/v1/vouchers", programme_id=programme, status=status, cursor=cursor, limit=50)
        choices = await page.api.every("/v1/programmes")
        return page.render("operator/vouchers.html", listing=listing, status_filter=status or "",
                           programme_id=programme or "", statuses=VOUCHER_STATUSES,
                           programmes={p["id"]: p for p in choices})

    async def issue_page(page: Page, values: dict[str, str], *, error: str | None = None,
                         status: int = 200) -> Response:
        choices = await page.api.every("/v1/programmes", status="open")
        return page.render("operator/issue.html", status=status, programmes=choices, values=values,
                           error=error, form_key=str(uuid.uuid4()))

    @console.get("/operator/vouchers/issue")
    async def issue_form(request: Request) -> Response:
        return await issue_page(await signed_in(request, "operator"), {})

    @console.post("/operator/vouchers/issue")
    async def issue(request: Request) -> Response:
        """One voucher to one enterprise, found by its USCC; every rule of issuing is the API's."""
        page = await signed_in(request, "operator")
        form = await page.form()
        values = {k: str(form.get(k) or "").strip() for k in ("programme_id", "uscc", "face_value", "reference")}
        values["uscc"] = values["uscc"].upper()
        choices = await page.api.every("/v1/programmes", status="open")
        programme = next((p for p in choices if p["id"] == _uuid_or_none(values["programme_id"])), None)
        if programme is None:
            return await issue_page(page, values, status=422,
                                    error=msg("choose an open programme").render(page.language))
        try:
            face_value = parse_major(values["face_value"], programme["unit"])
        except ValueError:
            return await issue_page(page, values, status=422, error=msg(
                "enter the amount in the programme's unit, e.g. {example}",
                example=typed_example(programme["unit"])).render(page.language))
        if not values["uscc"]:  # a blank filter is no filter: the list would name any enterprise
            return await issue_page(page, values, status=422, error=msg("the USCC is missing").render(page.language))
        try:
            found = await page.api.get("/v1/enterprises", uscc=values["uscc"], limit=1)
            enterprise = registered(found["items"], values["uscc"])
            if enterprise is None:
                return await issue_page(page, values, status=422, error=msg(
                    "no enterprise is registered with the USCC {uscc}", uscc=values["uscc"]).render(page.language))
            issued = await page.api.post("/v1/vouchers", {
                "programme_id": programme["id"], "enterprise_id": enterprise["id"], "face_value": face_value,
                "reference": values["reference"] or None}, idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form(page_is_the_resource=False):
                raise
            return await issue_page(page, values, status=refusal.status, error=refusal.detail)
        return redirect(f"/console/operator/vouchers/{issued['id']}")

    async def voucher_page(request: Request, voucher_id: uuid.UUID, *, error: str | None = None,
                           status: int = 200, cursor: str | None = None,
                           values: dict[str, str] | None = None) -> Response:
        page = await signed_in(request, "operator")
        found = await page.api.get(f"/v1/vouchers/{voucher_id}")
        history = await page.api.get(f"/v1/vouchers/{voucher_id}/history", cursor=cursor, limit=100)
        enterprise = await page.api.get(f"/v1/enterprises/{found['enterprise_id']}")
        # An ended voucher may owe value back (a clawback); a live one cannot, until it is revoked.
        ended = found["status"] in ("expired", "revoked")
        clawback = await page.api.get(f"/v1/vouchers/{voucher_id}/clawback") if ended else None
        # Every entry of an ended voucher's clawback, oldest first (a handful per voucher): a
        # clawback, repayment, write-off or return recorded by mistake is reversed from its row.
        entries = (await page.api.get(f"/v1/vouchers/{voucher_id}/clawback/entries", limit=200))["items"] if ended else []
        return page.render("operator/voucher.html", status=status, voucher=found, history=history,
                           enterprise=enterprise, clawback=clawback, entries=entries, error=error,
                           form_key=str(uuid.uuid4()), values=values or {})

    @console.get("/operator/vouchers/{voucher_id}")
    async def voucher(request: Request, voucher_id: uuid.UUID, cursor: str | None = None) -> Response:
        return await voucher_page(request, voucher_id, cursor=cursor)

    async def send(request: Request, page: Page, voucher_id: uuid.UUID, action: str, body: dict[str, object],
                   form: FormData, typed: dict[str, str]) -> Response:
        """Post a voucher's change to the API; a refusal comes back beside its form, with what
        was typed in it."""
        try:
            await page.api.post(f"/v1/vouchers/{voucher_id}/{action}", body, idempotency_key=form_key(form))
        except Refusal as refusal:
            if not refusal.for_the_form():
                raise
            return await voucher_page(request, voucher_id, status=refusal.status, values=typed,
                                      error=refusal.detail)
        return redirect(f"/console/operator/vouchers/{voucher_id}")

    @console.post("/operator/vouchers/{voucher_id}/clawback/{kind}")
    async def settle_clawback(request: Request, voucher_id: uuid.UUID, kind: str) -> Response:
        """The enterprise's repayment of a clawback, the office's write-off of it, its return of
        what the enterprise overpaid, or the reversal of any of them recorded by mistake."""
        page = await signed_in(request, "operator")
        form = await page.form()
        fields = {"repayments": ("amount", "reference", "paid_on"), "write-offs": ("amount", "reason"),
                  "overpayment-returns": ("amount", "reference", "paid_on"),
                  "reversals": ("entry_id", "reason")}.get(kind)
        if fields is None:
            return await voucher_page(request, voucher_id, status=404,
                                      error=msg("there is no such page in the console").render(page.language))
        typed = {"action": kind, **{f: str(form.get(f) or "").strip() for f in fields}}
        if any(not typed[f] for f in fields):
            return await voucher_page(request, voucher_id, status=422, values=typed,
                                      error=msg("fill in every field of the form").render(page.language))
        if kind == "reversals":
            return await send(request, page, voucher_id, "clawback/reversals",
                              {"entry_id": typed["entry_id"], "reason": typed["reason"]}, form, typed)
        current = await page.api.get(f"/v1/vouchers/{voucher_id}")
        try:
            body: dict[str, object] = {**typed, "amount": parse_major(typed["amount"], current["unit"])}
        except ValueError:
            return await voucher_page(request, voucher_id, status=422, values=typed, error=msg(
                "enter the amount in the programme's unit, e.g. {example}",
                example=typed_example(current["unit"])).render(page.language))
        del body["action"]
        return await send(request, page, voucher_id, f"clawback/{kind}", body, form, typed)

    @console.post("/operator/vouchers/{voucher_id}/{action}")
    async def change(request: Request, voucher_id: uuid.UUID, action: str) -> Response:
        page = await signed_in(request, "operator")
        form = await page.form()
        if action not in ("suspend", "resume", "revoke", "clawback"):
            return await voucher_page(request, voucher_id, status=404,
                                      error=msg("there is no such page in the console").render(page.language))
        reason = str(form.get("reason") or "").strip()
        # A refused change comes back with what was typed in its form: a revocation retyped with
        # its reason only would have gone through, for good, without the clawback meant.
        typed = {"action": action, "reason": reason, "clawback": str(form.get("clawback") or "")}
        if not reason:
            return await voucher_page(request, voucher_id, status=422, values=typed,
                                      error=msg("give the reason for the change").render(page.language))
        body: dict[str, object] = {"reason": reason}
        if action in ("revoke", "clawback"):
            current = await page.api.get(f"/v1/vouchers/{voucher_id}")
            text = typed["clawback"].strip()
            if action == "clawback" and not text:
                return await voucher_page(request, voucher_id, status=422, values=typed,
                                          error=msg("enter the used value to recover").render(page.language))
            try:
                body["clawback" if action == "revoke" else "amount"] = parse_major(text, current["unit"]) if text else 0
            except ValueError:
                return await voucher_page(request, voucher_id, status=422, values=typed, error=msg(
                    "enter the amount in the programme's unit, e.g. {example}",
                    example=typed_example(current["unit"])).render(page.language))
        return await send(request, page, voucher_id, action, body, form, typed)


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None
