"""Work tied to a database transaction: queued while it is open, dropped if it (or a savepoint
it was queued in) rolls back, taken when the outermost transaction commits.

`defer` queues writes that nothing in the transaction reads back (audit events, the value
engine's rows): `Database.commit` sends them with the COMMIT, in one round trip on
PostgreSQL; a commit made any other way writes them just before it (the hook below).
`on_commit` runs actions just after the outermost commit (the metrics, the API-key cache's
evictions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql import Executable

from services.voucher import driver
from services.voucher.driver import Batch, Params


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


_DEFERRED = TransactionQueue("deferred_writes")
_SEEN = "voucher_deferred_savepoint_seen"


def defer(session: Any, statement: Executable, params: Params) -> bool:
    """Queue one write on the transaction open now; False when none has begun (the caller
    writes at once then, in the transaction that begins). Queued inside a savepoint that rolls
    back, it goes with it; nothing is written if the transaction rolls back."""
    return _DEFERRED.add(session, (statement, params))


def take_deferred(session: Any) -> Batch:
    """The queued writes, as a batch: runs of one statement become one executemany, and the
    rows of a gathered insert (`driver.insert_rows(gather=True)`: audit events, outbox events)
    are all written where its first row was queued — one statement however many."""
    sync: Session = getattr(session, "sync_session", session)
    batch = Batch()
    run: list[Params] = []
    current: Executable | None = None
    gathered: dict[int, list[Params]] = {}
    for statement, params in _DEFERRED.take(sync, outermost_only=False):
        rows = gathered.get(id(statement))
        if rows is not None and rows[0].keys() == params.keys():  # rows of one shape: one insert
            rows.append(params)
            continue
        if statement is not current and run:
            batch.add(current, run)  # type: ignore[arg-type]
            run = []
        if driver.gathered(statement) and rows is None:
            gathered[id(statement)] = rows = [params]
            batch.add(statement, rows)  # its later rows join this list
            current = None
            continue
        current = statement
        run.append(params)
    if run:
        batch.add(current, run)  # type: ignore[arg-type]
    return batch


@event.listens_for(Session, "before_commit")
def _write_deferred(session: Session) -> None:
    """A commit not made by `Database.commit` writes the queue first. Releasing a savepoint
    writes nothing (an enclosing savepoint may still roll back). One subtlety: committing the
    root while a savepoint is still open fires the root's hook first (the savepoint still
    current) and then the savepoint's own — the same savepoint seen twice means the root is
    committing it, so everything is written then, inside that savepoint, just before it is
    released."""
    nested = session.get_nested_transaction()
    if nested is not None and session.info.get(_SEEN) is not nested:
        session.info[_SEEN] = nested
        return
    session.info.pop(_SEEN, None)
    for step in take_deferred(session).steps:
        session.execute(step.statement, step.params)


@event.listens_for(Session, "after_transaction_end")
def _forget_seen(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_SEEN, None)


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
