"""Provider status machine. Pure."""

from __future__ import annotations

from enum import StrEnum

from services.voucher.errors import InvalidTransition
from services.voucher.i18n import Status, msg


class ProviderStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    SUSPENDED = "suspended"


TRANSITIONS: dict[ProviderStatus, frozenset[ProviderStatus]] = {
    ProviderStatus.PENDING: frozenset({ProviderStatus.APPROVED}),
    ProviderStatus.APPROVED: frozenset({ProviderStatus.SUSPENDED}),
    # A suspension is lifted by approving again (the operator re-checks the provider).
    ProviderStatus.SUSPENDED: frozenset({ProviderStatus.APPROVED}),
}


def check_transition(current: ProviderStatus, target: ProviderStatus) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(
            msg("a provider cannot go from {current} to {target}",
                current=Status(current.value), target=Status(target.value)),
            current_status=current.value,
            allowed=sorted(s.value for s in TRANSITIONS[current]),
        )
