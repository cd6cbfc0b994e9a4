"""The ledger's rules: account kinds, which may never go negative, which keep a materialised
balance, and the zero-sum check. Pure.

Sign convention: an account's balance is the sum of its postings. Accounts that hold value
(a voucher's available balance, a programme's uncommitted budget) are positive; source and
contra accounts (a programme's funding, the counterpart of captured value) are negative.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class AccountKind(StrEnum):
    # per programme
    PROGRAMME_FUNDING = "programme_funding"  # source of the budget (negative)
    PROGRAMME_AVAILABLE = "programme_available"  # budget not yet committed
    PROGRAMME_COMMITTED = "programme_committed"  # approved, voucher not yet issued
    PROGRAMME_SPENT = "programme_spent"  # contra of captured value (negative)
    PROGRAMME_BREAKAGE = "programme_breakage"  # expired value not returned to the pool
    PROGRAMME_CLAWBACK = "programme_clawback"  # contra of receivables (negative)
    # per voucher
    VOUCHER_AVAILABLE = "voucher_available"
    VOUCHER_HELD = "voucher_held"
    VOUCHER_USED = "voucher_used"
    # per provider and programme
    PROVIDER_PAYABLE = "provider_payable"  # may go negative: refund after payment
    PROVIDER_PAID = "provider_paid"
    # per enterprise and programme
    ENTERPRISE_RECEIVABLE = "enterprise_receivable"  # clawback of used value
    ENTERPRISE_PAYABLE = "enterprise_payable"  # approved claims (enterprise_claim mode)
    ENTERPRISE_PAID = "enterprise_paid"


NON_NEGATIVE: frozenset[AccountKind] = frozenset(
    {
        AccountKind.PROGRAMME_AVAILABLE,
        AccountKind.PROGRAMME_COMMITTED,
        AccountKind.PROGRAMME_BREAKAGE,
        AccountKind.VOUCHER_AVAILABLE,
        AccountKind.VOUCHER_HELD,
        AccountKind.VOUCHER_USED,
        AccountKind.PROVIDER_PAID,
        AccountKind.ENTERPRISE_RECEIVABLE,
        AccountKind.ENTERPRISE_PAID,
    }
)

#: Contra and payable accounts that every capture of a programme or provider touches would
#: become one hot row serialising all redemptions; their balance is the sum of their postings,
#: computed when needed, instead of a row updated on every movement.
NOT_MATERIALISED: frozenset[AccountKind] = frozenset(
    {AccountKind.PROGRAMME_SPENT, AccountKind.PROVIDER_PAYABLE, AccountKind.ENTERPRISE_PAYABLE}
)


class UnbalancedTransaction(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Leg:
    """One posting to be written: `amount` (signed, non-zero) to `account_id` in `unit`."""

    account_id: object
    amount: int
    unit: str


def check_balanced(legs: Iterable[Leg]) -> None:
    """Every journal transaction's postings sum to zero per unit, and none is zero."""
    totals: dict[str, int] = defaultdict(int)
    count = 0
    for leg in legs:
        if isinstance(leg.amount, bool) or not isinstance(leg.amount, int):
            raise UnbalancedTransaction("posting amounts are integers")
        if leg.amount == 0:
            raise UnbalancedTransaction("a posting of zero moves nothing")
        totals[leg.unit] += leg.amount
        count += 1
    if count < 2:
        raise UnbalancedTransaction("a journal transaction has at least two postings")
    off = {unit: total for unit, total in totals.items() if total != 0}
    if off:
        raise UnbalancedTransaction(f"postings do not sum to zero: {off}")


#: The journal that issues a voucher: its face value, from the programme into the voucher's
#: available account (reconciliation holds the two equal).
ISSUE_JOURNAL = "voucher_issued"
#: The journal that funds a programme when it opens: its whole budget, from funding into
#: available. Reconciliation holds it the only movement of the funding account, equal to the budget.
FUNDING_JOURNAL = "programme_funded"
#: The journals that take unused value out of a voucher when it is revoked or expires.
REVOKE_JOURNAL = "voucher_revoked"
EXPIRY_JOURNAL = "voucher_expired"


def transfer(source: object, target: object, amount: int, unit: str) -> list[Leg]:
    """Move `amount` from `source` to `target`: the two legs of a simple movement."""
    return [Leg(source, -amount, unit), Leg(target, amount, unit)]


def unit_totals(balances: Iterable[tuple[str, int]]) -> dict[str, int]:
    """The sum of (unit, balance) pairs per unit: a trial balance is zero in every unit, because
    every journal transaction is."""
    totals: dict[str, int] = defaultdict(int)
    for unit, balance in balances:
        totals[unit] += balance
    return dict(sorted(totals.items()))


def share_by_lines(spent: int, computed: Sequence[int]) -> list[int]:
    """An order's spent subsidy shared among its lines, for reporting by category: in proportion
    to the subsidy computed for each line (before the limits cut the total), rounded down, with
    what the rounding leaves on the first line — so the shares add up exactly to `spent`. Lines
    computed at nothing get nothing (all of it goes to the first line if every line did)."""
    if not computed:
        return []
    total = sum(computed)
    shares = [spent * c // total for c in computed] if total > 0 else [0] * len(computed)
    shares[0] += spent - sum(shares)
    return shares


# -- account codes: one place decides how accounts are named ------------------------------------


@lru_cache(maxsize=4096)
def programme_code(programme_id: uuid.UUID, kind: AccountKind) -> str:
    return f"programme:{programme_id}:{kind.value.removeprefix('programme_')}"


@lru_cache(maxsize=4096)
def voucher_code(voucher_id: uuid.UUID, kind: AccountKind) -> str:
    return f"voucher:{voucher_id}:{kind.value.removeprefix('voucher_')}"


@lru_cache(maxsize=4096)
def provider_code(provider_id: uuid.UUID, programme_id: uuid.UUID, kind: AccountKind) -> str:
    return f"provider:{provider_id}:programme:{programme_id}:{kind.value.removeprefix('provider_')}"


@lru_cache(maxsize=4096)
def enterprise_code(enterprise_id: uuid.UUID, programme_id: uuid.UUID, kind: AccountKind) -> str:
    return f"enterprise:{enterprise_id}:programme:{programme_id}:{kind.value.removeprefix('enterprise_')}"
