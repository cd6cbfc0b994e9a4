"""Roles, scopes and the key format: pure rules, no database."""

from __future__ import annotations

import hashlib
import re

import pytest

from services.voucher.apikeys.rules import (
    KEY_PREFIX,
    ROLE_SCOPES,
    TENANT_ONLY,
    Role,
    Scope,
    grantable,
    hash_key,
    new_key,
    scopes_for,
)

KEY_SHAPE = re.compile(r"^vk_[0-9a-f]{10}_[A-Za-z0-9_-]{43}$")


@pytest.mark.parametrize("role", list(Role))
def test_omitted_scopes_mean_all_the_role_allows(role: Role) -> None:
    assert scopes_for(role, None) == ROLE_SCOPES[role]


@pytest.mark.parametrize("role", list(Role))
def test_any_subset_of_the_role_scopes_is_granted_exactly(role: Role) -> None:
    allowed = sorted(ROLE_SCOPES[role])
    for size in range(1, len(allowed) + 1):
        wanted = [s.value for s in allowed[:size]]
        assert scopes_for(role, wanted) == frozenset(Scope(s) for s in wanted)


def test_repeated_scopes_collapse() -> None:
    assert scopes_for(Role.ENTERPRISE, ["keys:self", "keys:self"]) == frozenset({Scope.KEYS_SELF})


@pytest.mark.parametrize(
    ("role", "scope"),
    [
        (Role.ENTERPRISE, Scope.PROVIDERS_READ),
        (Role.ENTERPRISE, Scope.ENTERPRISES_WRITE),
        (Role.ENTERPRISE, Scope.KEYS_WRITE),
        (Role.PROVIDER, Scope.ENTERPRISES_READ),
        (Role.PROVIDER, Scope.PROVIDERS_WRITE),
        (Role.AUDITOR, Scope.PROGRAMMES_WRITE),
        (Role.AUDITOR, Scope.KEYS_WRITE),
    ],
)
def test_a_scope_outside_the_role_is_refused_and_named(role: Role, scope: Scope) -> None:
    with pytest.raises(ValueError, match=re.escape(scope.value)):
        scopes_for(role, ["programmes:read", scope.value])


def test_an_unknown_scope_is_refused() -> None:
    with pytest.raises(ValueError):
        scopes_for(Role.OPERATOR, ["everything:admin"])


def test_role_scope_table() -> None:
    """The role table is the authorisation policy: a change here must be deliberate."""
    # Operators hold everything but redeeming (only a provider redeems a voucher) and applying
    # (only an enterprise applies, for itself), nor keep webhook endpoints (they belong to the
    # enterprise or provider being told).
    assert ROLE_SCOPES[Role.OPERATOR] == frozenset(Scope) - {
        Scope.REDEMPTIONS_WRITE, Scope.VOUCHERS_LOOKUP, Scope.APPLICATIONS_WRITE, Scope.SETTLEMENTS_CONFIRM,
        Scope.CLAIMS_WRITE, Scope.WEBHOOKS_MANAGE}
    writes = {s for s in Scope if s.value.endswith(":write")}
    # Auditors read everything and write nothing, and cannot manage even their own keys.
    assert ROLE_SCOPES[Role.AUDITOR] == {s for s in Scope if s.value.endswith(":read")} | {Scope.AUDIT_VERIFY}
    assert not ROLE_SCOPES[Role.AUDITOR] & (writes | {Scope.KEYS_SELF, Scope.APPLICATIONS_REVIEW,
                                                      Scope.CLAIMS_REVIEW, Scope.SETTLEMENTS_CONFIRM})
    assert ROLE_SCOPES[Role.ENTERPRISE] == {
        Scope.PROGRAMMES_READ, Scope.ENTERPRISES_READ, Scope.KEYS_SELF, Scope.VOUCHERS_READ,
        Scope.REDEMPTIONS_READ, Scope.APPLICATIONS_READ, Scope.APPLICATIONS_WRITE, Scope.CLAIMS_READ,
        Scope.CLAIMS_WRITE, Scope.EVENTS_READ, Scope.WEBHOOKS_MANAGE,
    }
    assert ROLE_SCOPES[Role.PROVIDER] == {
        Scope.PROGRAMMES_READ, Scope.PROVIDERS_READ, Scope.KEYS_SELF, Scope.REDEMPTIONS_READ,
        Scope.REDEMPTIONS_WRITE, Scope.VOUCHERS_LOOKUP, Scope.SETTLEMENTS_READ, Scope.SETTLEMENTS_CONFIRM,
        Scope.EVENTS_READ, Scope.WEBHOOKS_MANAGE,
    }


def test_new_key_format_and_public_prefix() -> None:
    key, prefix = new_key()
    assert KEY_SHAPE.match(key), key
    assert prefix.startswith(KEY_PREFIX)
    assert key.startswith(prefix + "_")
    assert len(prefix) == len("vk_") + 10


def test_new_keys_and_prefixes_are_unique() -> None:
    pairs = [new_key() for _ in range(2000)]
    assert len({k for k, _ in pairs}) == len(pairs)
    assert len({p for _, p in pairs}) == len(pairs)
    # the secret part carries 256 bits: 43 url-safe base64 characters
    assert all(len(k.split("_", 2)[2]) == 43 for k, _ in pairs)


def test_hash_key_is_sha256_hex_and_deterministic() -> None:
    key, _ = new_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert hash_key(key) == hash_key(key)
    assert re.fullmatch(r"[0-9a-f]{64}", hash_key(key))
    assert key not in hash_key(key)


def test_hash_key_differs_for_keys_one_character_apart() -> None:
    key, _ = new_key()
    other = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert hash_key(key) != hash_key(other)


# -- what a key may hand out (DESIGN §8: never more than it holds) -------------------------------


def test_a_narrowed_key_may_grant_only_its_own_scopes() -> None:
    narrow = frozenset({Scope.KEYS_WRITE})
    assert grantable(Role.OPERATOR, narrow) == narrow
    assert not ROLE_SCOPES[Role.OPERATOR] <= grantable(Role.OPERATOR, narrow)
    assert not ROLE_SCOPES[Role.PROVIDER] <= grantable(Role.OPERATOR, narrow)


def test_an_operator_key_missing_any_one_scope_cannot_hand_out_tenant_scopes() -> None:
    for missing in ROLE_SCOPES[Role.OPERATOR]:
        held = ROLE_SCOPES[Role.OPERATOR] - {missing}
        assert grantable(Role.OPERATOR, held) == held, missing


def test_a_full_operator_key_provisions_every_role() -> None:
    full = grantable(Role.OPERATOR, ROLE_SCOPES[Role.OPERATOR])
    for role in Role:
        assert ROLE_SCOPES[role] <= full, role
    assert TENANT_ONLY and not TENANT_ONLY & ROLE_SCOPES[Role.OPERATOR]


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.ENTERPRISE, Role.PROVIDER])
def test_other_roles_never_grant_beyond_their_own_scopes(role: Role) -> None:
    assert grantable(role, ROLE_SCOPES[role]) == ROLE_SCOPES[role]
