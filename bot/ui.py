"""Buttons and the remix modal on progress and result messages.

The buttons are persistent `DynamicItem`s: their custom_id encodes the generation they act on
(`sora:cancel:42`), so they keep working after a restart. Each press is handed to the bot's `JobManager`,
which checks who may press it.

The remix modal is persistent the same way: it is not kept in discord.py's modal store (which forgets it on a
restart, and holds only one modal per custom_id, so two members remixing the same video would trample each
other). Every submit whose custom_id is `sora:remix-modal:<id>` is read by `handle_modal_submit`, called from
the remix cog's `on_interaction` listener.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

from bot.i18n import interaction_locale, t

if TYPE_CHECKING:
    from bot.client import SoraBot

LINK_URL = re.compile(r"^https?://\S+$")
REMIX_MAX_LENGTH = 1000
REMIX_MODAL_ID = re.compile(r"^sora:remix-modal:(?P<generation>\d+)$")
REMIX_INPUT_ID = "change"


class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"sora:cancel:(?P<generation>\d+)"):
    def __init__(self, generation_id: int, label: str = "Cancel") -> None:
        super().__init__(
            discord.ui.Button(
                label=label, style=discord.ButtonStyle.danger, custom_id=f"sora:cancel:{generation_id}", emoji="✖️"
            )
        )
        self.generation_id = generation_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(int(match["generation"]))

    async def callback(self, interaction: discord.Interaction[SoraBot]) -> None:
        await interaction.client.jobs.press_cancel(interaction, self.generation_id)


class RemixButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"sora:remix:(?P<generation>\d+)"):
    def __init__(self, generation_id: int, label: str = "Remix") -> None:
        super().__init__(
            discord.ui.Button(
                label=label, style=discord.ButtonStyle.primary, custom_id=f"sora:remix:{generation_id}", emoji="🎨"
            )
        )
        self.generation_id = generation_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> RemixButton:
        return cls(int(match["generation"]))

    async def callback(self, interaction: discord.Interaction[SoraBot]) -> None:
        locale = interaction_locale(interaction)
        modal = RemixModal(self.generation_id, locale)
        modal.stop()  # a finished modal stays out of discord.py's store: `handle_modal_submit` answers the submit
        await interaction.response.send_modal(modal)


class RerollButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"sora:reroll:(?P<generation>\d+)"):
    def __init__(self, generation_id: int, label: str = "Re-roll") -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"sora:reroll:{generation_id}",
                emoji="🎲",
            )
        )
        self.generation_id = generation_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> RerollButton:
        return cls(int(match["generation"]))

    async def callback(self, interaction: discord.Interaction[SoraBot]) -> None:
        await interaction.client.jobs.press_reroll(interaction, self.generation_id)


class RemixModal(discord.ui.Modal):
    """Asks what should change. Only shown: the submit is handled by `handle_modal_submit`."""

    def __init__(self, generation_id: int, locale: str) -> None:
        super().__init__(title=t("modal.remix.title", locale)[:45], custom_id=f"sora:remix-modal:{generation_id}")
        self.generation_id = generation_id
        self.change: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label=t("modal.remix.label", locale)[:45],
            placeholder=t("modal.remix.placeholder", locale)[:100],
            style=discord.TextStyle.paragraph,
            max_length=REMIX_MAX_LENGTH,
            required=True,
            custom_id=REMIX_INPUT_ID,
        )
        self.add_item(self.change)


def submitted_values(components: Any) -> dict[str, str]:
    """The text inputs of a modal submit, by custom_id (inside action rows or labels)."""
    values: dict[str, str] = {}
    stack = list(components) if isinstance(components, list) else []
    while stack:
        component = stack.pop(0)
        if not isinstance(component, dict):
            continue
        if component.get("type") == 4 and isinstance(component.get("custom_id"), str):
            values[component["custom_id"]] = str(component.get("value") or "")
        stack.extend(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            stack.append(component["component"])
    return values


async def handle_modal_submit(interaction: discord.Interaction[SoraBot]) -> bool:
    """Answer a remix modal submit; False when the interaction is not one (someone else handles it)."""
    if interaction.type is not discord.InteractionType.modal_submit or interaction.data is None:
        return False
    match = REMIX_MODAL_ID.match(str(interaction.data.get("custom_id", "")))
    if match is None:
        return False
    values = submitted_values(interaction.data.get("components"))
    change = values.get(REMIX_INPUT_ID, next(iter(values.values()), ""))
    await interaction.client.jobs.submit_remix_modal(interaction, int(match["generation"]), change)
    return True


class JobControls(discord.ui.View):
    """The buttons under a progress message (Cancel) or a result (Remix, Re-roll, and a link when not attached)."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @classmethod
    def for_progress(cls, generation_id: int, locale: str) -> JobControls:
        view = cls()
        view.add_item(CancelButton(generation_id, t("button.cancel", locale)))
        return view

    @classmethod
    def for_result(cls, generation_id: int, locale: str, *, link: str | None = None) -> JobControls:
        view = cls()
        view.add_item(RemixButton(generation_id, t("button.remix", locale)))
        view.add_item(RerollButton(generation_id, t("button.reroll", locale)))
        if link and LINK_URL.match(link) and len(link) <= 512:
            view.add_item(discord.ui.Button(label=t("button.open", locale), url=link, emoji="🔗"))
        return view


DYNAMIC_ITEMS = (CancelButton, RemixButton, RerollButton)

__all__ = [
    "DYNAMIC_ITEMS",
    "CancelButton",
    "JobControls",
    "RemixButton",
    "RemixModal",
    "RerollButton",
    "handle_modal_submit",
]
