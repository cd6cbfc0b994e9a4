"""Field types shared by the enterprise and provider registries."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from services.voucher import uscc as uscc_rules


def _check_uscc(value: str) -> str:
    problem = uscc_rules.problem(value)
    if problem is None:
        return value
    context = {"reason": problem.message}
    if problem.expected_check:
        context["expected_check_character"] = problem.expected_check
    raise PydanticCustomError(problem.code, "invalid unified social credit code: {reason}", context)


Uscc = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        description="Unified social credit code (GB 32100-2015), check character verified.",
        examples=["91330110MA2H0W1P48"],
    ),
    AfterValidator(lambda v: _check_uscc(v.strip().upper())),
]


class RelatedParty(BaseModel):
    """A legal representative or shareholder, as a stable hashed identifier (never a raw ID
    number): two records with the same `party_id` are the same person or company."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["legal_representative", "shareholder"]
    party_id: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9:_-]+$")


class PatchModel(BaseModel):
    """A partial update: only fields sent change, and null is refused where a value is required."""

    model_config = ConfigDict(extra="forbid")
    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> PatchModel:
        bad = sorted(f for f in self.model_fields_set if getattr(self, f) is None and f not in self.nullable)
        if bad:
            raise PydanticCustomError(
                "null_not_allowed", "{fields} cannot be set to null", {"fields": ", ".join(bad)}
            )
        return self
