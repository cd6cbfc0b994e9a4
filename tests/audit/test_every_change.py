"""Every state-changing operation of the API writes its audit event (DESIGN §3, invariant 7).

OPERATIONS names, for each POST/PUT/PATCH/DELETE operation of the OpenAPI document, the audit
actions a successful call must write (and whether it moves value, so `ledger.posted` events
must accompany it); EXEMPT names the few that change no domain state. A new route in neither
breaks the build, and so does a row for a route that is gone.

One walk through the HTTP API calls every operation of the table successfully; after each call
the events carrying the response's `x-request-id` are read straight from the database and
checked: the expected actions, the caller's identity (from GET /v1/me with the same key), the
Idempotency-Key sent, the instant, the resource, the before/after of the change, and that the
request's ledger journals are exactly its `ledger.posted` events. The walk runs once per test
session (it is long); each operation is its own test case over its findings.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.voucher.events import service as events
from services.voucher.tables import AuditEvent, LedgerTransaction, OutboxEvent
from tests.support import (
    auth,
    enterprise_payload,
    fresh_key,
    make_key,
    programme_payload,
    provider_payload,
)
from tests.world import build_world, hold_body

STATE_CHANGING = {"post", "put", "patch", "delete"}
LEDGER = "ledger.posted"


@dataclass(frozen=True)
class Writes:
    """The audit actions a successful call must write; `ledger`: it moves value, so at least
    one `ledger.posted` event (with its journal) comes with it."""

    actions: tuple[str, ...]
    ledger: bool = False


OPERATIONS: dict[str, Writes] = {
    # API keys
    "create_api_key": Writes(("api_key.created",)),
    "revoke_api_key": Writes(("api_key.revoked",)),
    "rotate_api_key": Writes(("api_key.rotated", "api_key.created")),
    # programmes
    "create_programme": Writes(("programme.created",)),
    "update_programme": Writes(("programme.updated",)),
    "open_programme": Writes(("programme.open",), ledger=True),  # the budget is funded
    "close_programme": Writes(("programme.closed",)),
    "archive_programme": Writes(("programme.archived",)),
    "enrol_provider": Writes(("programme.provider_enrolled",)),
    "withdraw_provider": Writes(("programme.provider_withdrawn",)),
    # enterprises and providers
    "register_enterprise": Writes(("enterprise.registered",)),
    "update_enterprise": Writes(("enterprise.updated",)),
    "register_provider": Writes(("provider.registered",)),
    "update_provider": Writes(("provider.updated",)),
    "approve_provider": Writes(("provider.approved",)),
    "suspend_provider": Writes(("provider.suspended",)),
    # applications
    "submit_application": Writes(("application.submitted", "application.under_review")),
    "approve_application": Writes(("application.approved", "application.publicity"), ledger=True),
    "reject_application": Writes(("application.rejected",)),  # after an objection: the commitment is released
    "lodge_objection": Writes(("application.under_review",)),  # the commitment is held while it is examined
    "withdraw_application": Writes(("application.withdrawn",)),
    # vouchers
    "issue_voucher": Writes(("voucher.issued",), ledger=True),
    "issue_vouchers_bulk": Writes(("voucher.issued",), ledger=True),
    "suspend_voucher": Writes(("voucher.suspended",)),
    "resume_voucher": Writes(("voucher.resumed",)),
    "revoke_voucher": Writes(("voucher.revoked",), ledger=True),
    "record_clawback": Writes(("voucher.clawback_recorded",), ledger=True),
    "record_clawback_repayment": Writes(("voucher.clawback_repaid",), ledger=True),
    "write_off_clawback": Writes(("voucher.clawback_written_off",), ledger=True),
    "reverse_clawback_entry": Writes(("voucher.clawback_write_off_reversed",), ledger=True),
    "record_clawback_overpayment_return": Writes(("voucher.clawback_overpayment_returned",), ledger=True),
    # redemption
    "create_hold": Writes(("hold.placed",), ledger=True),
    "redeem": Writes(("redemption.captured",), ledger=True),  # one step, one state change, one journal
    "capture_hold": Writes(("redemption.captured",), ledger=True),
    "void_hold": Writes(("hold.voided",), ledger=True),
    "refund_redemption": Writes(("refund.created",), ledger=True),
    # enterprise claims
    "file_claim": Writes(("claim.submitted", "hold.placed"), ledger=True),
    "start_claim_review": Writes(("claim.under_review",)),
    "approve_claim": Writes(("claim.approved", "redemption.captured"), ledger=True),
    "reject_claim": Writes(("claim.rejected", "hold.voided"), ledger=True),
    "pay_claim": Writes(("claim.paid",), ledger=True),
    # settlement
    "create_settlement": Writes(("settlement.created",)),
    "submit_settlement": Writes(("settlement.submitted",)),
    "dispute_settlement": Writes(("settlement.disputed",)),
    "resolve_settlement_dispute": Writes(("settlement.submitted",)),
    "approve_settlement": Writes(("settlement.approved",)),
    "pay_settlement": Writes(("settlement.paid",), ledger=True),
    "cancel_settlement": Writes(("settlement.cancelled",)),
    # usage
    "reconcile_usage": Writes(("usage_reconciliation.created",)),
    # webhooks
    "create_webhook_endpoint": Writes(("webhook_endpoint.created",)),
    "update_webhook_endpoint": Writes(("webhook_endpoint.updated",)),
    "rotate_webhook_secret": Writes(("webhook_endpoint.secret_rotated",)),
    "delete_webhook_endpoint": Writes(("webhook_endpoint.deleted",)),
    "redeliver_webhook": Writes(("webhook_delivery.redelivered",)),
}

EXEMPT: dict[str, str] = {
    "dry_run_eligibility": "judges given rules and facts; stores nothing",
    "dry_run_application": "judges the calling enterprise as submitting would; stores nothing",
    "lookup_voucher": "a read by POST (the code and USCC stay out of URLs and logs)",
    "quote_subsidy": "a hold decided and rolled back, always: stores nothing (tests/redemption/test_quote.py)",
    "verify_audit_chain": "the audit trail's own record of a verification, not a domain change",
    "create_audit_checkpoint": "the audit trail's own signed checkpoint, not a domain change",
    "move_sandbox_clock": "sandbox mode only (this walk's app answers 404); its `sandbox.clock_moved` event, "
                          "actor and times are checked by tests/sandbox/test_clock.py",
}

#: Operations whose audit is known to be wrong: operationId -> the bug (reported, xfail strict).
KNOWN_BUGS: dict[str, str] = {}


def _state_changing(app: Any) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (METHOD, path template, operation) of every state-changing operation."""
    found = {}
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            if method in STATE_CHANGING:
                found[operation["operationId"]] = (method.upper(), path, operation)
    return found


def _takes_idempotency_key(operation: dict[str, Any]) -> bool:
    return any(p.get("in") == "header" and p.get("name", "").lower() == "idempotency-key"
               for p in operation.get("parameters", []))


async def test_every_state_changing_operation_is_in_the_table_or_exempt(app: Any) -> None:
    operations = set(_state_changing(app))
    unaudited = sorted(operations - OPERATIONS.keys() - EXEMPT.keys())
    assert not unaudited, f"state-changing operations with no audit row in OPERATIONS (nor EXEMPT): {unaudited}"
    gone = sorted((OPERATIONS.keys() | EXEMPT.keys() | KNOWN_BUGS.keys()) - operations)
    assert not gone, f"rows for operations that no longer exist: {gone}"
    assert not OPERATIONS.keys() & EXEMPT.keys()
    assert all(reason.strip() for reason in EXEMPT.values())


# -- the walk -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """A key and whom it acts for, as GET /v1/me tells."""

    key: str
    principal_id: uuid.UUID
    role: str
    key_id: uuid.UUID


@dataclass
class Walk:
    app: Any
    client: httpx.AsyncClient
    clock: Any
    routes: dict[str, tuple[str, str, dict[str, Any]]]
    calls: Counter[str] = field(default_factory=Counter)
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    #: The outbox event types the walk wrote (issue 7).
    announced: set[str] = field(default_factory=set)

    async def me(self, key: str) -> Caller:
        response = await self.client.get("/v1/me", headers=auth(key))
        assert response.status_code == 200, response.text
        body = response.json()
        return Caller(key, uuid.UUID(body["principal_id"]), body["role"], uuid.UUID(body["key_id"]))

    async def new_caller(self, role: str, **kwargs: Any) -> Caller:
        return await self.me(await make_key(self.app, role, **kwargs))

    def _request(self, op: str, path: str) -> str:
        """The operation's method, after checking `path` is really its route."""
        method, template, _ = self.routes[op]
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        assert re.match(pattern, path), f"{path} is not the route of {op} ({template})"
        return method

    async def _send(self, op: str, path: str, who: Caller, body: Any, headers: dict[str, str]) -> tuple[
            httpx.Response, str | None]:
        method = self._request(op, path)
        idem = str(uuid.uuid4()) if _takes_idempotency_key(self.routes[op][2]) else None
        sent = auth(who.key, **headers, **({"Idempotency-Key": idem} if idem else {}))
        response = await self.client.request(method, path, json=body, headers=sent)
        return response, idem

    async def events(self, request_id: str) -> tuple[list[AuditEvent], set[uuid.UUID]]:
        """The request's audit events, and the ids of the ledger journals it wrote."""
        async with self.app.state.database.unit_of_work(write=False) as session:
            events = list((await session.execute(
                select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(AuditEvent.id)
            )).scalars())
            journals = set((await session.execute(
                select(LedgerTransaction.id).where(LedgerTransaction.request_id == request_id)
            )).scalars())
        return events, journals

    async def call(
        self, op: str, path: str, who: Caller, body: Any = None, *, status: int = 200,
        headers: dict[str, str] | None = None, resource: tuple[str, str | None] | None = None,
        also: tuple[str, ...] = (), count: dict[str, int] | None = None,
        changes: dict[str, tuple[dict[str, Any], dict[str, Any]]] | None = None,
    ) -> dict[str, Any]:
        """Call `op` successfully and check what it wrote to the audit trail.

        resource: (type, id) one of the expected events is about (id None: the response's id);
        also: actions this particular call writes besides the table's; count: exact numbers of
        some actions; changes: action -> (subset of its `before`, subset of its `after`)."""
        now = self.clock()
        response, idem = await self._send(op, path, who, body, headers or {})
        assert response.status_code == status, f"{op}: {response.status_code} {response.text}"
        self.calls[op] += 1
        answer = response.json() if response.content else {}
        request_id = response.headers["x-request-id"]
        events, journals = await self.events(request_id)
        problem = self.problems[op].append
        expected = OPERATIONS[op]
        actions = [e.action for e in events]
        for action in (*expected.actions, *also):
            if action not in actions:
                problem(f"no {action!r} event (request {request_id} wrote {actions})")
        for action, n in (count or {}).items():
            if actions.count(action) != n:
                problem(f"{actions.count(action)} {action!r} events, expected {n}")
        for e in events:
            where = f"{e.action} event {e.id}"
            if (e.actor_role, e.actor_principal_id, e.actor_key_id) != (who.role, who.principal_id, who.key_id):
                problem(f"{where}: actor {(e.actor_role, e.actor_principal_id, e.actor_key_id)}, "
                        f"the caller is {(who.role, who.principal_id, who.key_id)}")
            if e.idempotency_key != idem:
                problem(f"{where}: idempotency_key {e.idempotency_key!r}, the request sent {idem!r}")
            if e.occurred_at != now:
                problem(f"{where}: occurred_at {e.occurred_at}, the request ran at {now}")
            if (e.action == LEDGER) != (e.journal_id is not None):
                problem(f"{where}: journal_id {e.journal_id}")
            if e.action == LEDGER and e.resource_id != e.journal_id:
                problem(f"{where}: resource {e.resource_id} is not its journal {e.journal_id}")
        posted = {e.journal_id for e in events if e.action == LEDGER}
        if expected.ledger and not posted:
            problem("moves value but wrote no ledger.posted event")
        if posted != journals:
            problem(f"journals written {sorted(map(str, journals))} != ledger.posted events {sorted(map(str, posted))}")
        if resource is not None:
            kind, rid = resource[0], resource[1] or answer["id"]
            if not any(e.action in expected.actions and (e.resource_type, str(e.resource_id)) == (kind, rid)
                       for e in events):
                problem(f"no {expected.actions} event about {kind} {rid}: "
                        f"{[(e.action, e.resource_type, str(e.resource_id)) for e in events]}")
        for action, (before, after) in (changes or {}).items():
            matching = [e for e in events if e.action == action]
            if not any(_contains(e.before, before) and _contains(e.after, after) for e in matching):
                problem(f"no {action!r} event with before ⊇ {before} and after ⊇ {after}: "
                        f"{[(e.before, e.after) for e in matching]}")
        return answer  # type: ignore[no-any-return]

    async def exempt(self, op: str, path: str, who: Caller, body: Any = None, *, status: int = 200) -> dict[str, Any]:
        """Call an EXEMPT operation: it writes no audit event (nor ledger journal) at all."""
        assert op in EXEMPT
        response, _ = await self._send(op, path, who, body, {})
        assert response.status_code == status, f"{op}: {response.status_code} {response.text}"
        events, journals = await self.events(response.headers["x-request-id"])
        assert [e.action for e in events] == [] and not journals, f"{op} is exempt but wrote {events}"
        return response.json()  # type: ignore[no-any-return]


def _contains(stored: dict[str, Any] | None, subset: dict[str, Any]) -> bool:
    return all((stored or {}).get(k, ...) == v for k, v in subset.items())


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _claim(voucher: dict[str, Any], provider: dict[str, Any], n: int, amount: int = 2_000_000) -> dict[str, Any]:
    return {
        "voucher_id": voucher["id"], "provider_id": provider["id"], "contract_number": f"SZ-2026-{n}",
        "invoice_number": f"4403{n:04d}", "invoice_code": "3300231130", "invoice_date": "2026-03-01",
        "amount_paid": amount,
        "line_items": [{"category": "accelerator:domestic", "amount": amount, "accelerator": "Ascend 910B",
                        "hours_milli": 150_000}],
        "documents": [{"file_name": f"invoice-{n}.pdf", "media_type": "application/pdf", "size": 1024,
                       "sha256": _digest(f"invoice-{n}")}],
    }


TERMS = {"tiers": [], "stacking_ceiling_bps": 10_000, "rate_table": {"accelerator:domestic": 3000},
         "budget_total": 1_000_000_000, "enterprise_cap": 200_000_000, "max_per_voucher": 100_000_000,
         "publicity_days": 5, "voucher_validity_days": 365}
DAY = "2026-03-02"  # the fixture clock's day in Asia/Shanghai; it is over once the clock moves a day on


async def _etag(w: Walk, who: Caller, path: str) -> str:
    response = await w.client.get(path, headers=auth(who.key))
    assert response.status_code == 200, response.text
    return response.headers["etag"]


async def walk_everything(w: Walk) -> None:
    operator = await w.new_caller("operator")
    auditor = await w.new_caller("auditor")

    # -- programmes, enterprises, providers -------------------------------------------------------
    programme = await w.call("create_programme", "/v1/programmes", operator, programme_payload(**TERMS), status=201,
                             resource=("programme", None))
    pid = programme["id"]
    await w.call("update_programme", f"/v1/programmes/{pid}", operator, {"name": "Audited compute programme"},
                 headers={"If-Match": await _etag(w, operator, f"/v1/programmes/{pid}")},
                 resource=("programme", pid), changes={"programme.updated": (
                     {"name": programme["name"]}, {"name": "Audited compute programme"})})
    await w.call("open_programme", f"/v1/programmes/{pid}/open", operator, resource=("programme", pid),
                 changes={"programme.open": ({"status": "draft"}, {"status": "open"})})
    enterprise = await w.call("register_enterprise", "/v1/enterprises", operator, enterprise_payload(), status=201,
                              resource=("enterprise", None))
    eid = enterprise["id"]
    await w.call("update_enterprise", f"/v1/enterprises/{eid}", operator, {"headcount": 30},
                 headers={"If-Match": await _etag(w, operator, f"/v1/enterprises/{eid}")},
                 resource=("enterprise", eid), changes={"enterprise.updated": ({"headcount": 20}, {"headcount": 30})})
    provider = await w.call("register_provider", "/v1/providers", operator, provider_payload(), status=201,
                            resource=("provider", None))
    rid = provider["id"]
    await w.call("approve_provider", f"/v1/providers/{rid}/approve", operator, {"reason": "documents verified"},
                 resource=("provider", rid),
                 changes={"provider.approved": ({"status": "pending"}, {"status": "approved"})})
    await w.call("update_provider", f"/v1/providers/{rid}", operator, {"name": "杭州审计算力有限公司"},
                 headers={"If-Match": await _etag(w, operator, f"/v1/providers/{rid}")}, resource=("provider", rid),
                 changes={"provider.updated": ({"name": provider["name"]}, {"name": "杭州审计算力有限公司"})})
    await w.call("enrol_provider", f"/v1/programmes/{pid}/enrolments/{rid}", operator, status=201,
                 changes={"programme.provider_enrolled": ({}, {"withdrawn_at": None})})

    # -- API keys: the enterprise's and the provider's keys are made through the API ------------------
    ent_key = await w.call("create_api_key", "/v1/api-keys", operator,
                           {"role": "enterprise", "name": "finance desk", "enterprise_id": eid}, status=201,
                           resource=("api_key", None))
    ent = await w.me(ent_key["key"])
    prov_key = await w.call("create_api_key", "/v1/api-keys", operator,
                            {"role": "provider", "name": "billing", "provider_id": rid}, status=201,
                            resource=("api_key", None))
    prov = await w.me(prov_key["key"])
    hook = await w.call("create_webhook_endpoint", "/v1/webhook-endpoints", prov,
                        {"url": "http://127.0.0.1:9/hook", "event_types": ["redemption.captured", "refund.created"]},
                        status=201, resource=("webhook_endpoint", None),
                        changes={"webhook_endpoint.created": ({}, {"url": "http://127.0.0.1:9"})})
    hook_path = f"/v1/webhook-endpoints/{hook['id']}"
    await w.call("update_webhook_endpoint", hook_path, prov, {"description": "billing"},
                 headers={"If-Match": await _etag(w, prov, hook_path)}, resource=("webhook_endpoint", hook["id"]),
                 changes={"webhook_endpoint.updated": ({"description": None}, {"description": "billing"})})
    await w.call("rotate_webhook_secret", f"{hook_path}/secret-rotations", prov, resource=("webhook_endpoint", hook["id"]))
    spare = await w.call("create_api_key", "/v1/api-keys", operator,
                         {"role": "enterprise", "name": "spare", "enterprise_id": eid}, status=201)
    rotated = await w.call("rotate_api_key", f"/v1/api-keys/{spare['id']}/rotate", operator, {"grace_seconds": 0},
                           status=201, resource=("api_key", spare["id"]))
    await w.call("revoke_api_key", f"/v1/api-keys/{rotated['id']}/revoke", ent, {"reason": "laptop lost"},
                 resource=("api_key", rotated["id"]),
                 changes={"api_key.revoked": ({"revoked_at": None}, {"revoked_reason": "laptop lost"})})

    # -- a second programme: enrolment withdrawn, closed, archived; a provider suspended ---------------
    second = await w.call("create_programme", "/v1/programmes", operator, programme_payload(**TERMS), status=201)
    sid = second["id"]
    await w.call("enrol_provider", f"/v1/programmes/{sid}/enrolments/{rid}", operator, status=201)
    await w.call("withdraw_provider", f"/v1/programmes/{sid}/enrolments/{rid}", operator,
                 changes={"programme.provider_withdrawn": ({"withdrawn_at": None}, {})})
    await w.call("open_programme", f"/v1/programmes/{sid}/open", operator)
    await w.call("close_programme", f"/v1/programmes/{sid}/close", operator, {"reason": "round over"},
                 resource=("programme", sid), changes={"programme.closed": ({"status": "open"}, {"status": "closed"})})
    await w.call("archive_programme", f"/v1/programmes/{sid}/archive", operator, resource=("programme", sid),
                 changes={"programme.archived": ({"status": "closed"}, {"status": "archived"})})
    other = await w.call("register_provider", "/v1/providers", operator, provider_payload(), status=201)
    await w.call("approve_provider", f"/v1/providers/{other['id']}/approve", operator, {"reason": "ok"})
    await w.call("suspend_provider", f"/v1/providers/{other['id']}/suspend", operator, {"reason": "complaints"},
                 resource=("provider", other["id"]),
                 changes={"provider.suspended": ({"status": "approved"}, {"status": "suspended"})})

    # -- applications ------------------------------------------------------------------------------
    apply = {"programme_id": pid, "requested_amount": 10_000_000, "purpose": "fine-tuning an inspection model"}
    first = await w.call("submit_application", "/v1/applications", ent, apply, status=201,
                         resource=("application", None))
    path = f"/v1/applications/{first['id']}"
    await w.call("approve_application", f"{path}/approve", operator, {"amount": 10_000_000},
                 resource=("application", first["id"]),
                 changes={"application.approved": ({"status": "under_review"}, {"approved_amount": 10_000_000}),
                          "application.publicity": ({"status": "approved"}, {"status": "publicity"})})
    await w.call("lodge_objection", f"{path}/objections", operator,
                 {"statement": "the applicant and the provider share a shareholder", "objector": "a letter"},
                 resource=("application", first["id"]), count={LEDGER: 0},
                 changes={"application.under_review": ({"status": "publicity"},
                                                       {"status": "under_review", "approved_amount": 10_000_000})})
    await w.call("reject_application", f"{path}/reject", operator, {"reason": "outside the programme's scope"},
                 resource=("application", first["id"]), count={LEDGER: 1},
                 changes={"application.rejected": ({"status": "under_review"},
                                                   {"status": "rejected", "approved_amount": None})})
    again = await w.call("submit_application", "/v1/applications", ent, apply, status=201)
    await w.call("withdraw_application", f"/v1/applications/{again['id']}/withdraw", ent,
                 {"reason": "project postponed"}, resource=("application", again["id"]),
                 changes={"application.withdrawn": ({"status": "under_review"}, {"status": "withdrawn"})})

    # -- vouchers ----------------------------------------------------------------------------------
    grant = {"programme_id": pid, "enterprise_id": eid}
    voucher = await w.call("issue_voucher", "/v1/vouchers", operator, {**grant, "face_value": 10_000_000},
                           status=201, resource=("voucher", None), count={"voucher.issued": 1, LEDGER: 1},
                           changes={"voucher.issued": ({}, {"face_value": 10_000_000, "status": "active"})})
    vpath = f"/v1/vouchers/{voucher['id']}"
    await w.call("suspend_voucher", f"{vpath}/suspend", operator, {"reason": "check"}, resource=("voucher", voucher["id"]),
                 changes={"voucher.suspended": ({"status": "active"}, {"status": "suspended", "status_reason": "check"})})
    await w.call("resume_voucher", f"{vpath}/resume", operator, {"reason": "ok"}, resource=("voucher", voucher["id"]),
                 changes={"voucher.resumed": ({"status": "suspended"}, {"status": "active"})})
    bulk = {"programme_id": pid, "grants": [{"enterprise_id": eid, "face_value": 1_000_000},
                                            {"enterprise_id": eid, "face_value": 2_000_000}]}
    await w.call("issue_vouchers_bulk", "/v1/vouchers/bulk", operator, bulk, status=201,
                 count={"voucher.issued": 2, LEDGER: 2})
    await w.exempt("lookup_voucher", "/v1/vouchers/lookup", prov,
                   {"code": voucher["code"], "enterprise_uscc": enterprise["uscc"]})

    # -- redemption --------------------------------------------------------------------------------
    def order(target: dict[str, Any], ref: str, spend: int) -> dict[str, Any]:
        return hold_body(target["code"], enterprise["uscc"], ref, [("accelerator:domestic", spend)])

    hold = await w.call("create_hold", "/v1/redemptions/holds", prov, order(voucher, "PO-1", 1_000_000), status=201,
                        resource=("redemption", None),
                        changes={"hold.placed": ({}, {"status": "held", "held_amount": 300_000})})
    await w.call("capture_hold", f"/v1/redemptions/{hold['id']}/capture", prov, {"amount": 200_000},
                 resource=("redemption", hold["id"]),
                 changes={"redemption.captured": ({"status": "held"}, {"status": "captured", "captured_amount": 200_000})})
    voided = await w.call("create_hold", "/v1/redemptions/holds", prov, order(voucher, "PO-2", 1_000_000), status=201)
    await w.call("void_hold", f"/v1/redemptions/{voided['id']}/void", prov, resource=("redemption", voided["id"]),
                 changes={"hold.voided": ({"status": "held"}, {"status": "voided", "released": 300_000})})
    small = await w.call("issue_voucher", "/v1/vouchers", operator, {**grant, "face_value": 3_000_000}, status=201)
    redeemed = await w.call("redeem", "/v1/redemptions", prov, order(small, "PO-3", 10_000_000), status=201,
                            resource=("redemption", None), also=("voucher.exhausted",),
                            changes={"voucher.exhausted": ({"status": "active"}, {"status": "exhausted"})})
    await w.call("refund_redemption", f"/v1/redemptions/{redeemed['id']}/refunds", prov,
                 {"amount": 1_000_000, "reason": "partial"}, status=201, resource=("redemption", redeemed["id"]),
                 also=("voucher.active",),
                 changes={"refund.created": ({"refunded_amount": 0}, {"refunded_amount": 1_000_000}),
                          "voucher.active": ({"status": "exhausted"}, {"status": "active"})})
    await w.call("revoke_voucher", f"{vpath}/revoke", operator, {"reason": "fraud", "clawback": 100_000},
                 resource=("voucher", voucher["id"]), count={LEDGER: 2},  # unused value back; the clawback
                 changes={"voucher.revoked": ({"status": "active"}, {"status": "revoked"})})
    await w.call("record_clawback", f"{vpath}/clawback", operator, {"amount": 50_000, "reason": "more found"},
                 resource=("voucher", voucher["id"]), count={LEDGER: 1},
                 changes={"voucher.clawback_recorded": ({"clawback_owed": 100_000},
                                                        {"clawback_owed": 150_000, "amount": 50_000})})
    await w.call("record_clawback_repayment", f"{vpath}/clawback/repayments", operator,
                 {"amount": 100_000, "reference": "ICBC-1", "paid_on": DAY}, resource=("voucher", voucher["id"]),
                 count={LEDGER: 1},
                 changes={"voucher.clawback_repaid": ({"clawback_owed": 150_000},
                                                      {"clawback_owed": 50_000, "amount": 100_000,
                                                       "reference": "ICBC-1", "paid_on": DAY})})
    await w.call("write_off_clawback", f"{vpath}/clawback/write-offs", operator,
                 {"amount": 50_000, "reason": "enterprise deregistered"}, resource=("voucher", voucher["id"]),
                 count={LEDGER: 1},
                 changes={"voucher.clawback_written_off": ({"clawback_owed": 50_000},
                                                           {"clawback_owed": 0, "amount": 50_000,
                                                            "reason": "enterprise deregistered"})})
    entries = await w.client.get(f"{vpath}/clawback/entries", headers=auth(operator.key))
    written_off = entries.json()["items"][-1]
    assert written_off["kind"] == "clawback_written_off", entries.text
    await w.call("reverse_clawback_entry", f"{vpath}/clawback/reversals", operator,
                 {"entry_id": written_off["id"], "reason": "the enterprise re-registered"},
                 resource=("voucher", voucher["id"]), count={LEDGER: 1},
                 changes={"voucher.clawback_write_off_reversed": (
                     {"clawback_owed": 0}, {"clawback_owed": 50_000, "entry_id": written_off["id"], "amount": 50_000,
                                            "recovered_by_refunds": 0})})
    # The held-then-captured order refunded in full: the 100,000 repaid is now overpaid, and the
    # office pays it back (two journals: the return, and what the refund recovered of it).
    await w.call("refund_redemption", f"/v1/redemptions/{hold['id']}/refunds", prov,
                 {"amount": 200_000, "reason": "order cancelled"}, status=201, resource=("redemption", hold["id"]))
    await w.call("record_clawback_overpayment_return", f"{vpath}/clawback/overpayment-returns", operator,
                 {"amount": 100_000, "reference": "BOC-1", "paid_on": DAY}, resource=("voucher", voucher["id"]),
                 count={LEDGER: 2},
                 changes={"voucher.clawback_overpayment_returned": (
                     {"clawback_owed": 0, "overpaid": 100_000},
                     {"clawback_owed": 0, "overpaid": 0, "amount": 100_000, "reference": "BOC-1", "paid_on": DAY})})

    # -- the period is over: usage reconciliation and settlement ---------------------------------------
    w.clock.advance(days=1)
    await w.call("reconcile_usage", "/v1/usage-reconciliations", prov,
                 {"programme_id": pid, "period_start": DAY, "period_end": DAY, "records": []}, status=201,
                 resource=("usage_reconciliation", None))
    period = {"provider_id": rid, "programme_id": pid, "period_start": DAY, "period_end": DAY}
    draft = await w.call("create_settlement", "/v1/settlements", operator, period, status=201,
                         resource=("settlement", None))
    await w.call("cancel_settlement", f"/v1/settlements/{draft['id']}/cancel", operator, {"reason": "recompute"},
                 resource=("settlement", draft["id"]),
                 changes={"settlement.cancelled": ({"status": "draft"}, {"status": "cancelled"})})
    settlement = await w.call("create_settlement", "/v1/settlements", operator, period, status=201)
    spath = f"/v1/settlements/{settlement['id']}"
    s = ("settlement", settlement["id"])
    await w.call("submit_settlement", f"{spath}/submit", prov, {"note": "matches our books"}, resource=s,
                 changes={"settlement.submitted": ({"status": "draft"}, {"status": "submitted"})})
    await w.call("dispute_settlement", f"{spath}/dispute", prov, {"reason": "order PO-x is missing"}, resource=s,
                 changes={"settlement.disputed": ({"status": "submitted"}, {"status": "disputed"})})
    await w.call("resolve_settlement_dispute", f"{spath}/resolve", operator, {"reason": "PO-x was in February"},
                 resource=s, changes={"settlement.submitted": ({"status": "disputed"}, {"status": "submitted"})})
    await w.call("approve_settlement", f"{spath}/approve", operator, {"note": "ok"}, resource=s,
                 changes={"settlement.approved": ({"status": "submitted"}, {"status": "approved"})})
    await w.call("pay_settlement", f"{spath}/pay", operator,
                 {"reference": "ICBC-20260303-000001", "paid_on": "2026-03-03"}, resource=s,
                 changes={"settlement.paid": ({"status": "approved"}, {"status": "paid"})})

    # -- enterprise claims -------------------------------------------------------------------------
    claims = await w.call("create_programme", "/v1/programmes", operator,
                          programme_payload(**{**TERMS, "mode": "enterprise_claim"}), status=201)
    await w.call("open_programme", f"/v1/programmes/{claims['id']}/open", operator)
    await w.call("enrol_provider", f"/v1/programmes/{claims['id']}/enrolments/{rid}", operator, status=201)
    claimable = await w.call("issue_voucher", "/v1/vouchers", operator,
                             {"programme_id": claims["id"], "enterprise_id": eid, "face_value": 10_000_000}, status=201)
    paid = await w.call("file_claim", "/v1/claims", ent, _claim(claimable, provider, 1), status=201,
                        resource=("claim", None), changes={"claim.submitted": ({}, {"status": "submitted"})})
    cpath = f"/v1/claims/{paid['id']}"
    await w.call("start_claim_review", f"{cpath}/review", operator, resource=("claim", paid["id"]),
                 changes={"claim.under_review": ({"status": "submitted"}, {"status": "under_review"})})
    await w.call("approve_claim", f"{cpath}/approve", operator, {"amount": 500_000, "note": "one line not eligible"},
                 resource=("claim", paid["id"]),
                 changes={"claim.approved": ({"status": "under_review"}, {"status": "approved"})})
    await w.call("pay_claim", f"{cpath}/pay", operator, {"reference": "ICBC-1", "paid_on": "2026-03-03"},
                 resource=("claim", paid["id"]),
                 changes={"claim.paid": ({"status": "approved"}, {"status": "paid"})})
    refused = await w.call("file_claim", "/v1/claims", ent, _claim(claimable, provider, 2), status=201)
    await w.call("start_claim_review", f"/v1/claims/{refused['id']}/review", operator)
    await w.call("reject_claim", f"/v1/claims/{refused['id']}/reject", operator,
                 {"reason": "invoice does not match the contract"}, resource=("claim", refused["id"]),
                 changes={"claim.rejected": ({"status": "under_review"}, {"status": "rejected"})})

    # -- webhooks: a delivery sent again, then the endpoint deleted ------------------------------------
    await events.publish_pending(w.app.state.database, w.clock())
    deliveries = (await w.client.get(f"{hook_path}/deliveries", headers=auth(prov.key))).json()["items"]
    assert deliveries, "the provider's endpoint was owed no delivery"
    await w.call("redeliver_webhook", f"{hook_path}/deliveries/{deliveries[0]['id']}/redeliveries", prov, status=202,
                 resource=("webhook_delivery", deliveries[0]["id"]))
    await w.call("delete_webhook_endpoint", hook_path, prov, status=204, resource=("webhook_endpoint", hook["id"]),
                 changes={"webhook_endpoint.deleted": ({"status": "enabled"}, {"status": "deleted"})})

    # -- the exempt operations write nothing ---------------------------------------------------------
    await w.exempt("dry_run_application", "/v1/applications/dry-run", ent,
                   {"programme_id": pid, "requested_amount": 800})
    await w.exempt("dry_run_eligibility", "/v1/eligibility/dry-run", operator, {
        "rules": {"all": [{"id": "xihu", "check": "region_in", "regions": ["330106"]}]},
        "facts": {"enterprise": {"region_code": "330110", "headcount": 120, "annual_revenue": 5_000_000_000,
                                 "founded_on": "2021-06-01", "certifications": ["sme"]}, "blacklist_dates": []},
        "requested_amount": 800, "application_date": "2026-03-03"})
    await w.exempt("create_audit_checkpoint", "/v1/audit/checkpoints", auditor, status=201)
    await w.exempt("verify_audit_chain", "/v1/audit/verifications", auditor, {}, status=201)
    async with w.app.state.database.unit_of_work(write=False) as session:  # kept: the database goes with its test
        w.announced = set((await session.execute(select(OutboxEvent.type))).scalars())


_WALKS: dict[str, Walk | BaseException] = {}


@pytest.fixture
async def walk(app: Any, client: httpx.AsyncClient, clock: Any) -> Walk:
    """The walk, run once (by whichever test needs it first) and its findings kept."""
    if "walk" not in _WALKS:
        w = Walk(app, client, clock, _state_changing(app))
        try:
            await walk_everything(w)
        except BaseException as exc:  # every case reports the failed walk, without rerunning it
            _WALKS["walk"] = exc
            raise
        _WALKS["walk"] = w
    found = _WALKS["walk"]
    if isinstance(found, BaseException):
        pytest.fail(f"the walk failed: {found!r}")
    return found


@pytest.mark.parametrize("op", [
    pytest.param(op, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[op])) if op in KNOWN_BUGS else op
    for op in sorted(OPERATIONS)
])
async def test_operation_writes_its_audit_events(walk: Walk, op: str) -> None:
    assert walk.calls[op] >= 1, f"the walk never called {op} successfully"
    assert walk.problems[op] == [], "\n".join(walk.problems[op])


# -- refusals write nothing ---------------------------------------------------------------------------


async def _audit_count(app: Any) -> int:
    async with app.state.database.unit_of_work(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(AuditEvent))).scalar_one())


async def test_a_refused_request_writes_no_event(app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000})
    voucher = await world.issue(3_000_000)
    held = await world.hold(voucher, 10_000_000, order="PO-all")  # holds the whole balance
    assert held.status_code == 201, held.text
    w = Walk(app, client, clock, _state_changing(app))

    async def refused(response: httpx.Response, status: int, code: str) -> None:
        assert response.status_code == status, response.text
        assert response.json()["code"] == code, response.text
        events, journals = await w.events(response.headers["x-request-id"])
        assert events == [] and not journals

    before = await _audit_count(app)
    await refused(await world.hold(voucher, 1_000_000, order="PO-more"), 409, "voucher_exhausted")
    capture = await world.post(f"/v1/redemptions/{held.json()['id']}/capture", {"amount": 3_000_001})
    await refused(capture, 409, "capture_exceeds_hold")
    invalid = await client.post("/v1/vouchers", json={"programme_id": world.programme["id"],
                                                      "enterprise_id": world.enterprise["id"], "face_value": -5},
                                headers=auth(world.operator, **{"Idempotency-Key": str(uuid.uuid4())}))
    await refused(invalid, 422, "validation_failed")
    await refused(await client.post("/v1/programmes", json={**programme_payload(), "unit": 7},
                                    headers=auth(world.operator)), 422, "validation_failed")
    assert await _audit_count(app) == before
    # …and the same calls, made right, do write (the count above could move).
    assert (await world.post(f"/v1/redemptions/{held.json()['id']}/capture", {"amount": 3_000_000})).status_code == 200
    assert await _audit_count(app) > before


# -- a read that ends a publicity period ------------------------------------------------------------


@pytest.mark.parametrize("trigger", ["read", "list", "voucher_list", "next_submission"])
async def test_the_end_of_publicity_is_recorded_as_the_system_whoever_noticed_it(
    app: Any, client: httpx.AsyncClient, clock: Any, trigger: str
) -> None:
    """An enterprise's request after the publicity period issues the voucher; the issuance is
    the system's doing (actor "system", no key), the request's own changes stay the caller's."""
    operator_key = await make_key(app, "operator")
    programme = (await client.post("/v1/programmes", json=programme_payload(**TERMS),
                                   headers=auth(operator_key))).json()
    assert (await client.post(f"/v1/programmes/{programme['id']}/open", headers=auth(operator_key))).status_code == 200
    enterprise = (await client.post("/v1/enterprises", json=enterprise_payload(), headers=auth(operator_key))).json()
    enterprise_key = await make_key(app, "enterprise", enterprise_id=enterprise["id"])
    me = (await client.get("/v1/me", headers=auth(enterprise_key))).json()
    apply = {"programme_id": programme["id"], "requested_amount": 10_000_000, "purpose": "fine-tuning"}
    submitted = await client.post("/v1/applications", json=apply, headers=auth(enterprise_key, **fresh_key()))
    assert submitted.status_code == 201, submitted.text
    application = submitted.json()
    w = Walk(app, client, clock, _state_changing(app))
    events, _ = await w.events(submitted.headers["x-request-id"])
    judged = [e for e in events if e.action in ("application.submitted", "application.under_review")]
    assert len(judged) == 2 and application["eligibility"]["version"] is not None
    assert all(e.rule_version == application["eligibility"]["version"] for e in judged), judged
    approved = await client.post(f"/v1/applications/{application['id']}/approve", json={"amount": 10_000_000},
                                 headers=auth(operator_key, **fresh_key()))
    assert approved.status_code == 200 and approved.json()["status"] == "publicity", approved.text

    clock.advance(days=4)
    early = await client.get(f"/v1/applications/{application['id']}", headers=auth(enterprise_key))
    assert early.json()["status"] == "publicity"
    assert (await w.events(early.headers["x-request-id"]))[0] == []  # a read before the end writes nothing

    clock.advance(days=1)
    mine = auth(enterprise_key)
    if trigger == "read":
        response = await client.get(f"/v1/applications/{application['id']}", headers=mine)
    elif trigger == "list":
        response = await client.get("/v1/applications", headers=mine)
    elif trigger == "voucher_list":
        response = await client.get("/v1/vouchers", headers=mine)
    else:
        response = await client.post("/v1/applications", json={**apply, "requested_amount": 1_000_000},
                                     headers=auth(enterprise_key, **fresh_key()))
    assert response.status_code == (201 if trigger == "next_submission" else 200), response.text
    events, journals = await w.events(response.headers["x-request-id"])
    actions = [e.action for e in events]
    assert {"application.issued", "voucher.issued", LEDGER} <= set(actions), actions
    assert {e.journal_id for e in events if e.action == LEDGER} == journals != set()
    issued = next(e for e in events if e.action == "application.issued")
    assert issued.before == {"status": "publicity"} and issued.after["status"] == "issued"
    assert str(issued.resource_id) == application["id"]
    voucher = next(e for e in events if e.action == "voucher.issued")
    assert voucher.after["face_value"] == 10_000_000 and voucher.after["application_id"] == application["id"]
    current = (await client.get(f"/v1/applications/{application['id']}", headers=mine)).json()
    assert current["status"] == "issued" and str(voucher.resource_id) == current["voucher_id"]
    for e in events:
        assert e.occurred_at == clock(), e
        if e.action.startswith("application.") and str(e.resource_id) != application["id"]:
            # the new submission is the enterprise's own doing
            assert (e.actor_role, str(e.actor_principal_id), str(e.actor_key_id)) == (
                "enterprise", me["principal_id"], me["key_id"]), e
        else:
            assert (e.actor_role, e.actor_principal_id, e.actor_key_id) == ("system", None, None), e
            assert e.idempotency_key is None, e  # retrying the triggering request would not redo this
    if trigger == "next_submission":
        assert {"application.submitted", "application.under_review"} <= set(actions), actions
        own = [e for e in events if str(e.resource_id) == response.json()["id"]]
        assert own and all(e.idempotency_key == response.request.headers["Idempotency-Key"] for e in own)


async def test_the_walk_announced_what_subscribers_are_promised(walk: Walk) -> None:
    """Every announced change the walk made is in the outbox, as an event of the same name
    (issue 7's list; expiry warnings, balance marks and expired holds have tests of their own)."""
    from services.voucher.events.rules import ANNOUNCED_ACTIONS

    announced = walk.announced
    expected = set(ANNOUNCED_ACTIONS) - {"hold.expired"}
    assert expected <= announced, sorted(expected - announced)
