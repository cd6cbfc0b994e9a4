"""The provider status machine, over every pair of states. Pure."""

from __future__ import annotations

import itertools

import pytest

from services.voucher.errors import InvalidTransition
from services.voucher.providers.rules import TRANSITIONS, ProviderStatus, check_transition

P, A, S = ProviderStatus.PENDING, ProviderStatus.APPROVED, ProviderStatus.SUSPENDED

#: The whole machine, written out by hand: pending → approved ⇄ suspended.
ALLOWED = {(P, A), (A, S), (S, A)}
ALL_PAIRS = list(itertools.product(ProviderStatus, repeat=2))


def test_the_states_are_exactly_these() -> None:
    assert {s.value for s in ProviderStatus} == {"pending", "approved", "suspended"}
    assert set(TRANSITIONS) == set(ProviderStatus)


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_transitions_pass(current: ProviderStatus, target: ProviderStatus) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), [p for p in ALL_PAIRS if p not in ALLOWED])
def test_every_other_pair_is_refused_with_the_current_status(
    current: ProviderStatus, target: ProviderStatus
) -> None:
    with pytest.raises(InvalidTransition) as raised:
        check_transition(current, target)
    err = raised.value
    assert err.code == "invalid_transition"
    assert err.status == 409
    assert err.extra["current_status"] == current.value
    assert err.extra["allowed"] == sorted(t.value for c, t in ALLOWED if c is current)
    assert current.value in err.detail and target.value in err.detail


def test_no_way_back_to_pending() -> None:
    assert all(P not in targets for targets in TRANSITIONS.values())


def test_self_transitions_are_refused() -> None:
    for status in ProviderStatus:
        with pytest.raises(InvalidTransition):
            check_transition(status, status)
