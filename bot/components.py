"""The buttons under progress and result messages, as Discord sees them: custom_ids and views.

A leaf: the presses are handled in `bot.buttons` (persistent `DynamicItem`s matching these custom_ids), so the
renderers can build views without depending on what a press does.
"""

from __future__ import annotations

import re

import discord

from bot.i18n import t

LINK_URL = re.compile(r"^https?://\S+$")
CANCEL = "cancel"
REMIX = "remix"
REROLL = "reroll"
REMIX_MODAL = "remix-modal"
CUSTOM_ID = re.compile(r"^sora:(?P<action>[a-z-]+):(?P<generation>\d+)$")


def custom_id(action: str, generation_id: int) -> str:
    """`sora:<action>:<generation id>`: the one spelling of every custom_id the bot sends."""
    return f"sora:{action}:{generation_id}"


def template(action: str) -> str:
    """The `DynamicItem` template matching `custom_id(action, …)`."""
    return rf"sora:{re.escape(action)}:(?P<generation>\d+)"


def parse_custom_id(value: str) -> tuple[str, int] | None:
    match = CUSTOM_ID.match(value)
    return (match["action"], int(match["generation"])) if match else None


class JobControls(discord.ui.View):
    """The buttons under a progress message (Cancel) or a result (Remix, Re-roll, and a link when not attached)."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @classmethod
    def for_progress(cls, generation_id: int, locale: str) -> JobControls:
        view = cls()
        view.add_item(
            discord.ui.Button(
                label=t("button.cancel", locale),
                style=discord.ButtonStyle.danger,
                custom_id=custom_id(CANCEL, generation_id),
                emoji="✖️",
            )
        )
        return view

    @classmethod
    def for_result(cls, generation_id: int, locale: str, *, link: str | None = None) -> JobControls:
        view = cls()
        view.add_item(
            discord.ui.Button(
                label=t("button.remix", locale),
                style=discord.ButtonStyle.primary,
                custom_id=custom_id(REMIX, generation_id),
                emoji="🎨",
            )
        )
        view.add_item(
            discord.ui.Button(
                label=t("button.reroll", locale),
                style=discord.ButtonStyle.secondary,
                custom_id=custom_id(REROLL, generation_id),
                emoji="🎲",
            )
        )
        if link and LINK_URL.match(link) and len(link) <= 512:
            view.add_item(discord.ui.Button(label=t("button.open", locale), url=link, emoji="🔗"))
        return view


__all__ = ["CANCEL", "REMIX", "REMIX_MODAL", "REROLL", "JobControls", "custom_id", "parse_custom_id", "template"]
