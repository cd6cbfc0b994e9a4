"""The authorisation matrix (issue 8; DESIGN §3 invariant 8, §5): every operation of the OpenAPI
document × every kind of caller, with the outcome written down here and checked exhaustively.

Callers: the operator, the auditor, enterprise A and provider X (who own the records the paths
name), enterprise B and provider Y (who own none of them), and three that are not let in at all:
no key, a revoked key, an expired key.

Outcomes, one letter per caller in ROLES order:
  y  let through: anything but 401/403 (a real record of the caller's own reads 200; a random id
     404s; a write sent the malformed body `[]` is stopped at validation, 422, so nothing moves)
  n  403 insufficient_scope
  h  404: the record is another tenant's, answered exactly like a missing one
Every operation not in PUBLIC answers 401 to the three callers without a usable key. A new
operation without a row fails `test_every_operation_has_a_row`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.voucher.events import service as events
from services.voucher.settings import Settings
from tests.support import auth, make_key
from tests.world import World, build_world

ROLES = ("operator", "auditor", "enterprise_a", "enterprise_b", "provider_x", "provider_y")
LOCKED_OUT = ("no_key", "revoked_key", "expired_key")
PUBLIC = frozenset({"healthz", "readyz", "metrics", "audit_public_key", "list_problem_types", "get_problem_type",
                    "publicity_notice"})

@pytest.fixture
def settings(database_url: str) -> Settings:
    """As conftest's, in sandbox mode: the sandbox clock's operations are served and so checked.
    The matrix sends a revoked and an expired key to every operation from one address: failed
    authentications, which the failed-login throttle counts (tests/http/test_auth_throttle.py),
    so its limit here is above what the matrix sends."""
    return Settings(database_url=database_url, environment="test", log_level="WARNING",
                    webhook_allowed_networks=["127.0.0.0/8", "::1/128"], sandbox=True,
                    auth_failure_limit="100000/minute")


#          operator, auditor, ent A, ent B, prov X, prov Y
MATRIX: dict[str, str] = {
    # keys: keys:read (office) or keys:self (own keys only)
    "get_me": "yyyyyy",
    # the sandbox clock (the matrix's app runs in sandbox mode, so that it is served)
    "get_sandbox_clock": "yyyyyy",
    "move_sandbox_clock": "ynnnnn",
    "list_api_keys": "yyyyyy",
    "get_api_key": "yyyhhh",                 # enterprise A's key
    "create_api_key": "ynnnnn",
    "revoke_api_key": "ynyyyy",              # a random key id: 404 for those allowed (keys:write or keys:self)
    "rotate_api_key": "ynyyyy",
    # programmes
    "list_programmes": "yyyyyy",
    "get_programme": "yyyyyy",
    "create_programme": "ynnnnn",
    "update_programme": "ynnnnn",
    "open_programme": "ynnnnn",
    "close_programme": "ynnnnn",
    "archive_programme": "ynnnnn",
    "list_enrolments": "yyyyyy",
    "enrol_provider": "ynnnnn",
    "withdraw_provider": "ynnnnn",
    "list_eligibility_rule_versions": "yyyyyy",
    "get_eligibility_rule_version": "yyyyyy",
    "dry_run_eligibility": "ynnnnn",
    "programme_trial_balance": "yynnnn",
    "programme_spending": "yynnnn",
    # registries
    "list_enterprises": "yyyynn",
    "get_enterprise": "yyyhnn",              # enterprise A
    "register_enterprise": "ynnnnn",
    "update_enterprise": "ynnnnn",
    "list_providers": "yynnyy",
    "get_provider": "yynnyh",                # provider X
    "register_provider": "ynnnnn",
    "update_provider": "ynnnnn",
    "approve_provider": "ynnnnn",
    "suspend_provider": "ynnnnn",
    # applications
    "list_applications": "yyyynn",
    "get_application": "yyyhnn",             # enterprise A's
    "application_history": "yyyhnn",
    "submit_application": "nnyynn",
    "dry_run_application": "nnyynn",
    "withdraw_application": "nnyynn",
    "approve_application": "ynnnnn",
    "reject_application": "ynnnnn",
    "lodge_objection": "ynnnnn",
    # vouchers
    "list_vouchers": "yyyynn",
    "get_voucher": "yyyhnn",                 # enterprise A's
    "get_voucher_history": "yyyhnn",
    "get_voucher_clawback": "yyyhnn",
    "list_voucher_clawback_entries": "yyyhnn",
    "issue_voucher": "ynnnnn",
    "issue_vouchers_bulk": "ynnnnn",
    "suspend_voucher": "ynnnnn",
    "resume_voucher": "ynnnnn",
    "revoke_voucher": "ynnnnn",
    "record_clawback": "ynnnnn",
    "record_clawback_repayment": "ynnnnn",
    "write_off_clawback": "ynnnnn",
    "reverse_clawback_entry": "ynnnnn",
    "record_clawback_overpayment_return": "ynnnnn",
    "lookup_voucher": "nnnnyy",
    # redemption
    "list_redemptions": "yyyyyy",
    "get_redemption": "yyyhyh",              # provider X's, of enterprise A's voucher
    "list_refunds": "yyyhyh",
    "redeem": "nnnnyy",
    "create_hold": "nnnnyy",
    "quote_subsidy": "nnnnyy",
    "capture_hold": "nnnnyy",
    "void_hold": "nnnnyy",
    "refund_redemption": "nnnnyy",
    # claims (a random claim id: 404 for those allowed)
    "list_claims": "yyyynn",
    "get_claim": "yyyynn",
    "file_claim": "nnyynn",
    "start_claim_review": "ynnnnn",
    "approve_claim": "ynnnnn",
    "reject_claim": "ynnnnn",
    "pay_claim": "ynnnnn",
    # settlement
    "list_settlements": "yynnyy",
    "get_settlement": "yynnyh",              # provider X's
    "settlement_statement": "yynnyh",
    "settlement_statement_csv": "yynnyh",
    "settlement_statement_xlsx": "yynnyh",
    "create_settlement": "ynnnnn",
    "submit_settlement": "nnnnyy",
    "dispute_settlement": "nnnnyy",
    "resolve_settlement_dispute": "ynnnnn",
    "approve_settlement": "ynnnnn",
    "pay_settlement": "ynnnnn",
    "cancel_settlement": "ynnnnn",
    # usage reconciliation (a random report id)
    "list_usage_reconciliations": "yyyyyy",
    "get_usage_reconciliation": "yyyyyy",
    "reconcile_usage": "nnnnyy",
    # ledger and audit: the office and auditors only; auditors write only verifications and checkpoints
    "reconcile_ledger": "yynnnn",
    "list_ledger_entries": "yynnnn",
    "ledger_account_balance": "yynnnn",
    "list_audit_events": "yynnnn",
    "audit_chain_head": "yynnnn",
    "list_audit_checkpoints": "yynnnn",
    "get_audit_checkpoint": "yynnnn",
    "create_audit_checkpoint": "yynnnn",
    "verify_audit_chain": "yynnnn",
    "get_audit_verification": "yynnnn",
    "anomaly_report": "yynnnn",
    "export_dataset": "yynnnn",
    "get_export_manifest": "yynnnn",
    # events: one's own, or all for the office and auditors
    "list_events": "yyyyyy",
    "get_event": "yyyhyh",                   # a capture: concerns enterprise A and provider X
    # webhook endpoints: the subscriber's own, nobody else's (not even the office's)
    "list_webhook_endpoints": "nnyyyy",
    "webhook_health": "yyyyyy",
    "create_webhook_endpoint": "nnyyyy",
    "get_webhook_endpoint": "nnhhyh",        # provider X's
    "update_webhook_endpoint": "nnyyyy",     # malformed body: stopped before the owner check
    "list_webhook_deliveries": "nnhhyh",
    "redeliver_webhook": "nnhhyh",
    "rotate_webhook_secret": "nnhhyh",
    "delete_webhook_endpoint": "nnhhyh",
}

#: Run last, in this order: they change what other rows read (X's endpoint, X's enrolment).
LAST = ("rotate_webhook_secret", "enrol_provider", "withdraw_provider", "delete_webhook_endpoint")
#: Operations whose path names a random id: those let through may answer 404.
RANDOM_IDS = frozenset({"revoke_api_key", "rotate_api_key", "get_claim", "start_claim_review", "approve_claim",
                        "reject_claim", "pay_claim", "get_usage_reconciliation", "get_audit_checkpoint",
                        "get_audit_verification", "get_export_manifest", "ledger_account_balance",
                        "redeliver_webhook"})
#: Writes whose scope is checked in the handler (after the body is parsed): they get a valid body.
VALID_BODIES: dict[str, Any] = {"revoke_api_key": {"reason": "matrix"}, "rotate_api_key": {"grace_seconds": 0}}
#: Path parameters of their own: those two get a random key (a real one would be revoked or rotated).
OWN_PARAMS: dict[str, dict[str, str]] = {op: {"key_id": str(uuid.uuid4())} for op in ("revoke_api_key", "rotate_api_key")}


def _operations(app: Any) -> dict[str, tuple[str, str, dict[str, Any]]]:
    found = {}
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            found[operation["operationId"]] = (method.upper(), path, operation)
    return found


def test_every_operation_has_a_row(app: Any) -> None:
    operations = set(_operations(app))
    assert not operations - MATRIX.keys() - PUBLIC, f"operations with no row: {sorted(operations - MATRIX.keys() - PUBLIC)}"
    assert not (MATRIX.keys() | PUBLIC) - operations, f"rows for no operation: {sorted((MATRIX.keys() | PUBLIC) - operations)}"
    assert all(re.fullmatch("[ynh]{6}", row) for row in MATRIX.values())
    assert not MATRIX.keys() & PUBLIC


def test_the_public_operations_are_those_the_document_asks_no_key_for(app: Any) -> None:
    """The fuzz pass sends callers without a key only the operations the document gives no
    security requirement (tests/fuzz), on the strength of this matrix checking every other."""
    assert {name for name, (_, _, operation) in _operations(app).items() if "security" not in operation} == PUBLIC


async def test_a_caller_without_a_key_is_refused_before_its_query_is_read(app: Any, client: httpx.AsyncClient) -> None:
    """Authentication comes first: a list asked for with a malformed cursor, or limit, by a caller
    without a key answers 401, not the 422 that would tell it how the query is read (the keys
    list read its page before its caller, an independent review)."""
    listed = [path for _, (method, path, operation) in sorted(_operations(app).items())
              if method == "GET" and "security" in operation
              and any(p["name"] == "cursor" for p in operation.get("parameters", []))]
    assert len(listed) > 20
    for path in listed:
        concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        for query in ({"cursor": "zz"}, {"limit": "0"}):
            response = await client.get(concrete, params=query)
            assert response.status_code == 401, (path, query, response.status_code, response.text[:200])
            assert response.headers["content-type"].startswith("application/problem+json")


async def _setting(app: Any, client: httpx.AsyncClient, clock: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The callers' keys, and the value of every path parameter (records of A and X)."""
    a: World = await build_world(app, client)
    b: World = await build_world(app, client)
    voucher = await a.issue(10_000_000)
    redeemed = await a.hold(voucher, 1_000_000, order="MATRIX-1", path="/v1/redemptions")
    assert redeemed.status_code == 201, redeemed.text
    applied = await client.post("/v1/applications", headers=auth(a.enterprise_key, **{"Idempotency-Key": "m-app"}),
                                json={"programme_id": a.programme["id"], "requested_amount": 1_000_000,
                                      "purpose": "matrix"})
    assert applied.status_code == 201, applied.text
    hook = await client.post("/v1/webhook-endpoints", headers=auth(a.provider_key, **{"Idempotency-Key": "m-hook"}),
                             json={"url": "http://127.0.0.1:9/hook", "event_types": ["redemption.captured"]})
    assert hook.status_code == 201, hook.text
    await events.publish_pending(app.state.database, clock())
    event = (await client.get("/v1/events", headers=auth(a.provider_key))).json()["items"][0]
    me = (await client.get("/v1/me", headers=auth(a.enterprise_key))).json()
    day = clock().astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    clock.advance(days=2)
    settled = await client.post("/v1/settlements", headers=auth(a.operator, **{"Idempotency-Key": "m-settle"}),
                                json={"provider_id": a.provider["id"], "programme_id": a.programme["id"],
                                      "period_start": day, "period_end": day})
    assert settled.status_code == 201, settled.text
    revoked = await make_key(app, "enterprise", enterprise_id=a.enterprise["id"])
    revoked_id = (await client.get("/v1/me", headers=auth(revoked))).json()["key_id"]
    done = await client.post(f"/v1/api-keys/{revoked_id}/revoke", json={"reason": "matrix"}, headers=auth(a.operator))
    assert done.status_code == 200, done.text
    expired = await make_key(app, "enterprise", enterprise_id=a.enterprise["id"], expires_at=clock() + timedelta(hours=1))
    clock.advance(hours=2)
    keys = {"operator": a.operator, "auditor": a.auditor, "enterprise_a": a.enterprise_key,
            "enterprise_b": b.enterprise_key, "provider_x": a.provider_key, "provider_y": b.provider_key,
            "revoked_key": revoked, "expired_key": expired}
    random_id = str(uuid.uuid4())
    params = {
        "programme_id": a.programme["id"], "enterprise_id": a.enterprise["id"], "provider_id": a.provider["id"],
        "voucher_id": voucher["id"], "redemption_id": redeemed.json()["id"], "settlement_id": settled.json()["id"],
        "application_id": applied.json()["id"], "key_id": me["key_id"], "endpoint_id": hook.json()["id"],
        "event_id": event["id"], "version": "1", "code": "not_found", "dataset": "ledger-entries",
        "claim_id": random_id, "checkpoint_id": random_id, "verification_id": random_id, "export_id": random_id,
        "report_id": random_id, "delivery_id": random_id, "account_id": random_id,
    }
    return keys, params


def _expected(op: str, caller: str) -> str:
    if op in PUBLIC:
        return "y"
    if caller in LOCKED_OUT:
        return "u"
    return MATRIX[op][ROLES.index(caller)]


def _judge(op: str, caller: str, expected: str, response: httpx.Response, method: str) -> str | None:
    status = response.status_code
    if status >= 500:
        return f"{op} as {caller}: {status} {response.text[:200]}"
    wanted: dict[str, Callable[[int], bool]] = {
        "u": lambda s: s == 401,
        "n": lambda s: s == 403,
        "h": lambda s: s == 404,
        "y": lambda s: s not in (401, 403) and (method != "GET" or op in RANDOM_IDS or 200 <= s < 300),
    }
    if not wanted[expected](status):
        return f"{op} as {caller}: expected {expected!r}, got {status} {response.text[:160]}"
    if expected in "unh" and response.headers.get("content-type", "").split(";")[0] != "application/problem+json":
        return f"{op} as {caller}: {status} is not problem+json"
    return None


async def test_every_operation_for_every_caller(app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    keys, params = await _setting(app, client, clock)
    operations = _operations(app)
    order = [op for op in sorted(operations) if op not in LAST] + list(LAST)
    problems = []
    for op in order:
        method, template, operation = operations[op]
        values = {**params, **OWN_PARAMS.get(op, {})}
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        callers = [*LOCKED_OUT, *ROLES]
        # Those let through go last, the owner (whose call may change the record) very last.
        callers.sort(key=lambda c: (_expected(op, c) == "y", c in ("provider_x", "enterprise_a")))
        for caller in callers:
            headers = auth(keys[caller]) if caller in keys else {}
            if method != "GET":
                headers["Idempotency-Key"] = str(uuid.uuid4())
            body = VALID_BODIES.get(op, []) if "requestBody" in operation else None
            response = await client.request(method, path, headers=headers,
                                            **({"json": body} if body is not None else {}))
            problem = _judge(op, caller, _expected(op, caller), response, method)
            if problem:
                problems.append(problem)
    assert not problems, f"{len(problems)} cells differ from the matrix:\n" + "\n".join(problems)


# -- key creation and rotation by narrowed keys (issue 19, finding 1; DESIGN §8) -----------------

#: Callers of the key-grant matrix: the full operator key, three narrowed operator keys, an
#: enterprise's full key and the auditor.
GRANT_CALLERS = ("operator", "keys_write_only", "keys_write_and_reads", "keys_self_only", "enterprise", "auditor")
#: y 201; e 403 scope_escalation; n 403 insufficient_scope; h 404 (another principal's key).
GRANTS: dict[str, str] = {
    "create an operator key": "yeennn",
    "create a provider key": "yeennn",
    "create an auditor key with programmes:read": "yeynnn",
    "rotate the provider's key": "yeehhn",
    "rotate a full operator key": "yeehhn",
    "rotate a narrow keys:write key": "yyyhhn",
    "rotate its own key": "yyyyyn",
}


async def test_key_grants_by_narrowed_keys(app: Any, client: httpx.AsyncClient) -> None:
    world: World = await build_world(app, client)
    keys = {
        "operator": world.operator,
        "keys_write_only": await make_key(app, "operator", scopes=["keys:write"]),
        "keys_write_and_reads": await make_key(app, "operator", scopes=["keys:write", "keys:read", "programmes:read"]),
        "keys_self_only": await make_key(app, "operator", scopes=["keys:self"]),
        "enterprise": world.enterprise_key,
        "auditor": world.auditor,
    }

    async def key_id(secret: str) -> str:
        return str((await client.get("/v1/me", headers=auth(secret))).json()["key_id"])

    async def attempt(action: str, caller: str) -> httpx.Response:
        headers = auth(keys[caller])
        if action.startswith("create"):
            body = {
                "create an operator key": {"role": "operator", "principal_name": "minted"},
                "create a provider key": {"role": "provider", "provider_id": world.provider["id"]},
                "create an auditor key with programmes:read": {"role": "auditor", "principal_name": "minted",
                                                               "scopes": ["programmes:read"]},
            }[action]
            return await client.post("/v1/api-keys", json={"name": "grant", **body}, headers=headers)
        target = {
            "rotate the provider's key": lambda: make_key(app, "provider", provider_id=world.provider["id"]),
            "rotate a full operator key": lambda: make_key(app, "operator"),
            "rotate a narrow keys:write key": lambda: make_key(app, "operator", scopes=["keys:write"]),
        }.get(action)
        victim = await key_id(await target() if target else keys[caller])
        return await client.post(f"/v1/api-keys/{victim}/rotate", json={"grace_seconds": 60}, headers=headers)

    wanted = {"y": (201, None), "e": (403, "scope_escalation"), "n": (403, "insufficient_scope"),
              "h": (404, "not_found")}
    problems = []
    for action, row in GRANTS.items():
        for caller, expected in zip(GRANT_CALLERS, row, strict=True):
            response = await attempt(action, caller)
            status, code = wanted[expected]
            if response.status_code != status or (code and response.json().get("code") != code):
                problems.append(f"{action} by {caller}: expected {expected!r}, got {response.status_code} "
                                f"{response.text[:160]}")
    assert not problems, "\n".join(problems)
