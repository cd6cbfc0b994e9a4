"""The response language, from Accept-Language: zh-CN or English (the default)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header


def preferred(accept_language: str | None) -> str:
    """'zh' when a Chinese tag is preferred (highest q) over English, else 'en'. Malformed
    parts are ignored: a bad header falls back to English, never to an error."""
    best: tuple[float, int, str] = (0.0, 0, "en")
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
        if q != q:  # NaN
            continue
        language = "zh" if tag.startswith("zh") else "en" if tag.startswith("en") or tag == "*" else None
        if language is None or not 0 < q <= 1:
            continue
        if q > best[0] or (q == best[0] and position < best[1]):
            best = (q, position, language)
    return best[2]


def _language(accept_language: Annotated[str | None, Header(include_in_schema=False)] = None) -> str:
    return preferred(accept_language)


#: The request's language as a route parameter: "zh" or "en".
Language = Annotated[str, Depends(_language)]
