"""The ledger: open accounts, post balanced journal transactions, reconcile.

Every movement of value in the service goes through `post`: it checks the legs sum to zero per
unit, inserts the journal transaction and its postings, and moves the materialised balances in
the same database transaction. Callers lock what they must (see DESIGN.md: value moves under a
lock or a conditional update) before deciding amounts; the CHECK constraints and, on
PostgreSQL, the deferred balance trigger are the backstop.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher import driver
from services.voucher.audit import service as audit
from services.voucher.audit.rules import (
    ACCOUNT_OPENED,
    account_record,
    journal_record,
    journal_refs,
)
from services.voucher.db import Database, IntPageRequest, dialect_name
from services.voucher.driver import Batch
from services.voucher.errors import NotFound
from services.voucher.i18n import msg
from services.voucher.ids import uuid7
from services.voucher.ledger import repository
from services.voucher.ledger.rules import (
    FUNDING_JOURNAL,
    NON_NEGATIVE,
    NOT_MATERIALISED,
    AccountKind,
    Leg,
    check_balanced,
    enterprise_code,  # account codes: one place (ledger/rules.py) names accounts
    programme_code,
    provider_code,
    share_by_lines,
    unit_totals,
    voucher_code,
)
from services.voucher.observability import REQUEST_ID
from services.voucher.programmes.rules import period_key
from services.voucher.redemption.rules import Clawback
from services.voucher.tables import Programme


def account_row(
    code: str,
    kind: AccountKind,
    unit: str,
    now: datetime,
    *,
    programme_id: uuid.UUID | None = None,
    voucher_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
    enterprise_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    return {
        "id": uuid7(),
        "code": code,
        "kind": kind.value,
        "unit": unit,
        "programme_id": programme_id,
        "voucher_id": voucher_id,
        "provider_id": provider_id,
        "enterprise_id": enterprise_id,
        "is_non_negative": kind in NON_NEGATIVE,
        "is_materialised": kind not in NOT_MATERIALISED,
        "balance": 0,
        "created_at": now,
    }


PROGRAMME_KINDS = (
    AccountKind.PROGRAMME_FUNDING,
    AccountKind.PROGRAMME_AVAILABLE,
    AccountKind.PROGRAMME_COMMITTED,
    AccountKind.PROGRAMME_SPENT,
    AccountKind.PROGRAMME_BREAKAGE,
    AccountKind.PROGRAMME_CLAWBACK,
)
VOUCHER_KINDS = (AccountKind.VOUCHER_AVAILABLE, AccountKind.VOUCHER_HELD, AccountKind.VOUCHER_USED)
PROVIDER_KINDS = (AccountKind.PROVIDER_PAYABLE, AccountKind.PROVIDER_PAID)


async def open_programme_accounts(
    session: AsyncSession, programme_id: uuid.UUID, unit: str, budget_total: int, now: datetime
) -> None:
    """The programme's accounts, with its whole budget moved from funding to available."""
    rows = [
        account_row(programme_code(programme_id, k), k, unit, now, programme_id=programme_id)
        for k in PROGRAMME_KINDS
    ]
    await _open(session, rows)
    ids = {r["kind"]: r["id"] for r in rows}
    await post(
        session,
        kind=FUNDING_JOURNAL,
        legs=[
            Leg(ids[AccountKind.PROGRAMME_FUNDING.value], -budget_total, unit),
            Leg(ids[AccountKind.PROGRAMME_AVAILABLE.value], budget_total, unit),
        ],
        now=now,
        programme_id=programme_id,
        memo="programme opened: budget made available",
    )


async def programme_accounts(session: AsyncSession, programme_id: uuid.UUID) -> dict[AccountKind, uuid.UUID]:
    codes = {programme_code(programme_id, k): k for k in PROGRAMME_KINDS}
    found = await repository.account_ids(session, codes)
    return {codes[c]: i for c, i in found.items()}


async def open_voucher_accounts(
    session: AsyncSession, voucher_id: uuid.UUID, programme_id: uuid.UUID, unit: str, now: datetime
) -> dict[AccountKind, uuid.UUID]:
    rows = [
        account_row(voucher_code(voucher_id, k), k, unit, now, programme_id=programme_id, voucher_id=voucher_id)
        for k in VOUCHER_KINDS
    ]
    await _open(session, rows)
    return {AccountKind(r["kind"]): r["id"] for r in rows}


async def ensure_provider_accounts(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID, unit: str, now: datetime
) -> dict[AccountKind, uuid.UUID]:
    rows = [
        account_row(provider_code(provider_id, programme_id, k), k, unit, now,
                    programme_id=programme_id, provider_id=provider_id)
        for k in PROVIDER_KINDS
    ]
    found = await _ensure(session, rows)
    return {AccountKind(r["kind"]): found[r["code"]] for r in rows}


async def ensure_enterprise_accounts(
    session: AsyncSession,
    enterprise_id: uuid.UUID,
    programme_id: uuid.UUID,
    unit: str,
    now: datetime,
    kinds: Sequence[AccountKind],
) -> dict[AccountKind, uuid.UUID]:
    rows = [
        account_row(enterprise_code(enterprise_id, programme_id, k), k, unit, now,
                    programme_id=programme_id, enterprise_id=enterprise_id)
        for k in kinds
    ]
    found = await _ensure(session, rows)
    return {AccountKind(r["kind"]): found[r["code"]] for r in rows}


async def receivable_of(session: AsyncSession, enterprise_id: uuid.UUID, programme_id: uuid.UUID) -> uuid.UUID | None:
    """The enterprise's receivable in the programme, if one was ever opened (none is opened here)."""
    code = enterprise_code(enterprise_id, programme_id, AccountKind.ENTERPRISE_RECEIVABLE)
    return (await repository.account_ids(session, [code])).get(code)


async def clawback_owed(
    session: AsyncSession, enterprise_id: uuid.UUID, programme_id: uuid.UUID, voucher_id: uuid.UUID,
) -> tuple[uuid.UUID | None, Clawback]:
    """The enterprise's receivable in the programme (None if never opened; none is opened here)
    and what one voucher's journals have put on it, taken off it and left on it: its clawback."""
    receivable = await receivable_of(session, enterprise_id, programme_id)
    if receivable is None:
        return None, Clawback()
    return receivable, await repository.voucher_clawback(session, receivable, voucher_id)


async def voucher_entries_on(session: AsyncSession, account_id: uuid.UUID,
                             voucher_id: uuid.UUID) -> list[tuple[uuid.UUID, str, int, datetime, str | None]]:
    """One voucher's journals on an account, oldest first: (id, kind, amount posted to the
    account, when, memo)."""
    return await repository.voucher_entries_on(session, account_id, voucher_id)


async def _open(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Open new accounts, each recorded (`_record_opened`)."""
    await repository.create_accounts(session, rows)
    await _record_opened(session, rows)


async def _ensure(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> dict[str, uuid.UUID]:
    """Open the accounts that do not exist yet (by code, race-free) and record those this
    transaction opened: one another transaction opened first, by code, is that one's to
    record. Code -> id."""
    found = await repository.ensure_accounts(session, rows)
    await _record_opened(session, [r for r in rows if found[r["code"]] == r["id"]])
    return found


async def _record_opened(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Each account opened gets its own audit event, recording whose it is: verification
    matches every account in the ledger against one, so an account given to another owner
    behind the service's back is found."""
    for row in rows:
        await audit.record(
            session, ACCOUNT_OPENED, "ledger_account", row["id"], now=row["created_at"], after=account_record(row),
            programme_id=row["programme_id"], voucher_id=row["voucher_id"], provider_id=row["provider_id"],
            enterprise_id=row["enterprise_id"], announce=False,
        )


@dataclass(frozen=True)
class Journal:
    """One balanced journal transaction, ready to write: its row, its postings' rows, the
    moves of materialised balances (account -> delta) and its audit event's `after`."""

    transaction: dict[str, Any]
    postings: list[dict[str, Any]]
    deltas: dict[uuid.UUID, int]
    record: dict[str, Any]

    @property
    def id(self) -> uuid.UUID:
        return self.transaction["id"]  # type: ignore[no-any-return]


def journal(
    *,
    kind: str,
    legs: Iterable[Leg],
    now: datetime,
    programme_id: uuid.UUID | None = None,
    voucher_id: uuid.UUID | None = None,
    redemption_id: uuid.UUID | None = None,
    memo: str = "",
) -> Journal:
    """Check the legs balance and build what `post` writes."""
    legs = [leg for leg in legs]
    check_balanced(legs)
    request_id = REQUEST_ID.get()
    transaction_id = uuid7()
    deltas: dict[uuid.UUID, int] = defaultdict(int)
    for leg in legs:
        deltas[leg.account_id] += leg.amount  # type: ignore[index]
    return Journal(
        transaction={
            "id": transaction_id,
            "kind": kind,
            "programme_id": programme_id,
            "voucher_id": voucher_id,
            "redemption_id": redemption_id,
            "memo": memo[:500],
            "request_id": None if request_id == "-" else request_id,
            "created_at": now,
        },
        postings=[
            {"transaction_id": transaction_id, "account_id": leg.account_id, "amount": leg.amount,
             "unit": leg.unit, "created_at": now}
            for leg in legs
        ],
        deltas=dict(deltas),
        record=journal_record(kind, now, [(leg.account_id, leg.amount, leg.unit, now) for leg in legs],
                              journal_refs(programme_id, voucher_id, redemption_id, memo[:500])),
    )


async def post(session: AsyncSession, **fields: Any) -> uuid.UUID:
    """Write one balanced journal transaction (`fields` as for `journal`) and move the
    materialised balances, now (one round trip)."""
    entry = journal(**fields)
    batch = Batch()
    await write(session, batch, [entry])
    await driver.run(session, batch)
    return entry.id


async def post_all(session: AsyncSession, entries: Sequence[Journal]) -> None:
    """Write several journals in one statement, their balance moves netted per account, now."""
    batch = Batch()
    await write(session, batch, entries)
    await driver.run(session, batch)


async def write(session: AsyncSession, batch: Batch, entries: Sequence[Journal], *, record: bool = True) -> None:
    """Add the journals to `batch` (their rows, postings and balance moves, netted per account)
    and, with `record`, record each one's audit event (the engine records them itself, in the
    order of the changes they belong to)."""
    deltas: dict[uuid.UUID, int] = defaultdict(int)
    for entry in entries:
        for account, delta in entry.deltas.items():
            deltas[account] += delta
    repository.journal_writes(batch, [e.transaction for e in entries],
                              [p for e in entries for p in e.postings], dict(deltas))
    if record:
        for entry in entries:
            await record_journal(session, entry)


async def record_journal(session: AsyncSession, entry: Journal) -> None:
    """The journal's own audit event, naming its postings: verification matches every journal
    in the ledger against one, so postings written behind the service's back are found."""
    row = entry.transaction
    await audit.record(
        session, "ledger.posted", "ledger_transaction", entry.id, now=row["created_at"], after=entry.record,
        programme_id=row["programme_id"], voucher_id=row["voucher_id"], journal_id=entry.id,
    )


async def captured_in_ledger(session: AsyncSession, redemption_id: uuid.UUID) -> int:
    """What a redemption's capture journals moved to its voucher's used value."""
    return await repository.captured_in_ledger(session, redemption_id)


async def balances(session: AsyncSession, ids: Iterable[uuid.UUID], *, lock: bool = False) -> dict[uuid.UUID, int]:
    return await repository.balances(session, ids, lock=lock)


async def serialise_on(session: AsyncSession, account_id: uuid.UUID) -> None:
    """Serialise a use case on an account row while postings to it go on."""
    await repository.serialise_on(session, account_id)



@dataclass
class Reconciliation:
    """Recomputing every balance from postings: zero differences means the books agree."""

    accounts: int
    postings: int
    transactions: int
    account_differences: list[dict[str, Any]] = field(default_factory=list)
    negative_balances: list[dict[str, Any]] = field(default_factory=list)
    unbalanced_transactions: list[dict[str, Any]] = field(default_factory=list)
    #: Budget or cap committed that no approved application accounts for (or the reverse), and
    #: order and cap counters that differ from their redemptions.
    commitment_differences: list[dict[str, Any]] = field(default_factory=list)
    #: Paid to providers in the ledger but not by a paid settlement (or the reverse).
    settlement_differences: list[dict[str, Any]] = field(default_factory=list)
    #: A voucher's clawback still owed other than the smaller of the clawback and its used value.
    clawback_differences: list[dict[str, Any]] = field(default_factory=list)
    #: Redemptions, settlement lines and totals, and claims that differ from the ledger.
    record_differences: list[dict[str, Any]] = field(default_factory=list)
    #: Not a difference (`is_clean` does not count it): captures whose period's settlement was
    #: cancelled and not made again, which the provider is still owed.
    captures_to_settle_again: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_clean(self) -> bool:
        return not (self.account_differences or self.negative_balances or self.unbalanced_transactions
                    or self.commitment_differences or self.settlement_differences or self.clawback_differences
                    or self.record_differences)


#: The reconciliation reads every posting, journal and redemption: on the 2-core development
#: machine its longest statement takes about 10 s per million redemptions (6 million postings),
#: so it may run longer than a request's 60 s statement limit, which would have made it fail for
#: good past some five million (an independent review).
RECONCILE_STATEMENT_TIMEOUT = "30min"


async def reconcile(session: AsyncSession) -> Reconciliation:
    if dialect_name(session) == "postgresql":
        # A read session's statements, in a transaction of their own that sees one instant: the
        # checks compare tables read by different statements (refund records with the ledger).
        await Database.in_transaction(session, "REPEATABLE READ")
        await session.execute(text(f"SET LOCAL statement_timeout = '{RECONCILE_STATEMENT_TIMEOUT}'"))
    counts = await repository.counts(session)
    return Reconciliation(
        **counts,
        account_differences=await repository.account_differences(session),
        negative_balances=await repository.negative_constrained_accounts(session),
        unbalanced_transactions=await repository.unbalanced_transactions(session),
        commitment_differences=await repository.commitment_differences(session),
        settlement_differences=await repository.settlement_differences(session),
        clawback_differences=await repository.clawback_differences(session),
        record_differences=await repository.record_differences(session),
        captures_to_settle_again=await repository.captures_to_settle_again(session),
    )


async def postings_for_accounts(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], *, after: int | None, limit: int
) -> list[dict[str, Any]]:
    return await repository.postings_for_accounts(session, account_ids, after=after, limit=limit)


# -- entries and point-in-time balances (auditors) --------------------------------------------


async def entries(
    session: AsyncSession, page: IntPageRequest, **filters: Any
) -> tuple[list[dict[str, Any]], str | None]:
    """Postings with their journal and account, in posting order, one page at a time."""
    return await repository.entries_page(session, page, **filters)


@dataclass(frozen=True)
class PointInTimeBalance:
    account: dict[str, Any]
    as_of: datetime
    balance: int
    postings: int
    unposted_expiry: int


async def balance_as_of(session: AsyncSession, account_id: uuid.UUID, as_of: datetime) -> PointInTimeBalance:
    """An account's balance at an instant: the sum of its postings made at or before it, plus on
    a voucher's available and held accounts the holds that had lapsed by then and whose release
    was not yet posted (void when read, as every read counts them; the trial balance's line
    says the same). Works the same for materialised and unmaterialised accounts (it never reads
    `balance`)."""
    account = await repository.account(session, account_id)
    if account is None:
        raise NotFound(msg("no ledger account {account_id}", account_id=account_id))
    balance, postings = await repository.balance_as_of(session, account_id, as_of)
    unposted = 0
    if account["kind"] in (AccountKind.VOUCHER_AVAILABLE.value, AccountKind.VOUCHER_HELD.value):
        moves = await repository.unposted_expiries(session, as_of, voucher_id=account["voucher_id"])
        unposted = moves.get(account_id, 0)
    return PointInTimeBalance(account, as_of, balance + unposted, postings, unposted)


async def open_balance(session: AsyncSession, programme_id: uuid.UUID, kinds: Sequence[AccountKind]) -> int:
    """How far the programme's accounts of these kinds stand from zero, account by account (the
    sum of their absolute balances, materialised or not)."""
    return await repository.open_balance(session, programme_id, [k.value for k in kinds])


@dataclass(frozen=True)
class TrialBalance:
    programme_id: uuid.UUID
    as_of: datetime
    accounts: list[dict[str, Any]]
    totals: dict[str, int]

    @property
    def is_balanced(self) -> bool:
        return all(total == 0 for total in self.totals.values())


async def trial_balance(session: AsyncSession, programme_id: uuid.UUID, as_of: datetime) -> TrialBalance:
    """Every account of the programme with its balance at `as_of`, and the totals per unit,
    which are zero when the programme's journals are all within the programme."""
    if not await repository.programme_exists(session, programme_id):
        raise NotFound(msg("no programme {programme_id}", programme_id=programme_id))
    accounts = await repository.programme_balances_as_of(session, programme_id, as_of)
    # Holds past their TTL are void when read, here too: their release moves held back to
    # available in the balances, before the job posts it; the line says how much is unposted.
    unposted = await repository.unposted_expiries(session, as_of, programme_id=programme_id)
    for line in accounts:
        line["unposted_expiry"] = unposted.get(line["account_id"], 0)
        line["balance"] += line["unposted_expiry"]
    totals = unit_totals((a["unit"], a["balance"]) for a in accounts)
    return TrialBalance(programme_id, as_of, accounts, totals)


@dataclass(frozen=True)
class Spending:
    programme_id: uuid.UUID
    unit: str
    as_of: datetime
    spent: int
    by_region: list[tuple[str, int, int]]
    by_category: list[tuple[str, int]]
    period_key: str
    enterprise_cap: int
    heaviest_users: list[dict[str, Any]]


async def spending(session: AsyncSession, programme_id: uuid.UUID, now: datetime, *, top: int = 10) -> Spending:
    """Where the programme's subsidy went: what was captured net of refunds, by the enterprises'
    regions and by order category (`share_by_lines`), and the enterprises closest to their cap
    this period. `session` should see one instant (Database.snapshot) so the figures agree."""
    programme = await session.get(Programme, programme_id)
    if programme is None:
        raise NotFound(msg("no programme {programme_id}", programme_id=programme_id))
    by_region = await repository.spending_by_region(session, programme_id)
    categories: dict[str, int] = defaultdict(int)
    for name, spent in await repository.spending_of_single_lines(session, programme_id):
        categories[name] += spent
    async for spent, names, computed in repository.spending_lines(session, programme_id):
        for name, share in zip(names, share_by_lines(spent, computed), strict=True):
            categories[name] += share
    by_category = sorted(categories.items(), key=lambda c: (-c[1], c[0]))
    period = period_key(programme.cap_period, programme.cap_timezone, now)
    users = await repository.heaviest_users(session, programme_id, period, top, now)
    return Spending(programme_id, programme.unit, now, sum(r[2] for r in by_region), by_region, by_category,
                    period, programme.enterprise_cap, users)
