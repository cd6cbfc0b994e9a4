"""Enterprise request and response models."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from services.voucher.i18n import msg
from services.voucher.instants import Day
from services.voucher.money import MAX_AMOUNT
from services.voucher.registry_schemas import (
    Certification,
    NameText,
    NoteText,
    OneLineText,
    PatchModel,
    RelatedParty,
    RelatedPartyInput,
    Uscc,
    distinct_certifications,
    field_refusal,
)

REGION_CODE_PATTERN = r"^[1-9][0-9]{5}$"
RegionCode = Field(pattern=REGION_CODE_PATTERN, description="6-digit administrative division.")

EXAMPLE: dict[str, Any] = {
    "uscc": "91330110MA2H0W1P48",
    "name": "杭州未来算法科技有限公司",
    "region_code": "330110",
    "headcount": 42,
    "annual_revenue": 1_250_000_000,
    "founded_on": "2021-03-15",
    "industry_code": "I6513",
    "certifications": ["high_tech", "sme"],
    "blacklist_records": [],
    "related_parties": [{"role": "legal_representative", "party_id": "sha256:9f2c1a7b3e5d8c40"}],
}


class BlacklistRecord(BaseModel):
    """A 失信 (dishonesty) record: when it was recorded, by whom, and whether it was lifted."""

    model_config = ConfigDict(extra="forbid")

    recorded_on: Day
    authority: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=1000)
    lifted_on: Day | None = None


class BlacklistRecordInput(BlacklistRecord):
    """A 失信 record as sent: `lifted_on`, when given, is on or after `recorded_on`; the
    authority one line of text, the reason text or nothing."""

    authority: OneLineText = Field(min_length=1, max_length=200)
    reason: NoteText = Field(default="", max_length=1000)

    # Accepted until December 2026: a record stored before then is read as it is (BlacklistRecord).

    @field_validator("lifted_on")
    @classmethod
    def _lifted_after_recorded(cls, value: date | None, info: ValidationInfo) -> date | None:
        recorded = info.data.get("recorded_on")
        if value is not None and recorded is not None and value < recorded:
            raise field_refusal("lifted_before_recorded", msg(
                "cannot be before the day the record was made ({recorded_on})", recorded_on=str(recorded)))
        return value


#: What an enterprise holds, as sent: each certification once. A list stored before the rule
#: (December 2026) is read as it is.
CertificationsInput = Annotated[list[Certification], AfterValidator(distinct_certifications), Field(json_schema_extra={"uniqueItems": True})]


class EnterpriseFields(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    region_code: str = RegionCode
    headcount: int | None = Field(default=None, ge=0, le=10_000_000, strict=True)
    annual_revenue: int | None = Field(default=None, ge=0, le=MAX_AMOUNT, strict=True, description="In fen (1/100 yuan): revenue is in CNY whatever a programme's unit.")
    founded_on: Day | None = None
    industry_code: str | None = Field(default=None, max_length=16)
    certifications: list[Certification] = Field(default_factory=list, max_length=50)
    blacklist_records: list[BlacklistRecord] = Field(default_factory=list, max_length=100)
    related_parties: list[RelatedParty] = Field(default_factory=list, max_length=200)


class EnterpriseCreate(EnterpriseFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    # Checked as input only: a name stored before the rule still reads (never a 500).
    name: NameText = Field(min_length=1, max_length=200)

    uscc: Uscc
    certifications: CertificationsInput = Field(default_factory=list, max_length=50)
    # Each item is a BlacklistRecord (a subclass that checks its dates); nothing appends to it.
    blacklist_records: list[BlacklistRecordInput] = Field(  # type: ignore[assignment]
        default_factory=list, max_length=100)
    related_parties: list[RelatedPartyInput] = Field(  # type: ignore[assignment]
        default_factory=list, max_length=200)


class EnterpriseUpdate(PatchModel):
    nullable = frozenset({"headcount", "annual_revenue", "founded_on", "industry_code"})
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"headcount": 55, "certifications": ["high_tech", "sme"]}]},
    )

    name: NameText | None = Field(default=None, min_length=1, max_length=200)
    # Not the shared RegionCode FieldInfo: it has no default, which made this optional field required.
    region_code: str | None = Field(
        default=None, pattern=REGION_CODE_PATTERN, description="6-digit administrative division."
    )
    headcount: int | None = Field(default=None, ge=0, le=10_000_000, strict=True)
    annual_revenue: int | None = Field(default=None, ge=0, le=MAX_AMOUNT, strict=True)
    founded_on: Day | None = None
    industry_code: str | None = Field(default=None, max_length=16)
    certifications: CertificationsInput | None = Field(default=None, max_length=50)
    blacklist_records: list[BlacklistRecordInput] | None = Field(default=None, max_length=100)
    related_parties: list[RelatedPartyInput] | None = Field(default=None, max_length=200)


class EnterprisePublic(EnterpriseFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **EXAMPLE,
                    "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e14",
                    "version": 1,
                    "created_at": "2026-11-26T06:00:00Z",
                    "updated_at": "2026-11-26T06:00:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    uscc: str
    version: int
    created_at: datetime
    updated_at: datetime
