"""The books and the anomaly report over HTTP: an auditor's trial balance and one account's
balance as of a time typed in Beijing time (the API given that instant with its offset), and
the anomaly report with its evidence for the programme office and auditors; all read-only."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.voucher.console.ledger import local_instant
from tests.anomalies.test_routes import PARTY, patch_parties
from tests.console.conftest import Browser
from tests.console.test_roles import redeem
from tests.support import auth
from tests.world import World

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_typed_time_is_read_in_beijing_time() -> None:
    assert local_instant("2026-03-31T23:59", SHANGHAI) == "2026-03-31T23:59:00+08:00"
    assert local_instant("2026-03-31", SHANGHAI) == "2026-03-31T00:00:00+08:00"
    assert local_instant("2026-03-31", SHANGHAI, next_day=True) == "2026-04-01T00:00:00+08:00"
    assert local_instant("2026-03-31T23:59", SHANGHAI, next_day=True) == "2026-03-31T23:59:00+08:00"
    assert local_instant(" ", SHANGHAI) is None and local_instant(None, SHANGHAI) is None
    for bad in ("yesterday", "31/03/2026", "2026-02-30"):
        with pytest.raises(ValueError):
            local_instant(bad, SHANGHAI)
    with pytest.raises(ValueError):
        local_instant("9999-12-31", SHANGHAI, next_day=True)


def balance_of(html: str, account_id: str) -> str:
    found = re.search(rf'data-account="{account_id}">([^<]+)<', html)
    assert found, account_id
    return found.group(1)


async def test_an_auditor_reads_the_trial_balance_and_an_account_as_of_a_time(
        browser: Browser, world: World, clock: Any) -> None:
    before = clock()
    voucher = await world.issue(5_000_000)
    clock.advance(days=1)
    await redeem(world, voucher, 1_000_000, "PO-A")  # subsidy ¥3,000.00
    api = (await world.client.get(f"/v1/programmes/{world.programme['id']}/trial-balance",
                                  headers=auth(world.auditor))).json()
    used = next(a for a in api["accounts"] if a["kind"] == "voucher_used" and a["voucher_id"] == voucher["id"])
    await browser.sign_in(world.auditor, language="en")
    now = await browser.get("/console/auditor/trial-balance", params={"programme_id": world.programme["id"]})
    assert now.status_code == 200 and 'data-balanced="true"' in now.text
    assert balance_of(now.text, used["account_id"]) == "¥3,000.00"
    # Between the issue and the redemption, in Beijing time: nothing used yet.
    typed = (before + (clock() - before) / 2).astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M")
    then = await browser.get("/console/auditor/trial-balance", params={"programme_id": world.programme["id"],
                                                                      "as_of": typed})
    assert then.status_code == 200 and 'data-balanced="true"' in then.text
    assert used["account_id"] not in then.text or balance_of(then.text, used["account_id"]) == "¥0.00"
    same = (await world.client.get(f"/v1/programmes/{world.programme['id']}/trial-balance",
                                   params={"as_of": f"{typed}:00+08:00"}, headers=auth(world.auditor))).json()
    assert [a["account_id"] for a in same["accounts"]] == re.findall(r'data-account="([0-9a-f-]{36})"', then.text)
    account = await browser.get(f"/console/auditor/accounts/{used['account_id']}")
    assert account.status_code == 200 and 'id="account-balance">¥3,000.00<' in account.text
    earlier = await browser.get(f"/console/auditor/accounts/{used['account_id']}", params={"as_of": typed})
    assert earlier.status_code == 200 and 'id="account-balance">¥0.00<' in earlier.text
    assert typed.replace("T", " ") in earlier.text  # shown back in Beijing time
    bad = await browser.get("/console/auditor/trial-balance", params={"programme_id": world.programme["id"],
                                                                     "as_of": "yesterday"})
    assert bad.status_code == 422 and 'role="alert"' in bad.text
    too_early = await browser.get(f"/console/auditor/accounts/{used['account_id']}", params={"as_of": "1900-01-01T00:00"})
    assert too_early.status_code == 422 and 'role="alert"' in too_early.text  # the API's refusal, shown
    await browser.sign_in(world.operator)
    assert (await browser.get("/console/auditor/trial-balance")).status_code == 403


async def test_the_anomaly_report_shows_each_finding_with_its_evidence(
        browser: Browser, world: World, clock: Any) -> None:
    await patch_parties(world, "enterprises", PARTY, "legal_representative")
    voucher = await world.issue(10_000_000)
    await redeem(world, voucher, 1_000_000, "PO-REL")
    await patch_parties(world, "providers", PARTY, "shareholder")  # recorded after: refused before
    today = clock().astimezone(SHANGHAI).date()
    for key, base in ((world.operator, "/console/operator/anomalies"), (world.auditor, "/console/auditor/anomalies")):
        await browser.sign_in(key, language="en")
        page = await browser.get(base)
        assert page.status_code == 200 and 'data-rule="related_party"' in page.text
        assert "PO-REL" in page.text and PARTY in page.text and "¥3,000.00" in page.text
        chosen = await browser.get(base, params={"rule": "related_party", "since": today.isoformat(),
                                                 "until": today.isoformat(),
                                                 "programme_id": world.programme["id"]})
        assert chosen.status_code == 200 and 'data-rule="related_party"' in chosen.text
        later = await browser.get(base, params={"since": today.replace(year=today.year + 1).isoformat()})
        assert later.status_code == 200 and 'id="no-findings"' in later.text
        bad = await browser.get(base, params={"since": "last week"})
        assert bad.status_code == 422 and 'role="alert"' in bad.text
    await browser.sign_in(world.enterprise_key)
    assert (await browser.get("/console/operator/anomalies")).status_code == 403
    assert (await browser.get("/console/auditor/anomalies")).status_code == 403


async def test_the_trial_balance_names_every_account_kind_in_words(browser: Browser, world: World) -> None:
    """As statement line kinds are: the kind in words in each language, its code kept in data-kind;
    every kind the ledger has is named (a new kind without words fails here)."""
    from services.voucher.console.web import ACCOUNT_KIND_NAMES
    from services.voucher.ledger.rules import AccountKind

    assert set(ACCOUNT_KIND_NAMES) == {kind.value for kind in AccountKind}
    voucher = await world.issue(5_000_000)
    await redeem(world, voucher, 1_000_000, "PO-K")
    api = (await world.client.get(f"/v1/programmes/{world.programme['id']}/trial-balance",
                                  headers=auth(world.auditor))).json()
    used = next(a for a in api["accounts"] if a["kind"] == "voucher_used")
    for language, words in (("en", ("voucher used", "programme budget available", "payable to the provider")),
                            ("zh", ("券已使用金额", "项目可用预算", "应付服务商"))):
        await browser.sign_in(world.auditor, language=language)
        page = await browser.get("/console/auditor/trial-balance", params={"programme_id": world.programme["id"]})
        kinds = re.findall(r'<td data-kind="([a-z_]+)">([^<]+)</td>', page.text)
        assert {code for code, _ in kinds} == {a["kind"] for a in api["accounts"]}
        assert all(name != code for code, name in kinds), kinds
        for word in words:
            assert word in dict(kinds).values(), (language, word)
        account = await browser.get(f"/console/auditor/accounts/{used['account_id']}")
        assert f'<dd data-kind="voucher_used">{words[0]}</dd>' in account.text


async def test_a_findings_amounts_are_money_and_its_shares_percentages(
        app: Any, client: Any, browser: Browser) -> None:
    """An order-splitting finding's threshold and order total are amounts in fen: shown as money
    (¥10,000.00, ¥28,500.03), never as the bare 1000000 and 2850003 a reader takes for yuan."""
    from tests.world import build_world

    world = await build_world(app, client, max_per_voucher=1_000_000)
    voucher = await world.issue(1_000_000)
    for n in range(3):
        assert (await world.hold(voucher, 950_000 + n, order=f"PO-{n}", path="/v1/redemptions")).status_code == 201
    await browser.sign_in(world.operator, language="en")
    page = await browser.get("/console/operator/anomalies")
    assert page.status_code == 200, page.text
    section = page.text.split('data-rule="order_splitting"')[1].split("</dl>")[0]
    assert '<div data-figure="threshold"><dt>threshold</dt><dd>¥10,000.00</dd>' in section
    assert "<dt>orders' total</dt><dd>¥28,500.03</dd>" in section.replace("&#39;", "'")
    assert "<dt>margin below the threshold</dt><dd>10%</dd>" in section
    assert '<div data-figure="orders"><dt>orders</dt><dd>3</dd>' in section
    # and in Chinese, by their names, not their codes
    await browser.sign_in(world.operator, language="zh")
    chinese = (await browser.get("/console/operator/anomalies")).text
    section = chinese.split('data-rule="order_splitting"')[1].split("</dl>")[0]
    assert "<code>" not in section and "<dt>阈值</dt><dd>¥10,000.00</dd>" in section, section


async def test_a_cap_share_is_rounded_down(app: Any, client: Any, browser: Browser) -> None:
    """¥9,996.00 of a ¥10,000.00 cap is 99.9 % of it, not 100.0 %: ¥4.00 is still free."""
    from tests.world import build_world

    world = await build_world(app, client, enterprise_cap=1_000_000, max_per_voucher=1_000_000,
                              rate_table={"accelerator:domestic": 10000, "accelerator:other": 2000})
    voucher = await world.issue(1_000_000)
    assert (await world.hold(voucher, 999_600, order="PO-1", path="/v1/redemptions")).status_code == 201
    await browser.sign_in(world.operator, language="en")
    page = await browser.get(f"/console/operator/programmes/{world.programme['id']}")
    assert page.status_code == 200
    cells = re.findall(r'<td class="num">([^<]*)</td>', page.text.split('id="caps-title"')[1].split("</tbody>")[0])
    assert cells == ["¥9,996.00", "99.9%", "¥10,000.00"]


async def test_a_finding_in_two_units_shows_each_rows_amounts_as_money_in_its_own_unit(
        browser: Browser, world: World, clock: Any, monkeypatch: Any) -> None:
    """One order reference under a CNY programme and a GPU-hour one: the finding has no common
    unit, and its rows had been shown as bare minor-unit integers (1200000 beside 350000; an
    independent review, December 2026). Each row is shown in its own unit."""
    import uuid

    from services.voucher.anomalies import service as anomalies
    from services.voucher.anomalies.rules import AnomalyRule, Redeemed, shared_reference

    at = clock()

    def redeemed(unit: str, amount: int, order_amount: int) -> Redeemed:
        return Redeemed(redemption_id=uuid.uuid4(), programme_id=uuid.uuid4(), enterprise_id=uuid.uuid4(),
                        provider_id=uuid.uuid4(), voucher_id=uuid.uuid4(), order_reference="PO-TWO",
                        order_amount=order_amount, amount=amount, unit=unit, at=at)

    found = shared_reference([redeemed("CNY", 360_000, 1_200_000), redeemed("GPU_HOUR", 105_000, 350_000)])
    assert found is not None and found.unit is None

    async def planted(*_: Any) -> list[Any]:
        return [found]

    monkeypatch.setitem(anomalies.DETECTORS, AnomalyRule.SHARED_REFERENCE, planted)
    await browser.sign_in(world.auditor, language="en")
    page = await browser.get("/console/auditor/anomalies", params={"rule": "shared_reference"})
    assert page.status_code == 200 and 'data-rule="shared_reference"' in page.text
    assert "¥12,000.00" in page.text and "¥3,600.00" in page.text
    assert "350.000 GPU-hours" in page.text and "105.000 GPU-hours" in page.text
    assert ">1200000<" not in page.text and ">350000<" not in page.text
