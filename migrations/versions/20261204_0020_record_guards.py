"""the records money is paid from only ever move forward

A settlement is drafted from its redemptions' captured amounts and paid as its total. An
independent review (December 2026) raised a captured redemption's amount tenfold, and an
approved settlement's total, with the database's ordinary role — no trigger guarded either — and
both were paid. The database now refuses, on both engines:
- a redemption update that changes who or what it is for (voucher, programme, enterprise,
  provider, order, unit, amounts ordered and held, period, payee, creation), that sets its
  captured amount other than once, from 0, as a held redemption is captured (and never above
  what was held), that takes its refunded amount down or above what was captured, or that puts
  it back to `held`;
- a settlement update that changes its totals, lines, period, provider, programme or unit once
  it is no longer a draft (its creation writes them while it is one);
- a settlement item update other than its release, once (cancelling its settlement).
The service never makes such an update; reconciliation (`record_differences`) still finds a
row changed with the guards out of the way.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REDEMPTION_IDENTITY = ("id", "voucher_id", "programme_id", "enterprise_id", "provider_id", "order_reference",
                       "order_amount", "unit", "held_amount", "period_key", "payee", "created_at")
SETTLEMENT_FIGURES = ("id", "provider_id", "programme_id", "unit", "period_start", "period_end", "starts_at",
                      "ends_at", "captured_total", "refunded_total", "total", "line_count", "created_at")
ITEM_IDENTITY = ("id", "settlement_id", "kind", "redemption_id", "refund_id", "order_reference", "amount",
                 "occurred_at")

REDEMPTION_MESSAGE = ("a redemption's parties and amounts never change, but as it is captured (once) and refunded "
                      "(never below what was refunded nor above what was captured)")
SETTLEMENT_MESSAGE = "a settlement's totals, lines and period never change once it is no longer a draft"
ITEM_MESSAGE = "a settlement item never changes, but to be released once"


def _changed(columns: Sequence[str], differ: str) -> str:
    return " OR ".join(f"NEW.{c} {differ} OLD.{c}" for c in columns)


def _redemption(differ: str) -> str:
    return (f"{_changed(REDEMPTION_IDENTITY, differ)} "
            f"OR (NEW.captured_amount {differ} OLD.captured_amount AND NOT (OLD.captured_amount = 0 "
            "AND OLD.status = 'held' AND NEW.status = 'captured' AND NEW.captured_amount >= 0 "
            "AND NEW.captured_amount <= OLD.held_amount)) "
            "OR NEW.refunded_amount < OLD.refunded_amount OR NEW.refunded_amount > NEW.captured_amount "
            "OR (NEW.status = 'held' AND OLD.status <> 'held')")


def _settlement(differ: str) -> str:
    return f"OLD.status <> 'draft' AND ({_changed(SETTLEMENT_FIGURES, differ)})"


def _item(differ: str) -> str:
    return f"{_changed(ITEM_IDENTITY, differ)} OR (OLD.released_at IS NOT NULL AND NEW.released_at {differ} OLD.released_at)"


PG_GUARDS = f"""
CREATE FUNCTION record_guard_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER redemption_moves_forward BEFORE UPDATE ON redemption FOR EACH ROW
    WHEN ({_redemption("IS DISTINCT FROM")})
    EXECUTE FUNCTION record_guard_refuse('{REDEMPTION_MESSAGE.replace("'", "''")}');
CREATE TRIGGER settlement_figures_fixed BEFORE UPDATE ON settlement FOR EACH ROW
    WHEN ({_settlement("IS DISTINCT FROM")})
    EXECUTE FUNCTION record_guard_refuse('{SETTLEMENT_MESSAGE.replace("'", "''")}');
CREATE TRIGGER settlement_item_fixed BEFORE UPDATE ON settlement_item FOR EACH ROW
    WHEN ({_item("IS DISTINCT FROM")})
    EXECUTE FUNCTION record_guard_refuse('{ITEM_MESSAGE.replace("'", "''")}');
"""

SQLITE_GUARDS = (
    f"CREATE TRIGGER redemption_moves_forward BEFORE UPDATE ON redemption WHEN {_redemption('IS NOT')} "
    f"BEGIN SELECT RAISE(ABORT, '{REDEMPTION_MESSAGE.replace(chr(39), chr(39) * 2)}'); END",
    f"CREATE TRIGGER settlement_figures_fixed BEFORE UPDATE ON settlement WHEN {_settlement('IS NOT')} "
    f"BEGIN SELECT RAISE(ABORT, '{SETTLEMENT_MESSAGE.replace(chr(39), chr(39) * 2)}'); END",
    f"CREATE TRIGGER settlement_item_fixed BEFORE UPDATE ON settlement_item WHEN {_item('IS NOT')} "
    f"BEGIN SELECT RAISE(ABORT, '{ITEM_MESSAGE.replace(chr(39), chr(39) * 2)}'); END",
)
GUARDS = {"redemption_moves_forward": "redemption", "settlement_figures_fixed": "settlement",
          "settlement_item_fixed": "settlement_item"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GUARDS)
    else:
        for statement in SQLITE_GUARDS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, table in GUARDS.items():
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS record_guard_refuse()")
    else:
        for name in GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
