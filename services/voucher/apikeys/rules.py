"""Roles, scopes and key format. Pure.

Each role has a fixed set of scopes it may hold; a key carries a subset of them. Tenant
isolation (which rows a key sees) is applied in queries from the principal, not from scopes.
"""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum

from services.voucher.i18n import msg


class Role(StrEnum):
    OPERATOR = "operator"
    AUDITOR = "auditor"
    ENTERPRISE = "enterprise"
    PROVIDER = "provider"


class Scope(StrEnum):
    PROGRAMMES_READ = "programmes:read"
    PROGRAMMES_WRITE = "programmes:write"
    ENTERPRISES_READ = "enterprises:read"
    ENTERPRISES_WRITE = "enterprises:write"
    PROVIDERS_READ = "providers:read"
    PROVIDERS_WRITE = "providers:write"
    KEYS_READ = "keys:read"
    KEYS_WRITE = "keys:write"
    #: Manage (list, rotate, revoke) only the keys of one's own principal.
    KEYS_SELF = "keys:self"
    VOUCHERS_READ = "vouchers:read"
    VOUCHERS_WRITE = "vouchers:write"
    #: Look a voucher up by code and the enterprise's USCC (providers, to quote a subsidy).
    VOUCHERS_LOOKUP = "vouchers:lookup"
    REDEMPTIONS_READ = "redemptions:read"
    REDEMPTIONS_WRITE = "redemptions:write"
    LEDGER_READ = "ledger:read"
    APPLICATIONS_READ = "applications:read"
    #: Submit and withdraw one's own applications (enterprises only).
    APPLICATIONS_WRITE = "applications:write"
    #: Approve, reject, lodge objections; dry-run eligibility rules (the programme office).
    APPLICATIONS_REVIEW = "applications:review"
    SETTLEMENTS_READ = "settlements:read"
    #: Create, resolve disputes, approve, pay, cancel (the programme office).
    SETTLEMENTS_WRITE = "settlements:write"
    #: Confirm or dispute one's own settlement (providers only).
    SETTLEMENTS_CONFIRM = "settlements:confirm"
    CLAIMS_READ = "claims:read"
    #: File one's own claims (enterprises only).
    CLAIMS_WRITE = "claims:write"
    #: Review, approve, reject and pay claims (the programme office).
    CLAIMS_REVIEW = "claims:review"
    #: Read audit events, ledger entries, point-in-time balances, anomaly reports; export.
    AUDIT_READ = "audit:read"
    #: Verify the audit chain and take signed checkpoints of it (writes only those records).
    AUDIT_VERIFY = "audit:verify"
    #: Page through events (one's own, for enterprises and providers; all, for the office).
    EVENTS_READ = "events:read"
    #: Register, change, rotate and delete one's own webhook endpoints; read their delivery log.
    WEBHOOKS_MANAGE = "webhooks:manage"


_READ_ALL = {
    Scope.PROGRAMMES_READ,
    Scope.ENTERPRISES_READ,
    Scope.PROVIDERS_READ,
    Scope.KEYS_READ,
    Scope.VOUCHERS_READ,
    Scope.REDEMPTIONS_READ,
    Scope.LEDGER_READ,
    Scope.APPLICATIONS_READ,
    Scope.SETTLEMENTS_READ,
    Scope.CLAIMS_READ,
    Scope.AUDIT_READ,
    Scope.EVENTS_READ,
}
#: Only providers redeem: a redemption is always a provider's claim on a voucher.
_PROVIDER_ONLY = {Scope.REDEMPTIONS_WRITE, Scope.VOUCHERS_LOOKUP, Scope.SETTLEMENTS_CONFIRM}
#: Only an enterprise applies, for itself.
_ENTERPRISE_ONLY = {Scope.APPLICATIONS_WRITE, Scope.CLAIMS_WRITE}
#: Webhook endpoints belong to the enterprise or provider that is told; the office has none.
_SUBSCRIBER_ONLY = {Scope.WEBHOOKS_MANAGE}

ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.OPERATOR: frozenset(set(Scope) - _PROVIDER_ONLY - _ENTERPRISE_ONLY - _SUBSCRIBER_ONLY),
    # Auditors read everything and write nothing but verifications and checkpoints of the
    # audit chain (exports are reads).
    Role.AUDITOR: frozenset(_READ_ALL | {Scope.AUDIT_VERIFY}),
    Role.ENTERPRISE: frozenset(
        {Scope.PROGRAMMES_READ, Scope.ENTERPRISES_READ, Scope.KEYS_SELF, Scope.VOUCHERS_READ,
         Scope.REDEMPTIONS_READ, Scope.APPLICATIONS_READ, Scope.APPLICATIONS_WRITE, Scope.CLAIMS_READ,
         Scope.CLAIMS_WRITE, Scope.EVENTS_READ, Scope.WEBHOOKS_MANAGE}
    ),
    Role.PROVIDER: frozenset(
        {Scope.PROGRAMMES_READ, Scope.PROVIDERS_READ, Scope.KEYS_SELF, Scope.REDEMPTIONS_READ,
         Scope.REDEMPTIONS_WRITE, Scope.VOUCHERS_LOOKUP, Scope.SETTLEMENTS_READ, Scope.SETTLEMENTS_CONFIRM,
         Scope.EVENTS_READ, Scope.WEBHOOKS_MANAGE}
    ),
}

#: Scopes that act as an enterprise or a provider. The office never holds them, yet provisioning
#: tenants' keys is its job, so only a full operator key may hand them out (see `grantable`).
TENANT_ONLY: frozenset[Scope] = frozenset(set(Scope) - ROLE_SCOPES[Role.OPERATOR])


def grantable(role: Role, scopes: frozenset[Scope]) -> frozenset[Scope]:
    """The scopes a key may put on a key it creates or rotates: those it holds itself; a full
    operator key (every operator scope) also the tenant-only scopes. A narrowed key can never
    mint or obtain a key with more reach than its own."""
    if role is Role.OPERATOR and ROLE_SCOPES[Role.OPERATOR] <= scopes:
        return scopes | TENANT_ONLY
    return scopes


KEY_PREFIX = "vk_"


def new_key() -> tuple[str, str]:
    """(full secret key, public prefix). 256 bits of randomness; only the hash is stored."""
    public = secrets.token_hex(5)
    secret = secrets.token_urlsafe(32)
    return f"{KEY_PREFIX}{public}_{secret}", f"{KEY_PREFIX}{public}"


def hash_key(key: str) -> str:
    """SHA-256 is enough for 256-bit random keys: there is nothing to brute-force or salt."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def scopes_for(role: Role, requested: list[str] | None) -> frozenset[Scope]:
    """The scopes a new key gets: all its role allows, or the requested subset of them."""
    allowed = ROLE_SCOPES[role]
    if requested is None:
        return allowed
    unknown = sorted(set(requested) - {s.value for s in Scope})
    if unknown:
        raise ValueError(msg("unknown scope(s): {scopes}", scopes=unknown))
    wanted = {Scope(s) for s in requested}
    extra = wanted - allowed
    if extra:
        raise ValueError(
            msg("role {role} cannot hold scope(s): {scopes}", role=role, scopes=sorted(s.value for s in extra))
        )
    return frozenset(wanted)
