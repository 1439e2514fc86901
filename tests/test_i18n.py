"""The message catalogue: complete in every language, formats cleanly, resolves locales sensibly."""

from __future__ import annotations

import re
import string

import discord
import pytest

from bot.i18n import CATALOGUE, EN, CatalogueTranslator, resolve_locale, t


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("locale", sorted(CATALOGUE))
def test_every_language_has_every_key_with_the_same_placeholders(locale: str) -> None:
    table = CATALOGUE[locale]
    assert set(table) == set(EN)
    for key, template in table.items():
        assert placeholders(template) == placeholders(EN[key]), key


def test_command_descriptions_fit_discord_limits() -> None:
    for table in CATALOGUE.values():
        for key, text in table.items():
            if key.startswith("cmd."):
                assert 1 <= len(text) <= 100, key


def test_locale_resolution_falls_back_to_guild_then_english() -> None:
    assert resolve_locale(discord.Locale.chinese, discord.Locale.american_english) == "zh-CN"
    assert resolve_locale(discord.Locale.french, discord.Locale.chinese) == "zh-CN"
    assert resolve_locale(discord.Locale.french, None) == "en"
    assert resolve_locale("en-GB") == "en"


def test_t_formats_and_survives_missing_values() -> None:
    assert t("quota.concurrency_user", "zh-CN", running=2) == "你已有 2 个视频在生成中,请等待完成。"
    assert "{running}" in t("quota.concurrency_user", "en")  # a missing value doesn't raise
    assert t("no.such.key", "en") == "no.such.key"


async def test_translator_localizes_by_key() -> None:
    translator = CatalogueTranslator()
    text = discord.app_commands.locale_str("Generate a video from a prompt", key="cmd.sora.description")
    context = discord.app_commands.TranslationContext(
        discord.app_commands.TranslationContextLocation.command_description, None
    )
    assert await translator.translate(text, discord.Locale.chinese, context) == "根据提示词生成视频"
    assert await translator.translate(text, discord.Locale.american_english, context) is None
    assert not re.search(r"[A-Za-z]{4,}", CATALOGUE["zh-CN"]["cmd.sora.description"])
