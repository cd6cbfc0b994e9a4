"""The response language from Accept-Language: Chinese when a zh tag is preferred, English
otherwise, and never an error whatever the header holds."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.voucher.http.language import preferred


@pytest.mark.parametrize("header", [None, "", " ", ",", ";", ",,,", ";;;q=", "q=0.9"])
def test_no_or_empty_header_is_english(header: str | None) -> None:
    assert preferred(header) == "en"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("en-US,en;q=0.9", "en"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("en;q=0.5,zh;q=0.8", "zh"),
        ("zh;q=0.5,en;q=0.8", "en"),
        ("en;q=0.1,zh-CN;q=0.2", "zh"),
        ("zh-CN;q=0.2,en;q=0.1", "zh"),
        ("en;q=0.999,zh;q=1", "zh"),
        ("zh;q=0.001", "zh"),
        ("zh; q=0.5, en; q=0.4", "zh"),
        ("  zh-CN  ;  q=0.7 ,  en ; q=0.6 ", "zh"),
    ],
)
def test_the_highest_q_wins(header: str, expected: str) -> None:
    assert preferred(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh,en", "zh"),
        ("en,zh", "en"),
        ("zh-CN,en-US", "zh"),
        ("en-GB,zh-CN", "en"),
        ("en;q=0.7,zh;q=0.7", "en"),
        ("zh;q=0.7,en;q=0.7", "zh"),
        ("fr,zh;q=0.5,en;q=0.5", "zh"),
        ("fr,en;q=0.5,zh;q=0.5", "en"),
        ("*,zh", "zh"),  # a language named outright beats `*` at the same weight
        ("zh,*", "zh"),
        ("*,en", "en"),
    ],
)
def test_ties_go_to_the_first(header: str, expected: str) -> None:
    assert preferred(header) == expected


@pytest.mark.parametrize("tag", ["zh", "zh-CN", "zh-cn", "ZH-CN", "zh-Hans", "zh-Hans-CN", "zh-TW", "zh-HK",
                                 "zh-Hant", "zh-SG"])
def test_chinese_variants(tag: str) -> None:
    assert preferred(tag) == "zh"
    assert preferred(f"{tag},en;q=0.9") == "zh"
    assert preferred(f"en,{tag};q=0.9") == "en"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("*", "en"),
        ("*;q=0.5", "en"),
        ("*;q=0.9,zh;q=0.8", "en"),
        ("zh;q=0.8,*;q=0.9", "en"),
        ("*;q=0.1,zh-CN;q=0.5", "zh"),
    ],
)
def test_wildcard_means_english(header: str, expected: str) -> None:
    assert preferred(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("fr", "en"),
        ("fr-FR,de;q=0.9,ja;q=0.8", "en"),
        ("fr,de,zh;q=0.1", "zh"),
        ("ja,en;q=0.2", "en"),
    ],
)
def test_other_languages_are_ignored(header: str, expected: str) -> None:
    assert preferred(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh;q=abc", "en"),
        ("zh;q=abc,,;", "en"),
        ("zh;q=", "en"),
        ("zh;q=abc,en;q=0.1", "en"),
        ("en;q=abc,zh;q=0.1", "zh"),
        ("en;q=x,zh-CN;q=0.3", "zh"),
        ("zh;q=0", "en"),
        ("zh;q=0,en;q=0", "en"),
        ("zh;q=-1", "en"),
        ("zh;q=1.5", "en"),
        ("zh;q=2,en;q=0.1", "en"),
        ("zh;q=nan", "en"),
        ("zh;q=inf", "en"),
        ("zh;q=-inf,en;q=0.3", "en"),
        ("en;q=nan,zh;q=0.2", "zh"),
        ("en;q=1e999,zh;q=0.2", "zh"),
    ],
)
def test_malformed_or_out_of_range_q_values_are_ignored(header: str, expected: str) -> None:
    assert preferred(header) == expected


def test_a_very_long_header_is_cheap_and_english_by_default() -> None:
    assert preferred("fr," * 10_000) == "en"
    assert preferred("zh-CN," + "fr," * 10_000) == "zh"


@given(st.one_of(st.none(), st.text(), st.text(alphabet="zhenZHEN-*;q=0.123456789,, \t"),
                 st.lists(st.tuples(st.sampled_from(["zh", "zh-CN", "en", "en-US", "*", "fr", "", "zh-TW"]),
                                    st.one_of(st.none(), st.floats(allow_nan=True), st.text(max_size=5))))
                 .map(lambda parts: ",".join(t if q is None else f"{t};q={q}" for t, q in parts))))
@example("zh;q=abc,,;")
@example("\x00\udfff;q=\x00")
def test_any_text_gives_en_or_zh_and_never_raises(header: str | None) -> None:
    assert preferred(header) in ("en", "zh")


def test_an_upper_case_q_is_a_weight() -> None:
    assert preferred("en;q=0.9,zh;Q=0.1") == "en"


# -- the configured default -------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", " ", ",;,", "fr-FR,de", "zh;q=abc", "en;q=2", "*", "*;q=0.3"])
def test_no_usable_preference_gives_the_default(header: str | None) -> None:
    assert preferred(header, default="zh") == "zh"
    assert preferred(header, default="en") == "en"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("en", "en"),
        ("en-US,zh;q=0.5", "en"),
        ("zh;q=0", "en"),  # Chinese refused, nothing else named: the other language
        ("zh-CN;q=0,fr", "en"),
        ("zh;q=0,en;q=0", "zh"),  # both refused: the default after all
        ("*;q=0.5,zh;q=0.1", "en"),  # `*` stands for English here, which it outweighs
        ("*,zh", "zh"),
        ("*,en", "en"),  # named outright beats `*`, whatever the default
        ("en,*", "en"),
    ],
)
def test_a_stated_preference_beats_a_chinese_default(header: str, expected: str) -> None:
    assert preferred(header, default="zh") == expected


def test_an_english_refusal_gives_chinese_with_an_english_default() -> None:
    assert preferred("en;q=0", default="en") == "zh"
    assert preferred("en-GB;q=0,*;q=0", default="en") == "en"


@given(st.one_of(st.none(), st.text()), st.sampled_from(["zh", "en"]))
def test_any_text_with_any_default_gives_en_or_zh(header: str | None, default: str) -> None:
    assert preferred(header, default) in ("en", "zh")
