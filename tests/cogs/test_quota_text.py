"""The quota and admin text catalogue: both languages complete and formattable, lists that fit an embed."""

from __future__ import annotations

import string

from cogs._quota_text import EN, ZH_CN, credits, listing, text


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    assert set(EN) == set(ZH_CN)
    for key, template in EN.items():
        assert placeholders(template) == placeholders(ZH_CN[key]), key


def test_lookup_falls_back_to_english() -> None:
    assert text("quota.title", "fr") == "Your video credits"
    assert text("quota.title", "zh-CN") == "你的视频额度"
    assert text("no.such.key", "en") == "no.such.key"


def test_credits() -> None:
    assert credits(1, "en") == "1 credit"
    assert credits(3, "en") == "3 credits"
    assert credits(None, "en") == "unlimited"
    assert credits(None, "zh-CN") == "无限"


def test_long_lists_are_cut_to_fit_an_embed_field() -> None:
    lines = [f"<@{10**17 + i}>: {i} credits" for i in range(200)]
    shown = listing(lines, "en")
    assert len(shown) <= 1024
    assert shown.endswith("more")
    assert shown.splitlines()[0] == lines[0]
    assert listing([], "en") == "none"
