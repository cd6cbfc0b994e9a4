"""The message catalogue: every sentence for people exists in zh-CN and English, reads its
figures as people read them, and is written once (services/voucher/i18n.py, docs/errors.md).

The code is read with `ast`, so a raise site added tomorrow is checked without a test of its own.
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.voucher import catalogue, errors
from services.voucher.http.meta import catalogue as problem_catalogue
from services.voucher.i18n import Amount, Status, msg, translate

PACKAGE = Path(catalogue.__file__).parent
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "client" not in p.relative_to(PACKAGE).parts)
#: A parameter with one of these names is an amount in minor units: it is passed as Amount(...).
MONEY = re.compile(r"(amount|cap$|^cap|budget|balance|granted|committed|remaining|subsidy|face_value|"
                   r"held|revenue|refundable|price|spend|captured|refunded)")


def has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def walk(root: type[errors.DomainError]) -> Iterator[type[errors.DomainError]]:
    yield root
    for sub in root.__subclasses__():
        yield from walk(sub)


ERROR_CLASSES = {cls.__name__: cls for cls in walk(errors.DomainError)}


def calls() -> Iterator[tuple[str, ast.Call, str]]:
    """Every call in the package, with where it is and the called name."""
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                yield f"{path.relative_to(PACKAGE.parent.parent)}:{node.lineno}", node, name


def is_text(node: ast.expr) -> bool:
    """A literal or f-string: English written inline, which no catalogue translates."""
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


# -- the catalogue -------------------------------------------------------------------------------


def test_every_message_title_and_validation_message_has_chinese() -> None:
    missing = catalogue.untranslated()
    assert not missing, f"{len(missing)} messages lack Chinese (run `make messages`, then translate): {missing[:10]}"


def test_translations_use_only_their_templates_parameters_and_are_chinese() -> None:
    entries = [m for m in catalogue.load() if m.id and m.string]
    assert len(entries) > 300
    for entry in entries:
        assert placeholders(entry.string) <= placeholders(entry.id), (entry.id, entry.string)
        if entry.string != "{error}":  # pydantic's "Value error, {error}": the inner message is ours
            assert has_chinese(entry.string), entry.id


def test_no_figure_is_labelled_with_a_currency_by_hand() -> None:
    """A parameter followed by a currency word is a raw minor-unit figure labelled by hand;
    amounts are Amount parameters, which carry their own sign and unit."""
    labelled = re.compile(r"\{[a-z_]+\}\s*(元|CNY|yuan|fen|分|卡时|GPU-hours?)|[¥￥]\s*\{")
    for entry in catalogue.load():
        if entry.id:
            assert not labelled.search(entry.id) and not labelled.search(entry.string or ""), entry.id


def test_the_catalogue_has_no_entry_the_code_does_not_use() -> None:
    wanted = catalogue.wanted()
    unused = [m.id for m in catalogue.load() if m.id and m.id not in wanted]
    assert not unused, f"obsolete entries (run `make messages`): {unused[:10]}"


# -- every problem code, both languages ----------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(problem_catalogue("en")), ids=str)
def test_every_problem_code_has_a_title_in_both_languages(code: str) -> None:
    english, chinese = problem_catalogue("en")[code], problem_catalogue("zh")[code]
    assert english.title.isascii() and english.title and not has_chinese(english.title)
    assert has_chinese(chinese.title) and chinese.title != english.title
    assert chinese.title_zh == chinese.title and chinese.title_en == english.title


def test_every_raise_site_gives_a_catalogue_message_not_inline_text() -> None:
    inline = []
    for where, call, name in calls():
        if name in ERROR_CLASSES and name != "DomainError":
            if call.args and is_text(call.args[0]) or any(k.arg == "detail_zh" for k in call.keywords):
                inline.append(f"{where} {name}")
        if name == "field_error" and len(call.args) > 1 and is_text(call.args[1]):
            inline.append(f"{where} field_error")
    assert not inline, "details written inline instead of msg(...): " + ", ".join(inline)


def test_validators_refuse_with_catalogue_messages() -> None:
    """A ValueError raised in a request schema is shown to the caller: it carries a msg()."""
    inline = []
    for path in SOURCES:
        if not path.name.endswith("schemas.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                if isinstance(func, ast.Name) and func.id == "ValueError" and node.exc.args and is_text(node.exc.args[0]):
                    inline.append(f"{path.name}:{node.lineno}")
    assert not inline, inline


def _is_amount(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Amount"


def amount_names() -> dict[str, set[str]]:
    """Per module, the local names bound to an Amount(...) (`held = Amount(...)`, or the same
    in a tuple assignment)."""
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        names = found.setdefault(str(path.relative_to(PACKAGE.parent.parent)), set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs = (zip(target.elts, node.value.elts, strict=False)
                             if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                             else [(target, node.value)])
                    names.update(t.id for t, v in pairs if isinstance(t, ast.Name) and _is_amount(v))
    return found


def test_message_templates_are_literals_and_amounts_are_amounts() -> None:
    problems = []
    bound = amount_names()
    for where, call, name in calls():
        if name != "msg":
            continue
        if not call.args or not isinstance(call.args[0], ast.Constant) or not isinstance(call.args[0].value, str):
            problems.append(f"{where}: the template is not a string literal")
            continue
        template = call.args[0].value
        given = {k.arg for k in call.keywords if k.arg}
        if placeholders(template) - given:
            problems.append(f"{where}: {sorted(placeholders(template) - given)} not given")
        for keyword in call.keywords:
            if keyword.arg and MONEY.search(keyword.arg):
                value = keyword.value
                module = where.rsplit(":", 1)[0]
                if not (_is_amount(value) or isinstance(value, ast.Name) and value.id in bound[module]):
                    problems.append(f"{where}: {keyword.arg} is an amount; pass Amount(value, unit)")
    assert not problems, "\n".join(problems)


def test_instants_in_messages_are_passed_as_instants() -> None:
    """A time in a sentence is passed as the datetime itself, which the message shows where the
    programme is (i18n.render_instant): `.isoformat()` had put UTC RFC 3339 text in front of
    people (券已于 2027-03-02T01:00:00+00:00 过期)."""
    problems = [
        f"{where}: {keyword.arg} is passed as text; pass the datetime or date itself"
        for where, call, name in calls() if name == "msg"
        for keyword in call.keywords
        if isinstance(keyword.value, ast.Call) and isinstance(keyword.value.func, ast.Attribute)
        and keyword.value.func.attr == "isoformat"
    ]
    assert not problems, "\n".join(problems)


def test_an_instant_reads_as_wall_clock_time_where_the_programme_is() -> None:
    from datetime import UTC, date, datetime

    message = msg("expired at {expires_at}", expires_at=datetime(2027, 3, 2, 1, 0, tzinfo=UTC))
    assert message.render("en") == "expired at 2027-03-02 09:00 (UTC+08:00)"
    assert "2027-03-02 09:00（UTC+08:00）" in message.render("zh")
    with_seconds = msg("expired at {expires_at}", expires_at=datetime(2027, 3, 2, 1, 0, 7, 5, tzinfo=UTC))
    assert with_seconds.render("en") == "expired at 2027-03-02 09:00:07 (UTC+08:00)"
    assert msg("expired at {expires_at}", expires_at=date(2027, 3, 2)).render("en") == "expired at 2027-03-02"
    # an instant whose local time is past year 9999 (kept before its input was bounded) reads in UTC
    far = msg("closed at {closes_at}", closes_at=datetime(9999, 12, 31, 23, 0, tzinfo=UTC))
    assert far.render("en") == "closed at 9999-12-31 23:00:00+00:00"


def test_no_message_in_the_code_is_only_a_problem_title() -> None:
    """A detail whose Chinese is some problem's title says nothing the title does not (this
    catches details picked from a table, which the raise-site check below cannot see)."""
    titles = {translate(entry.title_en, "zh") for entry in problem_catalogue("en").values()}
    repeats = [text for text in catalogue.code_messages() if translate(text, "zh") in titles]
    assert not repeats, repeats


def test_no_chinese_detail_only_repeats_the_title() -> None:
    """Where a raise site gives specifics, the Chinese has them too, not just the title."""
    repeats = []
    for where, call, name in calls():
        cls = ERROR_CLASSES.get(name)
        if cls is None or not call.args or not isinstance(call.args[0], ast.Call):
            continue
        inner = call.args[0]
        if getattr(inner.func, "id", "") == "msg" and isinstance(inner.args[0], ast.Constant):
            template = inner.args[0].value
            if translate(template, "zh") == translate(cls.title, "zh"):
                repeats.append(f"{where} {name}")
    assert not repeats, repeats


# -- rendering -------------------------------------------------------------------------------------------


def test_amounts_render_as_people_read_them_in_both_languages() -> None:
    assert Amount(1_200_000_000, "CNY").render("zh") == "¥12,000,000.00"
    assert Amount(1_200_000_000, "CNY").render("en") == "¥12,000,000.00"
    assert Amount(5, "CNY").render("en") == "¥0.05"
    assert Amount(-12_345, "CNY").render("zh") == "-¥123.45"
    assert Amount(1_200_000, "GPU_HOUR").render("en") == "1,200.000 GPU-hours"
    assert Amount(1_200_000, "GPU_HOUR").render("zh") == "1,200.000 卡时"
    assert Amount(5_000, "TOKEN").render("en") == "5,000 tokens"
    assert Amount(5_000, "TOKEN").render("zh") == "5,000 个 Token"
    assert Amount(7, "XYZ").render("en") == "7 XYZ"  # never a figure in the wrong unit


def test_a_message_renders_its_parameters_in_the_readers_language() -> None:
    message = msg("this operation needs scope {scopes}; the key's role is {role}",
                  scopes=["vouchers:write", "redemptions:write"], role="provider")
    assert message.render("en") == ("this operation needs scope vouchers:write, redemptions:write; "
                                    "the key's role is provider")
    assert message.render("zh") == "此操作需要权限范围 vouchers:write、redemptions:write；该密钥的角色为provider"
    assert str(message) == message.render("en")
    # a code in a sentence is a word in Chinese: the role, a programme's kind and payout mode
    worded = msg("this operation needs scope {scopes}; the key's role is {role}", scopes=["keys:write"],
                 role=Status("provider"))
    assert worded.render("zh") == "此操作需要权限范围 keys:write；该密钥的角色为服务商"
    assert worded.render("en") == "this operation needs scope keys:write; the key's role is provider"
    assert [Status(c).render("zh") for c in ("operator", "compute", "enterprise_claim")] == [
        "项目主管部门", "算力", "企业申领补贴"]


def test_a_missing_or_broken_translation_falls_back_to_english() -> None:
    assert msg("not in the catalogue {x}", x=1).render("zh") == "not in the catalogue 1"
    assert msg("braces {{literal}} {x}", x=2).render("en") == "braces {literal} 2"
