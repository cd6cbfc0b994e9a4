"""Work tied to a database transaction: queued while it is open, dropped if it (or a savepoint
it was queued in) rolls back, taken when the outermost transaction commits.

The audit trail queues its events here and writes them in one INSERT just before the commit;
the metrics queue counters and bump them just after it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction


class TransactionQueue:
    """One named queue per session. Items belong to the innermost transaction open when they
    are added, so an item added inside a savepoint that rolls back goes with it."""

    def __init__(self, name: str) -> None:
        self.key = f"voucher_pending_{name}"
        event.listen(Session, "after_soft_rollback", self._drop_rolled_back)
        event.listen(Session, "after_transaction_end", self._forget)

    def add(self, session: Any, item: Any) -> bool:
        """Queue `item` on `session` (an AsyncSession or a Session); False when no
        transaction has begun (the caller acts at once then)."""
        sync: Session = getattr(session, "sync_session", session)
        transaction = sync.get_nested_transaction() or sync.get_transaction()
        if transaction is None:
            return False
        sync.info.setdefault(self.key, []).append((transaction, item))
        return True

    def take(self, session: Session) -> list[Any]:
        """Everything queued and not rolled back — at the outermost commit only: releasing a
        savepoint commits nothing yet, so it takes nothing."""
        if session.get_nested_transaction() is not None:
            return []
        return [item for _, item in session.info.pop(self.key, ())]

    def _drop_rolled_back(self, session: Session, previous_transaction: SessionTransaction) -> None:
        queued = session.info.get(self.key)
        if queued:
            queued[:] = [(t, item) for t, item in queued if not _inside(t, previous_transaction)]

    def _forget(self, session: Session, transaction: SessionTransaction) -> None:
        # Closing a session without commit or rollback ends its transaction too: drop what is left.
        if transaction.parent is None:
            session.info.pop(self.key, None)


def _inside(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False
