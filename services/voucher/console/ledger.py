"""The books as of a moment, and the anomaly report: an auditor's trial balance of a programme
and one account's balance at a time given in Beijing time (sent to the API as an RFC 3339
instant with its offset), and the anomalies report with each finding's evidence for the
programme office and auditors alike. Every page only reads."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from starlette.responses import Response

from services.voucher.console.api import Refusal
from services.voucher.console.web import Page, signed_in, zone_of
from services.voucher.i18n import msg

RULES = ("related_party", "order_splitting", "velocity_spike", "expiry_burst", "shared_reference")
RULE_NAMES = {"related_party": msg("related party"), "order_splitting": msg("order splitting"),
              "velocity_spike": msg("velocity spike"), "expiry_burst": msg("burst before expiry"),
              "shared_reference": msg("shared reference")}


def local_instant(text: str | None, zone: ZoneInfo, *, next_day: bool = False) -> str | None:
    """What a person typed in a date or date-and-time field, read in `zone`, as the RFC 3339
    instant the API takes: None when blank; a day alone is its start (or, with `next_day`, the
    start of the day after, so a range's last day counts whole). ValueError when unreadable."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
        if "T" not in text and " " not in text and next_day:
            moment += timedelta(days=1)
    except OverflowError as exc:
        raise ValueError(text) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.isoformat()


def install(console: FastAPI) -> None:
    @console.get("/operator/anomalies")
    async def operator_anomalies(request: Request, programme_id: str | None = None, rule: str | None = None,
                                 since: str | None = None, until: str | None = None) -> Response:
        page = await signed_in(request, "operator")
        return await anomalies_page(page, programme_id, rule, since, until)

    @console.get("/auditor/anomalies")
    async def auditor_anomalies(request: Request, programme_id: str | None = None, rule: str | None = None,
                                since: str | None = None, until: str | None = None) -> Response:
        page = await signed_in(request, "auditor")
        return await anomalies_page(page, programme_id, rule, since, until)

    @console.get("/auditor/trial-balance")
    async def trial_balance(request: Request, programme_id: str | None = None, as_of: str | None = None) -> Response:
        page = await signed_in(request, "auditor")
        choices = await page.api.every("/v1/programmes")
        programme = _uuid_or_none(programme_id) or (choices[0]["id"] if choices else None)
        values = {"programme_id": programme or "", "as_of": (as_of or "").strip()}
        balance, error, status = None, None, 200
        try:
            instant = local_instant(as_of, zone_of(request))
        except ValueError:
            error, status = msg("enter the time as a date and a time, e.g. 2026-03-31 23:59").render(page.language), 422
        else:
            if programme is not None:
                try:
                    balance = await page.api.get(f"/v1/programmes/{programme}/trial-balance", as_of=instant)
                except Refusal as refusal:
                    if not refusal.for_the_form(page_is_the_resource=False):
                        raise
                    error, status = refusal.detail, refusal.status
        return page.render("auditor/trial_balance.html", status=status, programmes=choices, values=values,
                           balance=balance, error=error)

    @console.get("/auditor/accounts/{account_id}")
    async def account(request: Request, account_id: uuid.UUID, as_of: str | None = None) -> Response:
        page = await signed_in(request, "auditor")
        values = {"as_of": (as_of or "").strip()}
        found, error, status = None, None, 200
        try:
            instant = local_instant(as_of, zone_of(request))
        except ValueError:
            error, status = msg("enter the time as a date and a time, e.g. 2026-03-31 23:59").render(page.language), 422
        else:
            try:
                found = await page.api.get(f"/v1/ledger/accounts/{account_id}/balance", as_of=instant)
            except Refusal as refusal:
                if not refusal.for_the_form():
                    raise
                error, status = refusal.detail, refusal.status
        return page.render("auditor/account.html", status=status, account_id=str(account_id), values=values,
                           found=found, error=error)


async def anomalies_page(page: Page, programme_id: str | None, rule: str | None, since: str | None,
                         until: str | None) -> Response:
    zone = zone_of(page.request)
    choices = await page.api.every("/v1/programmes")
    programme = _uuid_or_none(programme_id)
    rule = rule if rule in RULES else None
    values = {"programme_id": programme or "", "rule": rule or "", "since": (since or "").strip(),
              "until": (until or "").strip()}
    report: dict[str, Any] | None = None
    error, status = None, 200
    try:
        bounds = local_instant(since, zone), local_instant(until, zone, next_day=True)
    except ValueError:
        error, status = msg("enter the days as dates, e.g. 2026-03-01").render(page.language), 422
    else:
        try:
            report = await page.api.get("/v1/audit/anomalies", programme_id=programme, rule=rule,
                                        since=bounds[0], until=bounds[1])
        except Refusal as refusal:
            if not refusal.for_the_form(page_is_the_resource=False):
                raise
            error, status = refusal.detail, refusal.status
    names = {code: name.render(page.language) for code, name in RULE_NAMES.items()}
    return page.render("anomalies.html", status=status, programmes=choices, values=values, report=report,
                       error=error, rules=RULES, rule_names=names, base=f"/console/{page.role}/anomalies")


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None
