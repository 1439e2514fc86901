"""What a press of a button, or a submit of the remix modal, does: persistent `DynamicItem`s matching the
custom_ids of `bot.components`, so they keep working after a restart. Each press goes to the request intake.

The remix modal is persistent the same way: it is not kept in discord.py's modal store (which forgets it on a
restart, and holds only one modal per custom_id, so two members remixing the same video would trample each
other). Every submit whose custom_id is `sora:remix-modal:<id>` is read by `handle_modal_submit`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from typing import Any

import discord

from bot import intake
from bot.components import CANCEL, REMIX, REMIX_MODAL, REROLL, custom_id, parse_custom_id, template
from bot.i18n import interaction_locale, t
from bot.replies import send_ephemeral

log = logging.getLogger(__name__)

REMIX_MAX_LENGTH = 1000
KNOWN_PRESSES = frozenset({CANCEL, REMIX, REROLL})
REMIX_INPUT_ID = "change"


async def guarded(interaction: discord.Interaction[Any], handling: Awaitable[None]) -> None:
    """Run a press or submit; an unexpected error is logged once and answered with one localized sentence
    (discord.py would only log it, and the member would see "This interaction failed")."""
    try:
        await handling
    except Exception:
        log.exception("handling %s (interaction %s) failed", _custom_id_of(interaction), interaction.id)
        locale = interaction_locale(interaction)
        await send_ephemeral(interaction, t("error.command_failed", locale, reference=interaction.id))


class _GenerationButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"sora:__base__:(?P<generation>\d+)"):
    action = ""

    def __init__(self, generation_id: int) -> None:
        super().__init__(discord.ui.Button(custom_id=custom_id(self.action, generation_id)))
        self.generation_id = generation_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> _GenerationButton:
        return cls(int(match["generation"]))


class CancelButton(_GenerationButton, template=template(CANCEL)):
    action = CANCEL

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await guarded(interaction, intake.press_cancel(interaction.client.jobs, interaction, self.generation_id))


class RemixButton(_GenerationButton, template=template(REMIX)):
    action = REMIX

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await guarded(interaction, self._ask(interaction))

    async def _ask(self, interaction: discord.Interaction[Any]) -> None:
        if await intake.generation_of_press(interaction.client.jobs, interaction, self.generation_id) is None:
            return
        modal = RemixModal(self.generation_id, interaction_locale(interaction))
        modal.stop()  # a finished modal stays out of discord.py's store: `handle_modal_submit` answers the submit
        await interaction.response.send_modal(modal)


class RerollButton(_GenerationButton, template=template(REROLL)):
    action = REROLL

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await guarded(interaction, intake.press_reroll(interaction.client.jobs, interaction, self.generation_id))


class RemixModal(discord.ui.Modal):
    """Asks what should change. Only shown: the submit is handled by `handle_modal_submit`."""

    def __init__(self, generation_id: int, locale: str) -> None:
        super().__init__(title=t("modal.remix.title", locale)[:45], custom_id=custom_id(REMIX_MODAL, generation_id))
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


async def handle_modal_submit(interaction: discord.Interaction[Any]) -> bool:
    """Answer a remix modal submit; False when the interaction is not one (someone else handles it)."""
    if interaction.type is not discord.InteractionType.modal_submit or interaction.data is None:
        return False
    parsed = parse_custom_id(str(interaction.data.get("custom_id", "")))
    if parsed is None or parsed[0] != REMIX_MODAL:
        return False
    values = submitted_values(interaction.data.get("components"))
    change = values.get(REMIX_INPUT_ID, next(iter(values.values()), ""))
    await guarded(interaction, intake.submit_remix_modal(interaction.client.jobs, interaction, parsed[1], change))
    return True


async def answer_stale(interaction: discord.Interaction[Any]) -> bool:
    """A press or submit no handler of this version knows (an older version's custom_id on an old message):
    discord.py drops it silently, so answer it here. True when it was one."""
    if interaction.type not in (discord.InteractionType.component, discord.InteractionType.modal_submit):
        return False
    parsed = parse_custom_id(_custom_id_of(interaction))
    if parsed is not None and (parsed[0] in KNOWN_PRESSES or parsed[0] == REMIX_MODAL):
        return False
    await send_ephemeral(interaction, t("error.stale_button", interaction_locale(interaction)))
    return True


def _custom_id_of(interaction: discord.Interaction[Any]) -> str:
    data = interaction.data or {}
    return str(data.get("custom_id", ""))


DYNAMIC_ITEMS = (CancelButton, RemixButton, RerollButton)

__all__ = [
    "DYNAMIC_ITEMS",
    "CancelButton",
    "RemixButton",
    "RemixModal",
    "RerollButton",
    "answer_stale",
    "guarded",
    "handle_modal_submit",
]
