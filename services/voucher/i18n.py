"""Words for people, in zh-CN and English, from one message catalogue.

Every sentence the service writes for a person — a problem's title and detail, a field error, an
eligibility reason — is an English template with named parameters: `msg("no provider with id
{id}", id=provider_id)`. The template is its own msgid in the gettext catalogue
`locale/zh_CN/LC_MESSAGES/voucher.po`, which holds the Chinese; `make messages` extracts every
`msg(...)` template into it (Babel) and `tests/test_messages.py` fails when one lacks a Chinese
translation, when a translation uses a parameter its template does not give, or when an amount
is passed as a bare integer.

Parameters are written in the reader's language when the message is rendered, not when it is
raised: an `Amount` as people read money (¥12,000,000.00, never 1200000000 labelled as yuan), an
instant as a wall-clock time where the programme is (`2027-03-02 09:00（UTC+08:00）`, never
the UTC RFC 3339 text machines read), a list joined with 、 or commas, an enum as its value, a
nested message in the same language.

Pure: the standard library and Babel's PO reader only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.messages.pofile import read_po

from services.voucher.money import format_for_people

#: The context member of a PydanticCustomError that names its catalogue template (msgid), so
#: the HTTP layer renders the error in the reader's language; it is not shown to the caller.
TEMPLATE_KEY = "_template"
CATALOGUE = Path(__file__).with_name("locale") / "zh_CN" / "LC_MESSAGES" / "voucher.po"

#: Where the instants in sentences are shown (VOUCHER_DEFAULT_TIMEZONE; set as the app starts).
_ZONE = {"zone": ZoneInfo("Asia/Shanghai")}


def show_instants_in(zone: str) -> None:
    """Show the instants in messages as wall-clock time in `zone` (an IANA name)."""
    _ZONE["zone"] = ZoneInfo(zone)


def instants_zone() -> ZoneInfo:
    """Where the instants in sentences are shown (for a day named in a sentence)."""
    return _ZONE["zone"]


def render_instant(value: datetime, language: str) -> str:
    """An aware instant as people read it: the date and time where the programme is, to the
    minute (to the second when it has seconds), with the offset from UTC. A problem that said
    `券已于 2027-03-02T01:00:00+00:00 过期` named a day and hour the console showed as
    2027-03-02 09:00 (an independent review, December 2026)."""
    if value.tzinfo is None:
        return value.isoformat(sep=" ")
    try:
        local = value.astimezone(_ZONE["zone"])
    except OverflowError:  # within hours of year 1 or 9999: a time kept before its input was bounded
        return value.isoformat(sep=" ")
    shown = local.strftime("%Y-%m-%d %H:%M" if local.second == 0 and local.microsecond == 0 else "%Y-%m-%d %H:%M:%S")
    offset = local.strftime("%z")
    offset = f"UTC{offset[:3]}:{offset[3:]}"
    return f"{shown}（{offset}）" if language == "zh" else f"{shown} ({offset})"


@cache
def _chinese() -> dict[str, str]:
    with CATALOGUE.open("rb") as file:
        catalogue = read_po(file, locale="zh_CN")
    return {m.id: m.string for m in catalogue if m.id and isinstance(m.id, str) and m.string
            and isinstance(m.string, str) and not m.fuzzy}


def translate(text: str, language: str) -> str:
    """`text` (an English msgid) in `language`; the English itself where the catalogue lacks it
    (which tests/test_messages.py does not let happen for any template in the code)."""
    if language != "zh":
        return text
    return _chinese().get(text, text)


@dataclass(frozen=True, slots=True)
class Amount:
    """An amount in minor units of `unit`, shown to people in major units with the unit."""

    value: int
    unit: str

    def render(self, language: str) -> str:
        return format_for_people(self.value, self.unit, language)

    def __str__(self) -> str:
        return self.render("en")


class Message:
    """An English template and its parameters, rendered in a language when someone reads it."""

    __slots__ = ("params", "template")

    def __init__(self, template: str, /, **params: Any) -> None:
        self.template = template
        self.params = params

    def render(self, language: str) -> str:
        values = {name: render_value(value, language) for name, value in self.params.items()}
        for template in (translate(self.template, language), self.template):
            try:
                return template.format(**values)
            except (KeyError, IndexError, ValueError):  # a broken translation: the English reads
                continue
        return self.template

    def __str__(self) -> str:
        return self.render("en")

    def __repr__(self) -> str:
        return f"msg({self.template!r}, **{self.params!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and (self.template, self.params) == (other.template, other.params)

    def __hash__(self) -> int:
        return hash(self.template)


def msg(template: str, /, **params: Any) -> Message:
    """A message for people; `template` is English with `{name}` parameters (see the module)."""
    return Message(template, **params)


def render_value(value: Any, language: str) -> str:
    """One parameter as text in `language`."""
    if isinstance(value, Message | Amount | Status):
        return value.render(language)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return render_instant(value, language)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        return ("、" if language == "zh" else ", ").join(render_value(v, language) for v in value)
    return str(value)


def render(value: Any, language: str) -> Any:
    """`value` with every Message inside it (dicts and lists included) rendered in `language`:
    for the extension members of a problem, such as its `errors` list."""
    if isinstance(value, Message):
        return value.render(language)
    if isinstance(value, dict):
        return {k: render(v, language) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, language) for v in value]
    return value


#: Every status a person reads, as a word (the API's code stays in the problem's extension
#: members and in the resource): a Chinese sentence had said "仍处于“under_review”状态".
STATUS_WORDS: dict[str, Message] = {
    "draft": msg("draft"), "open": msg("open"), "closed": msg("closed"), "archived": msg("archived"),
    "submitted": msg("submitted"), "ineligible": msg("ineligible"), "under_review": msg("under review"),
    "approved": msg("approved"), "publicity": msg("in publicity"), "issued": msg("issued"),
    "rejected": msg("rejected"), "withdrawn": msg("withdrawn"), "active": msg("active"),
    "suspended": msg("suspended"), "exhausted": msg("exhausted"), "expired": msg("expired"),
    "revoked": msg("revoked"), "disputed": msg("disputed"), "paid": msg("paid"), "cancelled": msg("cancelled"),
    "pending": msg("pending"),
    # a redemption's
    "held": msg("held"), "captured": msg("captured"), "voided": msg("voided"), "refunded": msg("refunded"),
    # a webhook endpoint's and a delivery's
    "enabled": msg("enabled"), "disabled": msg("disabled"), "succeeded": msg("succeeded"),
    "failed": msg("given up"),
    # a key's role, a programme's kind and its payout mode, also codes in a sentence
    "operator": msg("operator"), "auditor": msg("auditor"), "enterprise": msg("enterprise"),
    "provider": msg("provider"), "compute": msg("compute"), "model": msg("model"),
    "provider_redemption": msg("redemption by providers"), "enterprise_claim": msg("claims by enterprises"),
}


@dataclass(frozen=True, slots=True)
class Status:
    """A status in a sentence: its word in the reader's language (the code where none is known)."""

    code: str

    def render(self, language: str) -> str:
        code = self.code.value if isinstance(self.code, Enum) else str(self.code)
        word = STATUS_WORDS.get(code)
        return word.render(language) if word is not None else code

    def __str__(self) -> str:
        return self.render("en")
