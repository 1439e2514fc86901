"""`/sora`: make a video from a prompt (and optionally a reference image)."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import SoraBot
from bot.config import ModelSpec
from bot.i18n import cmd
from bot.intake import start_from_interaction
from bot.validation import choose_parameters

log = logging.getLogger(__name__)

MAX_CHOICES = 25


class Generate(commands.Cog):
    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot

    @app_commands.command(name="sora", description=cmd("Generate a video from a prompt", "cmd.sora.description"))
    @app_commands.guild_only()
    @app_commands.describe(
        prompt=cmd("What the video should show", "cmd.sora.prompt"),
        model=cmd("Which video model to use", "cmd.sora.model"),
        seconds=cmd("Length of the video in seconds", "cmd.sora.seconds"),
        size=cmd("Size (WIDTHxHEIGHT) or orientation", "cmd.sora.size"),
        image=cmd("A reference image to animate", "cmd.sora.image"),
    )
    async def sora(
        self,
        interaction: discord.Interaction[SoraBot],
        prompt: app_commands.Range[str, 1, 6000],
        model: str | None = None,
        seconds: app_commands.Range[int, 1, 600] | None = None,
        size: str | None = None,
        image: discord.Attachment | None = None,
    ) -> None:
        settings = self.bot.settings
        await start_from_interaction(
            self.bot.jobs,
            interaction,
            prompt,
            lambda: choose_parameters(settings, model, seconds, size),
            attachments=[image] if image is not None else [],
        )

    @sora.autocomplete("model")
    async def model_choices(
        self, interaction: discord.Interaction[SoraBot], current: str
    ) -> list[app_commands.Choice[str]]:
        needle = current.lower()
        choices = []
        for spec in self.bot.settings.models.values():
            label = spec.label or spec.name
            if needle in spec.name.lower() or needle in label.lower():
                choices.append(app_commands.Choice(name=f"{label} ({spec.name})"[:100], value=spec.name))
        return choices[:MAX_CHOICES]

    @sora.autocomplete("seconds")
    async def seconds_choices(
        self, interaction: discord.Interaction[SoraBot], current: int | str | None
    ) -> list[app_commands.Choice[int]]:
        spec = self._chosen_model(interaction)
        return [app_commands.Choice(name=f"{s} s", value=s) for s in spec.seconds][:MAX_CHOICES]

    @sora.autocomplete("size")
    async def size_choices(
        self, interaction: discord.Interaction[SoraBot], current: str
    ) -> list[app_commands.Choice[str]]:
        spec = self._chosen_model(interaction)
        values = [*spec.orientations(), *spec.sizes]
        return [app_commands.Choice(name=value, value=value) for value in values if current.lower() in value][
            :MAX_CHOICES
        ]

    def _chosen_model(self, interaction: discord.Interaction[SoraBot]) -> ModelSpec:
        name = getattr(interaction.namespace, "model", None)
        return self.bot.settings.models.get(name or "") or self.bot.settings.model(None)


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(Generate(bot))
