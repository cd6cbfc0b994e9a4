"""Provider request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field

from services.voucher.i18n import msg
from services.voucher.programmes.rules import ProgrammeKind
from services.voucher.providers.rules import ProviderStatus
from services.voucher.registry_schemas import (
    NameText,
    PatchModel,
    RelatedParty,
    RelatedPartyInput,
    Uscc,
    WrittenText,
    distinct,
    field_refusal,
)
from services.voucher.webhooks.rules import UnsafeUrl, check_url_shape, is_literal, is_public

EXAMPLE: dict[str, Any] = {
    "uscc": "91330100716105852F",
    "name": "杭州云算科技有限公司",
    "kinds": ["compute", "model"],
    "settlement_account": {
        "bank_name": "中国工商银行杭州余杭支行",
        "account_name": "杭州云算科技有限公司",
        "account_number": "1202020209000123456",
    },
    "webhook_url": "https://provider.example.com/voucher-events",
    "related_parties": [],
}


class SettlementAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bank_name: str = Field(min_length=1, max_length=200)
    account_name: str = Field(min_length=1, max_length=200)
    account_number: str = Field(min_length=4, max_length=40, pattern=r"^[0-9A-Za-z-]+$")


class SettlementAccountInput(SettlementAccount):
    """A settlement account as sent: its names checked as names are (a stored one reads as it is)."""

    bank_name: NameText = Field(min_length=1, max_length=200)
    account_name: NameText = Field(min_length=1, max_length=200)


def _public_https(url: AnyHttpUrl) -> AnyHttpUrl:
    """https, no credentials, and not an address that is not public when written as one (no DNS
    here: nothing is ever sent to this URL)."""
    try:
        _, host, _ = check_url_shape(str(url), allow_http=False)
    except UnsafeUrl as refused:
        raise field_refusal("webhook_url_refused", refused.message) from None
    name = host.strip("[]").rstrip(".").lower()  # "localhost." is the same name
    if name == "localhost" or name.endswith(".localhost") or (is_literal(name) and not is_public(name)):
        raise field_refusal("webhook_url_refused", msg("the host {host!r} is not a public address", host=host))
    return url


#: Where the provider says it takes events: kept for the programme office's records. Nothing is
#: ever sent to it — deliveries go only to endpoints registered with `POST /v1/webhook-endpoints`,
#: whose addresses are resolved and checked before each send — but it is held to their shape
#: (https, no credentials, not a private or loopback address): `http://127.0.0.1:6379/` had been
#: accepted (an independent review of the registries, December 2026).
ContactUrl = Annotated[AnyHttpUrl, AfterValidator(_public_https), Field(description=(
    "Where the provider says it receives events, for the office's records (https, public). Deliveries go only to "
    "endpoints registered with `POST /v1/webhook-endpoints`."))]


#: The kinds a provider offers, as sent: each once (`["compute", "compute"]` had been stored,
#: December 2026; a list stored before the rule is read as it is).
KindsInput = Annotated[list[ProgrammeKind], AfterValidator(distinct), Field(json_schema_extra={"uniqueItems": True})]


class ProviderFields(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kinds: list[ProgrammeKind] = Field(min_length=1, max_length=2)
    settlement_account: SettlementAccount | None = None
    # As stored: a URL recorded before the rule below is still read (the rule is for input).
    webhook_url: AnyHttpUrl | None = None
    related_parties: list[RelatedParty] = Field(default_factory=list, max_length=200)


class ProviderCreate(ProviderFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    # Checked as input only: a name stored before the rule still reads (never a 500).
    name: NameText = Field(min_length=1, max_length=200)
    settlement_account: SettlementAccountInput | None = None
    uscc: Uscc
    kinds: KindsInput = Field(min_length=1, max_length=2)
    webhook_url: ContactUrl | None = None
    related_parties: list[RelatedPartyInput] = Field(default_factory=list, max_length=200)  # type: ignore[assignment]


class ProviderUpdate(PatchModel):
    nullable = frozenset({"settlement_account", "webhook_url"})
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"webhook_url": "https://provider.example.com/hooks/v2"}]},
    )

    name: NameText | None = Field(default=None, min_length=1, max_length=200)
    kinds: KindsInput | None = Field(default=None, min_length=1, max_length=2)
    settlement_account: SettlementAccountInput | None = None
    webhook_url: ContactUrl | None = None
    related_parties: list[RelatedPartyInput] | None = Field(default=None, max_length=200)


class StatusChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "qualification documents verified"}]}
    )

    reason: WrittenText = Field(min_length=1, max_length=500)


class ProviderPublic(ProviderFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **EXAMPLE,
                    "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e13",
                    "status": "approved",
                    "status_reason": "qualification documents verified",
                    "version": 2,
                    "created_at": "2026-11-26T06:00:00Z",
                    "updated_at": "2026-11-26T06:01:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    uscc: str
    status: ProviderStatus
    status_reason: str | None
    version: int
    created_at: datetime
    updated_at: datetime
