"""a voucher's identity and an export's manifest never change once written

An independent review (December 2026) pointed one enterprise's voucher at another enterprise's
ledger accounts with the database's ordinary role — no trigger guarded the voucher row — and a
redeem on the first voucher spent the second's balance; raised a voucher's face value; and
rewrote, then deleted, an export's manifest (its SHA-256 and row count are what an auditor
checks a file against). Neither the audit chain's verification nor the reconciliation said
anything. The database now refuses, on both engines:
- a voucher update that changes what it is — its code, programme, enterprise, kind, unit, face
  value, validity, period, ledger accounts, application or issue time (its status, the reason
  and time of a status change and its expiry's posting are what the service changes), a status
  that leaves `expired` or `revoked` (both final), and any deletion of a voucher;
- an export manifest update other than its completion, once (row count, SHA-256, finish time),
  and any deletion or truncation of manifests.
On SQLite, an `INSERT OR REPLACE` that meets an existing row is refused too (it deletes and
re-inserts without firing the update guards): by id, and a voucher's by code or application. The service never makes such a change; the reconciliation
(`record_differences`) still finds a voucher changed with the guard out of the way.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 02:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0025'
down_revision: str | None = '0024'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VOUCHER_IDENTITY = ("id", "code", "programme_id", "enterprise_id", "kind", "unit", "face_value", "valid_from",
                    "expires_at", "period_key", "available_account_id", "held_account_id", "used_account_id",
                    "application_id", "issue_reference", "issued_at")
MANIFEST_IDENTITY = ("id", "dataset", "format", "filters", "requested_by", "chain_seq", "chain_hash",
                     "unsealed_events", "started_at")

VOUCHER_MESSAGE = ("a voucher's code, parties, face value, validity and ledger accounts never change, "
                   "an expired or revoked voucher stays so, and a voucher is never deleted")
MANIFEST_MESSAGE = "an export's manifest never changes but to be completed once, and is never deleted"


def _changed(columns: Sequence[str], differ: str) -> str:
    return " OR ".join(f"NEW.{c} {differ} OLD.{c}" for c in columns)


def _voucher(differ: str) -> str:
    """What it is changes, or it leaves a final status (the service never moves an expired or a
    revoked voucher; an UPDATE had lifted a revocation unnoticed: a review of this migration)."""
    return f"{_changed(VOUCHER_IDENTITY, differ)} OR (OLD.status IN ('expired', 'revoked') AND NEW.status {differ} OLD.status)"


def _manifest(differ: str) -> str:
    return f"{_changed(MANIFEST_IDENTITY, differ)} OR OLD.finished_at IS NOT NULL"


def _quoted(text: str) -> str:
    return text.replace("'", "''")


PG_GUARDS = f"""
CREATE TRIGGER voucher_identity_fixed BEFORE UPDATE ON voucher FOR EACH ROW
    WHEN ({_voucher("IS DISTINCT FROM")})
    EXECUTE FUNCTION record_guard_refuse('{_quoted(VOUCHER_MESSAGE)}');
CREATE TRIGGER voucher_never_deleted BEFORE DELETE ON voucher FOR EACH ROW
    EXECUTE FUNCTION record_guard_refuse('{_quoted(VOUCHER_MESSAGE)}');
CREATE TRIGGER voucher_no_truncate BEFORE TRUNCATE ON voucher FOR EACH STATEMENT
    EXECUTE FUNCTION record_guard_refuse('{_quoted(VOUCHER_MESSAGE)}');
CREATE TRIGGER export_manifest_fixed BEFORE UPDATE ON export_manifest FOR EACH ROW
    WHEN ({_manifest("IS DISTINCT FROM")})
    EXECUTE FUNCTION record_guard_refuse('{_quoted(MANIFEST_MESSAGE)}');
CREATE TRIGGER export_manifest_never_deleted BEFORE DELETE ON export_manifest FOR EACH ROW
    EXECUTE FUNCTION record_guard_refuse('{_quoted(MANIFEST_MESSAGE)}');
CREATE TRIGGER export_manifest_no_truncate BEFORE TRUNCATE ON export_manifest FOR EACH STATEMENT
    EXECUTE FUNCTION record_guard_refuse('{_quoted(MANIFEST_MESSAGE)}');
"""
PG_GUARDS_BY_TABLE = {"voucher_identity_fixed": "voucher", "voucher_never_deleted": "voucher",
                      "voucher_no_truncate": "voucher", "export_manifest_fixed": "export_manifest",
                      "export_manifest_never_deleted": "export_manifest",
                      "export_manifest_no_truncate": "export_manifest"}

SQLITE_GUARDS = {
    "voucher_identity_fixed": f"BEFORE UPDATE ON voucher WHEN {_voucher('IS NOT')}",
    "voucher_never_deleted": "BEFORE DELETE ON voucher",
    # every unique key: a REPLACE resolving any of them deletes the row that held it
    "voucher_no_replace": "BEFORE INSERT ON voucher WHEN EXISTS (SELECT 1 FROM voucher WHERE id = NEW.id "
                          "OR code = NEW.code OR (NEW.application_id IS NOT NULL "
                          "AND application_id = NEW.application_id))",
    "export_manifest_fixed": f"BEFORE UPDATE ON export_manifest WHEN {_manifest('IS NOT')}",
    "export_manifest_never_deleted": "BEFORE DELETE ON export_manifest",
    "export_manifest_no_replace": "BEFORE INSERT ON export_manifest "
                                  "WHEN EXISTS (SELECT 1 FROM export_manifest WHERE id = NEW.id)",
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GUARDS)  # record_guard_refuse() is migration 0020's
    else:
        for name, when in SQLITE_GUARDS.items():
            message = VOUCHER_MESSAGE if name.startswith("voucher") else MANIFEST_MESSAGE
            op.execute(f"CREATE TRIGGER {name} {when} BEGIN SELECT RAISE(ABORT, '{_quoted(message)}'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, table in PG_GUARDS_BY_TABLE.items():
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    else:
        for name in SQLITE_GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
