"""Keeps the message catalogue (locale/zh_CN/LC_MESSAGES/voucher.po) in step with the code.

The msgids are every English text the service shows people:
- every `msg("...")` template in services/voucher (extracted with Babel's Python extractor);
- every `_("...")` text in the console's Jinja2 templates (console/templates, Jinja2's Babel
  extractor), which the templates render through the same `msg` (console/web.py);
- every problem title (the DomainError classes and the HTTP layer's own problems);
- every pydantic validation message template (pydantic-core's list of error kinds).

`python -m services.voucher.catalogue update` (`make messages`) adds the new msgids to the PO file
with an empty translation, keeps every existing translation, and marks the ones the code no longer
uses obsolete; `check` exits 1 and lists what has no Chinese. tests/test_messages.py runs the check.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from services.voucher.i18n import CATALOGUE

PACKAGE = Path(__file__).parent
#: Python files whose msg() calls are messages; the generated API client has none.
METHOD_MAP = [("client/**.py", "ignore"), ("**.py", "python")]
#: The console's pages; in them `_("...")` is a message (console/web.py, `text`).
TEMPLATES = PACKAGE / "console" / "templates"
TEMPLATE_METHOD_MAP = [("**.html", "jinja2.ext:babel_extract")]


def code_messages() -> dict[str, list[str]]:
    """msgid -> where it is used ("path:line"), for every msg() template in the package."""
    found: dict[str, list[str]] = {}
    for filename, line, message, _comments, _context in extract_from_dir(
        PACKAGE, METHOD_MAP, keywords={"msg": None}, comment_tags=(), strip_comment_tags=True
    ):
        if isinstance(message, str) and message:
            found.setdefault(message, []).append(f"services/voucher/{filename}:{line}")
    for filename, line, message, _comments, _context in extract_from_dir(
        TEMPLATES, TEMPLATE_METHOD_MAP, keywords={"_": None}, comment_tags=(), strip_comment_tags=True,
        options_map={"**.html": {"trim_blocks": "true", "lstrip_blocks": "true"}},
    ):
        if isinstance(message, str) and message:
            found.setdefault(message, []).append(f"services/voucher/console/templates/{filename}:{line}")
    return found


def titles() -> dict[str, str]:
    """msgid -> the problem code, for every problem title."""
    from services.voucher.http.meta import catalogue

    return {entry.title_en: code for code, entry in catalogue("en").items()}


def pydantic_messages() -> dict[str, str]:
    """msgid -> the pydantic error kinds it serves."""
    from pydantic_core._pydantic_core import list_all_errors

    found: dict[str, str] = {}
    for error in list_all_errors():
        template = error["message_template_python"]
        found[template] = f"{found[template]}, {error['type']}" if template in found else error["type"]
    return found


def wanted() -> dict[str, str]:
    """Every msgid the code uses, with a comment saying where it comes from."""
    out = {text: f"problem title: {code}" for text, code in titles().items()}
    for text, kinds in pydantic_messages().items():
        out.setdefault(text, f"pydantic: {kinds}")
    for text, places in code_messages().items():
        out.setdefault(text, "msg: " + ", ".join(places[:3]))
    return out


def load() -> Catalog:
    with CATALOGUE.open("rb") as file:
        return read_po(file, locale="zh_CN", domain="voucher")


def untranslated(catalog: Catalog | None = None) -> list[str]:
    catalog = catalog or load()
    missing = []
    for text in wanted():
        entry = catalog.get(text)
        if entry is None or not entry.string or entry.fuzzy:
            missing.append(text)
    return missing


def update() -> int:
    catalog = load()
    want = wanted()
    for text, comment in want.items():
        entry = catalog.get(text)
        if entry is None:
            catalog.add(text, "", auto_comments=[comment])
        else:
            entry.auto_comments = [comment]
    for entry in list(catalog):
        if isinstance(entry.id, str) and entry.id and entry.id not in want:  # no plural msgids here
            catalog.obsolete[entry.id] = entry
            del catalog[entry.id]
    with CATALOGUE.open("wb") as file:
        write_po(file, catalog, width=0, sort_output=True, omit_header=False, ignore_obsolete=True)
    missing = untranslated(catalog)
    print(f"{len(want)} messages; {len(missing)} without Chinese")
    return 0


def check() -> int:
    missing = untranslated()
    for text in missing:
        print(f"no Chinese for: {text!r}")
    return 1 if missing else 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "check"
    if command == "update":
        return update()
    if command == "check":
        return check()
    print("usage: python -m services.voucher.catalogue [update|check]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
