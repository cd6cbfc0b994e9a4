"""Who is calling: resolved from the API key once per request, passed to services. Pure."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.voucher.apikeys.rules import Role, Scope


@dataclass(frozen=True, slots=True)
class Actor:
    principal_id: uuid.UUID
    role: Role
    key_id: uuid.UUID | None
    scopes: frozenset[Scope]
    enterprise_id: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None

    @property
    def sees_everything(self) -> bool:
        """Operators and auditors read across tenants; enterprises and providers never do."""
        return self.role in (Role.OPERATOR, Role.AUDITOR)


#: The actor used by the CLI and background jobs.
SYSTEM = Actor(
    principal_id=uuid.UUID(int=0), role=Role.OPERATOR, key_id=None, scopes=frozenset(Scope)
)
