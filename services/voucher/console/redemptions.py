"""A provider's redemptions: its list, filtered by status and order reference as the API filters
it and paged by its cursor, and one redemption with its line items, each step of the subsidy
computation the API returned, and its refunds. Every figure is the API's; nothing is computed
here."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, Request
from starlette.responses import Response

from services.voucher.console.web import signed_in
from services.voucher.i18n import msg

REDEMPTION_STATUSES = ("held", "captured", "voided", "refunded")
#: Each step of the computation by name (the same words the API's refusals use).
LIMIT_NAMES = {
    "rates": msg("the programme's rates"),
    "stacking_ceiling": msg("the stacking ceiling"),
    "enterprise_cap": msg("the enterprise's cap for the period"),
    "voucher_balance": msg("the voucher's available balance"),
    "expected_subsidy": msg("the expected subsidy"),
}
RATE_SOURCES = {"rate_table": msg("rate table"), "tier": msg("tier")}
DESTINATIONS = {"voucher": msg("back to the voucher"), "pool": msg("back to the programme's pool")}
VOID_REASONS = {"provider": msg("voided by the provider"), "expired": msg("its time limit passed"),
                "voucher_revoked": msg("the voucher was revoked"), "voucher_expired": msg("the voucher expired"),
                "claim_rejected": msg("the claim was rejected")}


def install(console: FastAPI) -> None:
    @console.get("/provider/redemptions")
    async def redemptions(request: Request, status: str | None = None, order_reference: str | None = None,
                          cursor: str | None = None) -> Response:
        page = await signed_in(request, "provider")
        status = status if status in REDEMPTION_STATUSES else None
        reference = (order_reference or "").strip()[:128]
        listing = await page.api.get("/v1/redemptions", status=status, order_reference=reference, cursor=cursor,
                                     limit=50)
        return page.render("provider/redemptions.html", listing=listing, status_filter=status or "",
                           order_reference=reference, statuses=REDEMPTION_STATUSES)

    @console.get("/provider/redemptions/{redemption_id}")
    async def redemption(request: Request, redemption_id: uuid.UUID) -> Response:
        page = await signed_in(request, "provider")
        found = await page.api.get(f"/v1/redemptions/{redemption_id}")
        refunds = await page.api.get(f"/v1/redemptions/{redemption_id}/refunds")
        programme = await page.api.get(f"/v1/programmes/{found['programme_id']}")
        words = computation_words(page.language)
        void_reason = VOID_REASONS.get(found["void_reason"] or "")
        return page.render("provider/redemption.html", redemption=found, refunds=refunds, programme=programme,
                           words=words, void_reason=void_reason.render(page.language) if void_reason else
                           found["void_reason"])


def computation_words(language: str) -> dict[str, str]:
    """The computation's codes (limits, rate sources, refund destinations) in the reader's words."""
    return {code: name.render(language) for names in (LIMIT_NAMES, RATE_SOURCES, DESTINATIONS)
            for code, name in names.items()}
