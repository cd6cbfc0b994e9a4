"""Work tied to a database transaction: queued while it is open, dropped if it (or a savepoint
it was queued in) rolls back, taken when the outermost transaction commits.

The audit trail queues its events here and writes them before the transaction (or the savepoint
they were queued in) commits; `on_commit` runs actions just after the outermost commit (the
metrics, the API-key cache's evictions).
"""

from __future__ import annotations

from collections.abc import Callable
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

    def take(self, session: Session, *, outermost_only: bool = True) -> list[Any]:
        """Everything queued and not rolled back. With `outermost_only`, nothing while a
        savepoint is open (releasing one commits nothing yet)."""
        if outermost_only and session.get_nested_transaction() is not None:
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


_AFTER_COMMIT = TransactionQueue("after_commit")


def on_commit(session: Any, action: Callable[[], None]) -> None:
    """Run `action` after `session`'s current transaction commits; never if it rolls back.

    `session` is an AsyncSession or a Session. The action is tied to the innermost transaction
    open now, so one registered inside a savepoint that rolls back is dropped too.
    """
    if not _AFTER_COMMIT.add(session, action):  # nothing to wait for (autobegin has not begun yet)
        action()


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for action in _AFTER_COMMIT.take(session):
        action()
