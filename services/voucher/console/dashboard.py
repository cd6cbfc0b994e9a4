"""A programme's dashboard, read from the API: the budget figures from the programme's trial
balance now, the burn by month from the programme's spent account's balance at each month's start (Beijing time), the
subsidy by provider from the providers' payable and paid accounts.

Every figure is a sum of trial-balance accounts by kind, so the dashboard equals the trial
balance by construction (tests/console/test_dashboard.py compares them through the API):
- budget: the programme's budget (the funding account's balance, negated);
- available: not yet committed (`programme_available`);
- committed: approved and not yet issued as a voucher (`programme_committed`);
- in vouchers: issued and not yet spent (every `voucher_available` and `voucher_held`);
- spent: captured net of refunds (`programme_spent`, negated);
- expired: unused value of expired vouchers kept from the pool (`programme_breakage`, where the
  programme's expiry disposition is breakage); with it the figures add up to the budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.voucher.console.api import Api
from services.voucher.i18n import msg
from services.voucher.money import format_for_people

MONTHS = 12


@dataclass
class Dashboard:
    programme: dict[str, Any]
    unit: str
    as_of: str
    is_balanced: bool
    figures: dict[str, int]
    burn: list[tuple[str, int]] = field(default_factory=list)
    by_provider: list[tuple[str, int]] = field(default_factory=list)
    by_category: list[tuple[str, int]] = field(default_factory=list)
    by_region: list[tuple[str, int, int]] = field(default_factory=list)
    #: The enterprises nearest their cap in `period_key`, most first (the report's rows).
    heaviest_users: list[dict[str, Any]] = field(default_factory=list)
    period_key: str = ""
    enterprise_cap: int = 0

    def charts(self, language: str) -> dict[str, Any]:
        """What console.js draws, with every label already in the reader's language."""
        def label(amount: int) -> str:
            return format_for_people(amount, self.unit, language)

        names = {"available": msg("available"), "committed": msg("committed"),
                 "in_vouchers": msg("in vouchers"), "spent": msg("spent"),
                 "expired": msg("expired, not returned to the pool")}
        return {
            "budget": {"title": msg("Budget").render(language),
                       "items": [{"name": names[k].render(language), "value": self.figures[k],
                                  "label": label(self.figures[k])} for k in names]},
            "burn": {"title": msg("Spent by month").render(language),
                     "items": [{"name": month, "value": value, "label": label(value)} for month, value in self.burn]},
            "providers": {"title": msg("Subsidy by provider").render(language),
                          "items": [{"name": name, "value": value, "label": label(value)}
                                    for name, value in self.by_provider]},
            "categories": {"title": msg("Subsidy by category").render(language),
                           "items": [{"name": name, "value": value, "label": label(value)}
                                     for name, value in self.by_category]},
            "regions": {"title": msg("Subsidy by region").render(language),
                        "items": [{"name": code, "value": value, "label": label(value)}
                                  for code, _, value in self.by_region]},
            "caps": {"title": msg("Enterprises nearest their cap").render(language),
                     "items": [{"name": user["name"], "value": user["subsidised"], "label": label(user["subsidised"])}
                               for user in self.heaviest_users]},
        }


def figures_of(trial_balance: dict[str, Any]) -> dict[str, int]:
    """The dashboard's figures from one trial balance (see the module)."""
    by_kind: dict[str, int] = {}
    for account in trial_balance["accounts"]:
        by_kind[account["kind"]] = by_kind.get(account["kind"], 0) + int(account["balance"])
    return {
        "budget": -by_kind.get("programme_funding", 0),
        "available": by_kind.get("programme_available", 0),
        "committed": by_kind.get("programme_committed", 0),
        "in_vouchers": by_kind.get("voucher_available", 0) + by_kind.get("voucher_held", 0),
        "spent": -by_kind.get("programme_spent", 0),
        "expired": by_kind.get("programme_breakage", 0),
    }


def month_starts(now: datetime, zone: ZoneInfo, since: datetime, months: int = MONTHS) -> list[datetime]:
    """The starts of the months (in `zone`) from the one holding `since` to the one holding
    `now`, at most `months` of them, oldest first, in UTC."""
    local = now.astimezone(zone)
    year, month = local.year, local.month
    starts: list[datetime] = []
    earliest = since.astimezone(zone)
    for _ in range(months):
        start = datetime(year, month, 1, tzinfo=zone)
        starts.append(start.astimezone(UTC))
        if (year, month) <= (earliest.year, earliest.month):
            break
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return starts[::-1]


async def build(api: Api, programme_id: str, timezone: str) -> Dashboard:
    programme = await api.get(f"/v1/programmes/{programme_id}")
    now_tb = await api.get(f"/v1/programmes/{programme_id}/trial-balance")
    as_of = datetime.fromisoformat(now_tb["as_of"].replace("Z", "+00:00"))
    zone = ZoneInfo(timezone)
    figures = figures_of(now_tb)
    board = Dashboard(programme, programme["unit"], now_tb["as_of"], bool(now_tb["is_balanced"]), figures)

    since = datetime.fromisoformat((programme.get("opened_at") or programme["created_at"]).replace("Z", "+00:00"))
    starts = month_starts(as_of, zone, since)
    spent_account = next((a["account_id"] for a in now_tb["accounts"] if a["kind"] == "programme_spent"), None)

    async def spent_before(start: datetime) -> int:
        """The one account's balance just before a month's first instant (`as_of` counts a
        posting made at that very instant, which is the new month's), from its postings."""
        if spent_account is None:
            return 0
        earlier = await api.get(f"/v1/ledger/accounts/{spent_account}/balance",
                                as_of=(start - timedelta(microseconds=1)).isoformat().replace("+00:00", "Z"))
        return -int(earlier["balance"])

    spent_at = [await spent_before(start) for start in starts[1:]]
    spent_at.append(figures["spent"])
    # The oldest month shown is only its own spend, also when earlier months are not shown.
    previous = await spent_before(starts[0]) if starts[0] > since else 0
    for start, spent in zip(starts, spent_at, strict=True):
        board.burn.append((start.astimezone(zone).strftime("%Y-%m"), spent - previous))
        previous = spent

    per_provider: dict[str, int] = {}
    for account in now_tb["accounts"]:
        if account["kind"] in ("provider_payable", "provider_paid") and account.get("provider_id"):
            per_provider[account["provider_id"]] = per_provider.get(account["provider_id"], 0) + int(account["balance"])
    names: dict[str, str] = {}
    cursor = None
    while per_provider.keys() - names.keys():  # every page until each provider has its name
        listing = await api.get("/v1/providers", limit=200, cursor=cursor)
        names.update({p["id"]: p["name"] for p in listing["items"]})
        cursor = listing.get("next_cursor")
        if not cursor:
            break
    board.by_provider = sorted(((names.get(pid, pid), value) for pid, value in per_provider.items()),
                               key=lambda item: -item[1])

    report = await api.get(f"/v1/programmes/{programme_id}/spending")
    board.by_category = [(c["category"], int(c["spent"])) for c in report["by_category"]]
    board.by_region = [(r["region_code"], int(r["enterprises"]), int(r["spent"])) for r in report["by_region"]]
    board.heaviest_users = report["heaviest_users"]
    board.period_key, board.enterprise_cap = report["period_key"], int(report["enterprise_cap"])
    return board
