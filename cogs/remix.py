"""Reply-to-remix: a member replies to one of the bot's videos with what should change."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.client import SoraBot
from bot.i18n import resolve_locale, t
from bot.requests import remix_from_reply

log = logging.getLogger(__name__)


class Remix(commands.Cog):
    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or message.reference is None:
            return
        replied_to = message.reference.message_id
        if replied_to is None or self.bot.db is None:
            return
        generation = await self.bot.db.generation_by_result_message(replied_to)
        if generation is not None:
            await remix_from_reply(self.bot.jobs, message, generation)
            return
        # Not one of our results. Answer briefly only when the member clearly meant the bot.
        resolved = message.reference.resolved
        if isinstance(resolved, discord.Message) and self.bot.user is not None and resolved.author == self.bot.user:
            locale = resolve_locale(message.guild.preferred_locale)
            progress = await self.bot.db.generation_by_progress_message(replied_to)
            key = "error.reply_not_finished" if progress is not None else "error.reply_not_video"
            try:
                await message.reply(t(key, locale), mention_author=False)
            except discord.HTTPException as exc:
                log.debug("could not answer a reply in %s: %s", message.channel.id, exc)


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(Remix(bot))
