"""The response language from Accept-Language: "zh" (zh-CN) or "en".

A header only decides when it states a usable preference between the two; otherwise (no header,
only other languages, malformed parts, `*` alone) the configured `default_language` applies
(VOUCHER_DEFAULT_LANGUAGE, "en" unless set). A header never causes an error.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

LANGUAGES = ("zh", "en")


def language_of_setting(setting: str) -> str:
    """Settings spell languages as tags ("zh-CN", "en"); responses pick "zh" or "en"."""
    return "zh" if setting.lower().startswith("zh") else "en"


def content_language(language: str) -> str:
    """The Content-Language header value of a response in `language`."""
    return "zh-CN" if language == "zh" else "en"


def _weights(accept_language: str | None) -> dict[str, tuple[float, bool, int]]:
    """Each of zh/en the header names (directly, or through `*` when not named) with its weight,
    whether only `*` gave it, and the position of the part that gave it. Malformed or
    out-of-range parts are ignored."""
    named: dict[str, tuple[float, bool, int]] = {}
    star: tuple[float, bool, int] | None = None
    for position, part in enumerate((accept_language or "").split(",")[:32]):
        tag, *params = part.split(";")
        tag = tag.strip().lower()
        q = 1.0
        for param in params:  # the weight's name is case-insensitive (RFC 9110 §12.4.2)
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0  # malformed: ignore this part
        if not 0 <= q <= 1:  # also NaN
            continue
        if tag == "*":
            if star is None or q > star[0]:
                star = (q, True, position)
            continue
        language = "zh" if tag.startswith("zh") else "en" if tag.startswith("en") else None
        if language is None:
            continue
        seen = named.get(language)
        if seen is None or q > seen[0]:
            named[language] = (q, False, position)
    if star is not None:  # `*` stands for every language the header does not name (RFC 9110)
        for language in LANGUAGES:
            named.setdefault(language, star)
    return named


def preferred(accept_language: str | None, default: str = "en") -> str:
    """'zh' or 'en': the one with the highest q; on a tie, a language named outright beats one
    only `*` covers, then the earlier part of the header wins, then the default. With no usable
    preference, `default`, unless the header refuses it with q=0 and not the other language."""
    weights = _weights(accept_language)
    wanted = [(-q, by_star, position, language != default, language)
              for language, (q, by_star, position) in weights.items() if q > 0]
    if wanted:
        return min(wanted)[4]
    other = "en" if default == "zh" else "zh"
    if _refused(weights, default) and not _refused(weights, other):
        return other  # "zh;q=0": anything but Chinese
    return default


def _refused(weights: dict[str, tuple[float, bool, int]], language: str) -> bool:
    return language in weights and weights[language][0] == 0


def default_language(app: Any) -> str:
    """The configured default of the app ("zh" or "en"); "en" where no settings are attached."""
    settings = getattr(getattr(app, "state", None), "settings", None)
    return language_of_setting(getattr(settings, "default_language", "en"))


async def _language(
    request: Request, accept_language: Annotated[str | None, Header(include_in_schema=False)] = None
) -> str:
    return preferred(accept_language, default_language(request.app))


#: The request's language as a route parameter: "zh" or "en".
Language = Annotated[str, Depends(_language)]
