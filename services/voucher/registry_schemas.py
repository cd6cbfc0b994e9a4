"""Field types shared by the registries and by the requests that record what people type."""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from services.voucher import uscc as uscc_rules
from services.voucher.eligibility.rules import certification_key
from services.voucher.i18n import TEMPLATE_KEY, Message, msg


def _uscc_message(problem: uscc_rules.UsccProblem, value: str) -> Message:
    """What is wrong with `value`, as a catalogue message whose English is uscc.py's reason."""
    specific: Message | None = None
    if problem.code == "uscc_length":
        specific = msg("invalid unified social credit code: must be {length} characters, got {actual}",
                       length=uscc_rules.LENGTH, actual=len(value))
    elif problem.code == "uscc_character":
        bad = [ch for ch in value if ch not in uscc_rules.ALPHABET]
        specific = msg("invalid unified social credit code: character {character} is not allowed "
                       "(upper-case digits and letters except I, O, Z, S, V)", character=repr(bad[0]) if bad else "")
    elif problem.code == "uscc_region":
        specific = msg("invalid unified social credit code: characters 3-8 must be the 6-digit region code")
    elif problem.code == "uscc_check_character":
        specific = msg("invalid unified social credit code: check character is {character} but should be {expected}",
                       character=repr(value[-1:]), expected=repr(problem.expected_check))
    general = msg("invalid unified social credit code: {reason}", reason=problem.message)
    # uscc.py words the problem; a message that would not say the same in English is not used.
    return specific if specific is not None and str(specific) == str(general) else general


def _check_uscc(value: str) -> str:
    problem = uscc_rules.problem(value)
    if problem is None:
        return value
    message = _uscc_message(problem, value)
    # The message's parameters are context members, so the HTTP layer can render its template
    # (the catalogue's msgid) in the reader's language.
    context: dict[str, Any] = {"reason": problem.message, **message.params, TEMPLATE_KEY: message.template}
    if problem.expected_check:
        context["expected_check_character"] = problem.expected_check
    raise PydanticCustomError(problem.code, message.template, context)


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


#: Characters that are never part of text a person writes: control characters (C0, DEL and C1:
#: NEL, CSI), and the Unicode line and paragraph separators.
_NEVER = frozenset({"Cc", "Zl", "Zp"})
#: Characters that show nothing: spaces, the invisible formatting ones (zero-width space, joiners,
#: direction marks) and the above.
_INVISIBLE = frozenset({"Zs", "Cf", *_NEVER})
_LINE_BREAKS = frozenset("\t\n\r")


def field_refusal(code: str, message: Message) -> PydanticCustomError:
    """A validator's refusal whose catalogue message the HTTP layer renders in the reader's
    language (its parameters and its template travel in the error's context)."""
    return PydanticCustomError(code, message.template, {**message.params, TEMPLATE_KEY: message.template})


def text_problem(value: str, *, lines: bool) -> tuple[str, Message] | None:
    """What is wrong with text a person writes, as (code, message), or None: a control
    character (a line break too, unless `lines`), or nothing that shows. The console's bulk
    preview asks it of each row before the API would refuse the whole file."""
    for ch in value:
        if unicodedata.category(ch) in _NEVER and not (lines and ch in _LINE_BREAKS):
            return "text_control_character", (msg("must not contain control characters") if lines
                                               else msg("must be one line, without line breaks or control characters"))
    if all(unicodedata.category(ch) in _INVISIBLE for ch in value):
        return "text_blank", msg("must hold visible text, not only spaces or line breaks")
    return None


def _check_text(value: str, *, lines: bool) -> None:
    problem = text_problem(value, lines=lines)
    if problem is not None:
        raise field_refusal(*problem)


def _written(value: str) -> str:
    """A reason or an objection: lines of text, at least one character that shows."""
    _check_text(value, lines=True)
    return value


def _one_line(value: str) -> str:
    """A reference (a bank's, an order's): one line, stored without the spaces around it."""
    _check_text(value, lines=False)
    return value.strip()


def _name(value: str) -> str:
    """A name: one line, visible, and no invisible formatting characters — direction overrides
    and isolates (U+202A–202E, U+2066–2069), zero-width spaces and joiners — which make one
    name read as another; stored without the spaces around it."""
    stripped = _one_line(value)
    if any(unicodedata.category(ch) == "Cf" for ch in value):
        raise field_refusal("text_format_character", msg(
            "must not contain invisible formatting characters (direction marks or overrides, zero-width spaces)"))
    return stripped


#: Direction overrides, embeddings and isolates (U+202A–202E, U+2066–2069): they make text read
#: as other text ("invoice\u202efdp.exe" reads "invoiceexe.pdf").
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _direction_override() -> PydanticCustomError:
    return field_refusal("text_direction_override", msg(
        "must not contain direction overrides or isolates (U+202A–202E, U+2066–2069)"))


def _file_name(value: str) -> str:
    """A file's name as its owner gave it: one line, visible, and no direction override or
    isolate; other invisible formatting (an emoji's zero-width joiner, a ZWNJ some scripts
    need, a soft hyphen) is part of real names and kept. Stored without the spaces around it."""
    stripped = _one_line(value)
    if any(ch in _BIDI_CONTROLS for ch in value):
        raise _direction_override()
    return stripped


def _note(value: str) -> str:
    """A text that may be left empty (""), else as `WrittenText`."""
    if value:
        _check_text(value, lines=True)
    return value


#: What a line of an order may not hold: control characters (C0, DEL, C1), line and paragraph
#: separators, and direction overrides and isolates. One C regex: it runs on every line item of
#: every redeem.
_NOT_IN_A_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029" + "".join(sorted(_BIDI_CONTROLS)) + "]")


def _order_line(value: str) -> str:
    """Text a provider writes on an order's line (its description, accelerator or model), shown
    to the enterprise and the office on statements: one line, no direction override; may be empty."""
    found = _NOT_IN_A_LINE.search(value)
    if found is None:
        return value
    if found.group() in _BIDI_CONTROLS:
        raise _direction_override()
    raise field_refusal("text_control_character", msg("must be one line, without line breaks or control characters"))


def _optional_line(value: Any) -> Any:
    """An optional one-line field sent as "" is not given (None), as the console sends it."""
    return None if value == "" else value


#: Text a person writes into a record that outlives the request — a reason, a bank's payment
#: reference on a settlement or claim that becomes immutable once paid: "  \n " had been
#: recorded as a payment's reference (an independent review, December 2026).
WrittenText = Annotated[str, AfterValidator(_written)]
OneLineText = Annotated[str, AfterValidator(_one_line)]
#: The name of an enterprise, a provider, a programme or a bank account: printed on notices
#: (the public 公示 shows an enterprise's), statements and the console. "   ", "\u200b" and a
#: right-to-left override that made a name read backwards had been registered (an independent
#: review, December 2026).
NameText = Annotated[str, AfterValidator(_name)]
#: A document's file name, shown to the office reviewing a claim (an independent review: a
#: right-to-left override made one name read as another; `NameText` had refused emoji too).
FileNameText = Annotated[str, AfterValidator(_file_name)]
#: A description or a reason that may be left empty: "" as it is, anything else as `WrittenText`
#: (a programme's description, a blacklist record's reason).
NoteText = Annotated[str, AfterValidator(_note)]
#: A line item's description, accelerator or model (see `_order_line`).
OrderLineText = Annotated[str, AfterValidator(_order_line)]
#: An optional one-line reference: "" is taken as not given; anything else as `OneLineText`.
OptionalLine = Annotated[OneLineText | None, BeforeValidator(_optional_line)]


#: A certification an enterprise holds, as the eligibility rules name it ("sme", "high_tech").
Certification = Annotated[str, Field(max_length=64, examples=["high_tech"])]


def distinct_certifications(items: list[str]) -> list[str]:
    """An enterprise's certifications, each named once, whatever the case or width."""
    seen: dict[str, str] = {}
    for item in items:
        key = certification_key(item)
        if key in seen:
            raise field_refusal("list_repeated", msg("lists {item} more than once", item=item))
        seen[key] = item
    return items


def distinct(items: list[Any]) -> list[Any]:
    """A list that stands for a set (a provider's kinds, an enterprise's certifications) names
    each member once: `["compute", "compute"]` had been stored as sent (December 2026)."""
    seen: set[Any] = set()
    for item in items:
        if item in seen:
            raise field_refusal("list_repeated", msg("lists {item} more than once", item=str(item)))
        seen.add(item)
    return items


class RelatedParty(BaseModel):
    """A legal representative or shareholder, as a stable hashed identifier (never a raw ID
    number): two records with the same `party_id` are the same person or company."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["legal_representative", "shareholder"]
    party_id: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9:_-]+$")


#: The weights of a resident identity card number's 17 digits (GB 11643, ISO 7064 MOD 11-2).
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


#: 18 characters (17 digits and a digit or X) not inside a longer run of digits.
_ID_RUN = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")


def is_identity_number(value: str) -> bool:
    """An 18-character resident identity card number: its check character right, its birth date
    (characters 7–14) a real day from 1900 on, and not a valid USCC (a company named by its
    USCC is how a corporate shareholder is recorded; some USCCs pass the card's check too)."""
    if len(value) != 18 or not _ID_RUN.fullmatch(value):
        return False
    check = "10X98765432"[sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True)) % 11]
    if value[17].upper() != check or uscc_rules.is_valid(value.upper()):
        return False
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return born.year >= 1900


def holds_identity_number(value: str) -> bool:
    """Whether an identity card number stands anywhere in `value`: alone, after a prefix
    (`person:`, `ID`) or between separators (`p_…_v1`)."""
    return any(is_identity_number(found.group()) for found in _ID_RUN.finditer(value))


class RelatedPartyInput(RelatedParty):
    """A related party as sent: a raw identity card number is refused wherever it stands in
    the id (`is_identity_number`; a 15-digit card of the first generation is not recognised).
    It had been stored as sent, then shown in audit events, anomaly reports and the refusals
    providers read (an independent review, December 2026). A stored one still reads (the rule
    is for input)."""

    @field_validator("party_id")
    @classmethod
    def _not_an_identity_number(cls, value: str) -> str:
        if holds_identity_number(value):
            raise field_refusal("party_id_raw_identity", msg(
                "a related party is named by a stable hashed identifier, never a raw identity card number"))
        return value


class PatchModel(BaseModel):
    """A partial update: only fields sent change, and null is refused where a value is required."""

    model_config = ConfigDict(extra="forbid")
    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> PatchModel:
        bad = sorted(f for f in self.model_fields_set if getattr(self, f) is None and f not in self.nullable)
        if bad:
            raise field_refusal("null_not_allowed", msg("{fields} cannot be set to null", fields=", ".join(bad)))
        return self
