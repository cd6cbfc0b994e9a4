"""Independent review (i18n): what a Chinese reader sees on the console and in problems."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.voucher.console.web import delivery_error, memo_detail
from tests.audit.test_chain import plain_pair, raw, tamper  # noqa: F401 - raw is a fixture
from tests.console.conftest import Browser, csrf_of
from tests.support import auth
from tests.world import World, hold_body

MEMO = re.compile(r'<small class="memo">(.*?)</small>', re.S)


async def test_the_voucher_history_shows_no_english_memo_with_a_fen_figure(browser: Browser, world: World) -> None:
    """An enterprise reading its voucher in Chinese: a capture of ¥2,000.00 of ¥3,000.00 held
    must not read "captured 200000 of 300000 for order PO-MEMO" (English, figures in fen)."""
    voucher = await world.issue(10_000_000)
    held = await world.hold(voucher, 1_000_000, order="PO-MEMO")  # 30 %: ¥3,000.00 held
    assert held.status_code == 201, held.text
    captured = await world.post(f"/v1/redemptions/{held.json()['id']}/capture", {"amount": 200_000})
    assert captured.status_code < 300, captured.text
    await browser.sign_in(world.enterprise_key)  # zh-CN, the default
    page = await browser.get(f"/console/enterprise/vouchers/{voucher['id']}")
    assert page.status_code == 200 and page.headers["content-language"] == "zh-CN"
    memos = MEMO.findall(page.text)
    assert memos, "the page shows its movements' memos"
    wrong = [memo for memo in memos
             if re.search(r"\b(?:captured|hold|for order|issued|of)\b", memo)  # English words
             or re.search(r"\b[0-9]{5,}\b", memo)]  # a bare minor-unit figure
    assert not wrong, wrong
    # What the memos the service really writes give (the console reads their forms): the order
    # of the hold and of the capture, the reason typed with a void and with a revocation.
    void_held = await world.hold(voucher, 100_000, order="PO-VOID")
    voided = await world.post(f"/v1/redemptions/{void_held.json()['id']}/void", {"reason": "订单取消"})
    assert voided.status_code < 300, voided.text
    revoked = await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "材料造假"}, key=world.operator)
    assert revoked.status_code < 300, revoked.text
    page = await browser.get(f"/console/enterprise/vouchers/{voucher['id']}?lines=100")
    shown = MEMO.findall(page.text)
    for expected in ("订单 PO-MEMO", "订单 PO-VOID", "订单取消", "材料造假"):
        assert expected in shown, (expected, shown)


async def test_an_expired_voucher_is_refused_with_its_expiry_in_beijing_time(
        client: httpx.AsyncClient, clock, world: World) -> None:
    """A Chinese problem detail is for people: its time is Beijing time, as the console shows
    the same voucher's expiry, not an RFC 3339 UTC string."""
    voucher = await world.issue(1_000_000)
    expires = datetime.fromisoformat(voucher["expires_at"].replace("Z", "+00:00"))
    clock.current = expires + timedelta(hours=1)
    refused = await client.post(
        "/v1/redemptions/holds",
        json=hold_body(voucher["code"], world.enterprise["uscc"], "PO-LATE", [("accelerator:domestic", 100_000)]),
        headers=auth(world.provider_key, **{"Idempotency-Key": "late-1", "Accept-Language": "zh-CN"}))
    body = refused.json()
    assert body["code"] == "voucher_expired", body
    local = expires.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
    assert "+00:00" not in body["detail"], body["detail"]
    assert local in body["detail"], body["detail"]


@pytest.mark.audit_tampered
async def test_the_verification_page_explains_its_problems_in_chinese(browser: Browser, world: World, raw) -> None:  # noqa: F811
    """An auditor reading the console in Chinese sees what verification found in Chinese, not
    the API's English detail and a code such as event_altered."""
    await world.issue(1_000_000)
    sealed = await world.post("/v1/audit/verifications", {}, key=world.auditor)  # seals the events
    assert sealed.status_code == 201, sealed.text
    place = plain_pair(raw)
    tamper(raw, f"UPDATE audit_event SET action = 'programme.archived' WHERE seq = {place}")
    await browser.sign_in(world.auditor)
    home = await browser.get("/console/auditor")
    verified = await browser.post("/console/auditor/verifications", data={"csrf_token": csrf_of(home.text)})
    assert verified.status_code == 303, verified.text
    result = await browser.get(verified.headers["location"])
    assert 'class="fail"' in result.text
    rows = re.findall(r"<tr[^>]*><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", result.text, re.S)
    assert rows, result.text
    # The record's English is kept for the auditor to read on demand (a key id, a count), folded
    # away under its own label; what the page says is in the reader's language.
    shown = [(kind, re.sub(r"<details>.*?</details>", "", detail, flags=re.S)) for kind, _seq, detail in rows]
    wrong = [(kind, detail) for kind, detail in shown
             if re.fullmatch(r"[a-z_]+", kind.strip())  # a code, not a word
             or re.search(r"[A-Za-z]{3,} [A-Za-z]{3,}", detail)]  # an English sentence
    assert not wrong, wrong
    assert '<span lang="en">the event does not hash to its link' in result.text


def _alert(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">(.*?)</p>', html, re.S)
    assert found, html[:2000]
    return found.group(1)


async def test_a_zero_amount_on_the_apply_form_names_the_field_and_its_minimum_in_yuan(
        browser: Browser, world: World) -> None:
    """The form is in yuan; the API's bound is 1 fen. "须大于或等于 1", with no field named,
    reads as "at least ¥1"."""
    await browser.sign_in(world.enterprise_key)
    form = await browser.get("/console/enterprise/apply")
    answer = await browser.post("/console/enterprise/apply", data={
        "csrf_token": csrf_of(form.text), "programme_id": world.programme["id"], "amount": "0",
        "purpose": "训练行业大模型", "form_key": "review-apply-zero-0001"})
    assert answer.status_code == 422, answer.text[:500]
    error = _alert(answer.text, "apply-error")
    assert "申请金额" in error or "金额" in error, error
    assert not re.search(r"(?<![¥.,0-9])1(?![.,0-9])", error), error  # a bare 1 (fen) beside a yuan field


async def test_a_zero_face_value_on_the_issue_form_states_its_minimum_in_yuan(browser: Browser, world: World) -> None:
    await browser.sign_in(world.operator)
    form = await browser.get("/console/operator/vouchers/issue")
    answer = await browser.post("/console/operator/vouchers/issue", data={
        "csrf_token": csrf_of(form.text), "programme_id": world.programme["id"], "uscc": world.enterprise["uscc"],
        "face_value": "0", "reference": "", "form_key": "review-issue-zero-0001"})
    assert answer.status_code == 422, answer.text[:500]
    error = _alert(answer.text, "issue-error")
    assert "面值" in error, error
    assert not re.search(r"(?<![¥.,0-9])1(?![.,0-9])", error), error


async def test_a_refused_bulk_grant_is_named_by_the_row_the_preview_showed(browser: Browser, world: World) -> None:
    """The preview numbers rows as the file does (the header is row 1); the refusal of the
    batch's second grant must point at row 3 of that table, not "第 2 项"."""
    import html as html_lib

    await browser.sign_in(world.operator)  # zh-CN
    uscc = world.enterprise["uscc"]
    # Each row within the most per voucher (¥8,000,000.00); the two over the enterprise's cap (the same).
    content = f"uscc,face_value,reference\n{uscc},1000.00,B-1\n{uscc},7999999.00,B-2\n".encode()
    token = await browser.csrf("/console/operator/vouchers/bulk")
    preview = await browser.post("/console/operator/vouchers/bulk/preview",
                                 data={"csrf_token": token, "programme_id": world.programme["id"]},
                                 files={"file": ("grants.csv", content, "text/csv")})
    assert preview.status_code == 200, preview.text[:500]
    assert 'id="row-3"' in preview.text
    form = {name: value for name, value in re.findall(r'name="(\w+)" value="([^"]*)"', preview.text)
            if name in ("csrf_token", "form_key", "programme_id", "grants", "rows")}
    form["grants"] = html_lib.unescape(form["grants"])
    refused = await browser.post("/console/operator/vouchers/bulk/issue", data=form)
    assert refused.status_code in (409, 422), refused.text[:500]
    said = re.sub(r"<[^>]+>", " ", html_lib.unescape(refused.text))
    assert "第 3 行" in said, said[-600:]


async def test_the_preview_refuses_a_face_value_over_the_most_per_voucher_on_its_row(
        browser: Browser, world: World) -> None:
    await browser.sign_in(world.operator)  # zh-CN
    uscc = world.enterprise["uscc"]
    content = f"uscc,face_value,reference\n{uscc},1000.00,B-1\n{uscc},9000000.00,B-2\n{uscc},0,B-3\n".encode()
    token = await browser.csrf("/console/operator/vouchers/bulk")
    preview = await browser.post("/console/operator/vouchers/bulk/preview",
                                 data={"csrf_token": token, "programme_id": world.programme["id"]},
                                 files={"file": ("grants.csv", content, "text/csv")})
    assert preview.status_code == 422, preview.text[:500]
    row_3 = re.search(r'id="row-3".*?</tr>', preview.text, re.S)
    assert row_3 is not None and "单券上限" in row_3.group(0) and "¥8,000,000.00" in row_3.group(0), preview.text
    row_4 = re.search(r'id="row-4".*?</tr>', preview.text, re.S)
    assert row_4 is not None and "面值须大于零" in row_4.group(0), preview.text
    assert 'id="issue"' not in preview.text


def test_a_memo_and_a_delivery_error_are_shown_in_the_readers_words() -> None:
    """What the console takes from a memo and from a webhook attempt's error: never the English
    record with its fen figures, whatever the memo's form (the same review)."""
    assert memo_detail("captured 200000 of 300000 for order PO-1", "zh") == "订单 PO-1"
    assert memo_detail("redeemed for order PO-9", "en") == "order PO-9"
    assert memo_detail("revoked: 材料造假", "zh") == "材料造假"
    assert memo_detail("hold released (provider_void): 订单取消", "zh") == "订单取消"
    assert memo_detail("refund to programme pool: 服务未交付", "zh") == "服务未交付"
    assert memo_detail("settlement 0190d5d2 paid, reference ICBC-1", "zh") == "付款流水号 ICBC-1"
    for silent in ("voucher CV-1 issued", "voucher expired: unused value to the pool", "", None):
        assert memo_detail(silent, "zh") == ""
    assert delivery_error("HTTP 500", "zh") == ""  # the status is shown as "answered 500" already
    assert delivery_error("timed out", "zh") == "超时"
    assert delivery_error("refused: the host 'x' does not resolve", "zh").startswith("未发送")
    assert delivery_error("ConnectError: [Errno 111] Connection refused", "zh") == \
        "连接失败（ConnectError: [Errno 111] Connection refused）"


def test_a_revocation_reason_that_mentions_an_order_is_shown_as_the_reason() -> None:
    """memo_detail looks for 'for order X' at the end of any memo before it looks for the typed
    reason: an operator's revocation reason is replaced by 'order PO-7', which reads as though
    the movement were a redemption for that order."""
    memo = "revoked: granted twice by mistake, see the complaint for order PO-7"
    assert memo_detail(memo, "en") == "granted twice by mistake, see the complaint for order PO-7"


def test_a_dns_timeout_is_not_shown_as_a_non_public_address() -> None:
    """Every 'refused: ...' attempt error is shown as 'the address does not resolve to a public
    address', including a transient DNS timeout: a tenant is told its receiver is not public."""
    said = delivery_error("refused: the host 'hooks.example.com' did not resolve within 5 s", "en")
    assert "public" not in said, said
