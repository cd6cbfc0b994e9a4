"""A year of history, loaded set-wise: `load_history(url, n)` clones one real redeem (its
redemption, order, audit events, outbox event and Idempotency-Key record) `n` times over the past
year, across the world's vouchers, each as a hold and its capture — a `hold_placed` journal (two
postings) and a `hold_captured` one (four), and each journal's audit events — so 1,000,000
redemptions are 2,000,000 journals and 6,000,000 postings, as a programme whose providers hold
before they bill has. Then it puts the materialised balances and period usage right and
refreshes the planner's statistics.

The clones are captured redemptions, sealed audit events and published outbox events — what a
programme's history holds — so a query that reads in proportion to history shows up. Triggers are
off for the load (the tables' owner may switch them off; journals balance by construction, the
chain hashes are placeholders: nothing here is verified).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from services.voucher.settings import sync_database_url

TABLES = ("redemption", "order_subsidy", "ledger_transaction", "ledger_posting", "audit_event", "outbox_event",
          "idempotency_record")

GENERATE = """
CREATE TEMP TABLE gen ON COMMIT DROP AS
SELECT g, md5('r' || g)::uuid AS rid, md5('o' || g)::uuid AS oid, md5('j' || g)::uuid AS j1,
       md5('k' || g)::uuid AS j2,
       md5('i' || g)::uuid AS iid,
       CAST(:t0 AS timestamptz) + g * interval '30 seconds' AS at,
       v.id AS voucher_id, v.enterprise_id, v.available, v.held, v.used
  FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
  JOIN unnest(CAST(:vids AS uuid[]), CAST(:ents AS uuid[]), CAST(:avail AS uuid[]), CAST(:held AS uuid[]),
              CAST(:used AS uuid[])) WITH ORDINALITY AS v(id, enterprise_id, available, held, used, i)
    ON v.i = 1 + g % CAST(:n AS bigint)
"""

STATEMENTS = [
    """INSERT INTO redemption (id, voucher_id, programme_id, enterprise_id, provider_id, order_reference,
           order_amount, unit, line_items, computation, status, held_amount, captured_amount, refunded_amount,
           period_key, hold_expires_at, created_at, captured_at, voided_at, void_reason, payee)
       SELECT gen.rid, gen.voucher_id, t.programme_id, gen.enterprise_id, t.provider_id, 'hist-' || gen.g,
              t.order_amount, t.unit, t.line_items, t.computation, 'captured', t.held_amount, t.captured_amount, 0,
              to_char(gen.at AT TIME ZONE 'Asia/Shanghai', 'YYYY'), gen.at + interval '30 minutes', gen.at, gen.at,
              NULL, NULL, t.payee
         FROM gen, redemption t WHERE t.id = :tpl""",
    """INSERT INTO order_subsidy (id, provider_id, order_reference, enterprise_id, unit, order_amount, subsidised,
           created_at)
       SELECT gen.oid, t.provider_id, 'hist-' || gen.g, gen.enterprise_id, t.unit, t.order_amount, t.captured_amount,
              gen.at
         FROM gen, redemption t WHERE t.id = :tpl""",
    """INSERT INTO ledger_transaction (id, kind, programme_id, voucher_id, redemption_id, memo, request_id, created_at)
       SELECT j.id, j.kind, t.programme_id, gen.voucher_id, gen.rid, 'history', NULL, j.at
         FROM gen, redemption t,
              LATERAL (VALUES (gen.j1, 'hold_placed', gen.at - interval '1 minute'),
                              (gen.j2, 'hold_captured', gen.at)) AS j(id, kind, at)
        WHERE t.id = :tpl""",
    """INSERT INTO ledger_posting (transaction_id, account_id, amount, unit, created_at)
       SELECT p.tx, p.account, p.amount, 'CNY', gen.at
         FROM gen, redemption t,
              LATERAL (VALUES (gen.j1, gen.available, -t.held_amount), (gen.j1, gen.held, t.held_amount),
                              (gen.j2, gen.held, -t.held_amount), (gen.j2, gen.used, t.held_amount),
                              (gen.j2, CAST(:spent AS uuid), -t.held_amount),
                              (gen.j2, CAST(:payable AS uuid), t.held_amount)) AS p(tx, account, amount)
        WHERE t.id = :tpl""",
    """INSERT INTO audit_event (id, occurred_at, actor_principal_id, actor_role, actor_key_id, action, resource_type,
           resource_id, programme_id, enterprise_id, provider_id, voucher_id, before, after, request_id,
           idempotency_key, rule_version, journal_id, seq, chain_hash)
       SELECT md5(e.id::text || gen.g || ph.phase)::uuid, gen.at, e.actor_principal_id, e.actor_role,
              e.actor_key_id, CASE WHEN e.journal_id IS NULL THEN ph.action ELSE e.action END,
              e.resource_type, CASE WHEN e.journal_id IS NULL THEN gen.rid ELSE ph.journal END, e.programme_id,
              gen.enterprise_id, e.provider_id, gen.voucher_id, e.before, e.after, NULL, 'hist-' || gen.g, NULL,
              CASE WHEN e.journal_id IS NULL THEN NULL ELSE ph.journal END,
              CAST(:seq0 AS bigint) + 2 * (gen.g * e.total + e.n) + ph.phase, repeat('0', 64)
         FROM gen
        CROSS JOIN (SELECT a.*, row_number() OVER (ORDER BY a.id) - 1 AS n, count(*) OVER () AS total
                      FROM audit_event a WHERE a.idempotency_key = :tpl_key) AS e
        CROSS JOIN LATERAL (VALUES (0, gen.j1, 'hold.placed'), (1, gen.j2, 'redemption.captured'))
                   AS ph(phase, journal, action)""",
    """INSERT INTO outbox_event (id, type, occurred_at, programme_id, enterprise_id, provider_id, resource_type,
           resource_id, data, dedupe_key, seq, published_at)
       SELECT md5('e' || gen.g)::uuid, o.type, gen.at, o.programme_id, gen.enterprise_id, o.provider_id,
              o.resource_type, gen.rid, o.data, NULL, CAST(:oseq0 AS bigint) + gen.g, gen.at
         FROM gen, outbox_event o WHERE o.resource_id = :tpl AND o.dedupe_key IS NULL""",
    """INSERT INTO idempotency_record (id, principal_id, key, method, path, request_hash, state, response_status,
           response_body, response_content_type, response_headers, created_at, locked_at, completed_at, expires_at)
       SELECT gen.iid, i.principal_id, 'hist-' || gen.g, i.method, i.path, i.request_hash, 'completed',
              i.response_status, i.response_body, i.response_content_type, i.response_headers, gen.at, gen.at,
              gen.at, gen.at + interval '90 days'
         FROM gen, idempotency_record i
        WHERE i.key = :tpl_key AND gen.at > now() - interval '90 days'""",
]

# The vouchers' balances and the enterprises' period usage, recomputed from what was loaded.
SETTLE = [
    """UPDATE ledger_account a SET balance = s.total
         FROM (SELECT account_id, sum(amount)::bigint AS total FROM ledger_posting GROUP BY account_id) s
        WHERE a.id = s.account_id AND a.is_materialised AND a.balance <> s.total""",
    """INSERT INTO enterprise_period_usage (id, programme_id, enterprise_id, period_key, granted, committed,
           subsidised, subsidised_spend)
       SELECT gen_random_uuid(), r.programme_id, r.enterprise_id, r.period_key, 0, 0,
              sum(r.captured_amount - r.refunded_amount), sum(r.order_amount)
         FROM redemption r GROUP BY r.programme_id, r.enterprise_id, r.period_key
       ON CONFLICT (programme_id, enterprise_id, period_key) DO UPDATE
          SET subsidised = EXCLUDED.subsidised, subsidised_spend = EXCLUDED.subsidised_spend""",
]


def load_history(database_url: str, world: dict[str, Any], redemptions: int, *, batch: int = 100_000) -> dict[str, Any]:
    """Clone the world's template redeem (`world["template"]`: its redemption id and
    Idempotency-Key) `redemptions` times; returns what was loaded and how long it took."""
    engine = create_engine(sync_database_url(database_url))
    started = time.perf_counter()
    with engine.connect() as conn:
        ids = conn.execute(text(
            "SELECT v.id, v.enterprise_id, v.available_account_id, v.held_account_id, v.used_account_id "
            "FROM voucher v WHERE v.id = ANY(CAST(:ids AS uuid[])) ORDER BY v.id"),
            {"ids": world["voucher_ids"]}).all()
        template = conn.execute(text("SELECT provider_id, programme_id FROM redemption WHERE id = :id"),
                                {"id": world["template"]["id"]}).one()
        accounts = dict(conn.execute(text(
            "SELECT kind, id FROM ledger_account WHERE (kind = 'programme_spent' AND programme_id = :programme) "
            "OR (kind = 'provider_payable' AND provider_id = :provider AND programme_id = :programme)"),
            {"programme": template.programme_id, "provider": template.provider_id}).all())
        seq0 = conn.execute(text("SELECT coalesce(max(seq), 0) FROM audit_event")).scalar_one() + 10
        oseq0 = conn.execute(text("SELECT coalesce(max(seq), 0) FROM outbox_event")).scalar_one() + 10
    params = {
        "vids": [str(r[0]) for r in ids], "ents": [str(r[1]) for r in ids], "avail": [str(r[2]) for r in ids],
        "held": [str(r[3]) for r in ids], "used": [str(r[4]) for r in ids], "n": len(ids),
        "t0": datetime.now(UTC) - timedelta(seconds=30 * redemptions + 3600),
        "tpl": world["template"]["id"], "tpl_key": world["template"]["key"],
        "spent": str(accounts["programme_spent"]), "payable": str(accounts["provider_payable"]),
        "seq0": seq0, "oseq0": oseq0,
    }
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
    try:
        for first in range(1, redemptions + 1, batch):
            with engine.begin() as conn:
                conn.execute(text(GENERATE), {**params, "first": first, "last": min(first + batch - 1, redemptions)})
                for statement in STATEMENTS:
                    conn.execute(text(statement), params)
        with engine.begin() as conn:
            for statement in SETTLE:
                conn.execute(text(statement))
    finally:
        with engine.begin() as conn:
            for table in TABLES:
                conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
    checkpointed = True
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}  # noqa: S608
        # The load leaves gigabytes of dirty pages: written out now, not by a checkpoint in the
        # middle of the measured rows (a year of history is written over a year of checkpoints).
        # CHECKPOINT needs superuser or the pg_checkpoint role; without it the rows may show it.
        try:
            conn.execute(text("CHECKPOINT"))
        except DBAPIError:
            checkpointed = False
    engine.dispose()
    return {"redemptions": redemptions, "seconds": round(time.perf_counter() - started, 1), "rows": counts,
            "checkpointed": checkpointed}
