"""Reply-to-remix: a member replies to one of the bot's videos with what should change.

Also answers the remix modal (`bot.buttons.handle_modal_submit`), which is persistent like the buttons.
"""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.buttons import answer_stale, handle_modal_submit
from bot.client import SoraBot
from bot.components import REMIX, parse_custom_id
from bot.i18n import resolve_locale, t
from bot.intake import remix_from_reply, settled_generation
from storage import Generation, GenerationStatus

log = logging.getLogger(__name__)




class Remix(commands.Cog):
    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[SoraBot]) -> None:
        if not await handle_modal_submit(interaction):
            await answer_stale(interaction)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or message.type is not discord.MessageType.reply:
            return
        reference = message.reference
        if reference is None or reference.message_id is None:
            return
        replied_to = reference.message_id
        generation = await self.bot.db.generation_by_result_message(replied_to)
        if generation is None:
            generation = await self._being_posted(reference.resolved)
        if generation is not None:
            if isinstance(reference.resolved, discord.DeletedReferencedMessage):
                # The video's message was deleted (by a moderator, say) while the member was replying.
                await self._answer(message, "error.generation_gone", generation)
                return
            await remix_from_reply(
                self.bot.jobs,
                message,
                generation,
                bot_user_id=self.bot.user.id if self.bot.user else None,
                message_content=self.bot.intents.message_content,
            )
            return
        # Not one of our results. Answer briefly only when the member clearly meant the bot.
        resolved = reference.resolved
        if not isinstance(resolved, discord.Message) or self.bot.user is None or resolved.author != self.bot.user:
            return
        progress = await self.bot.db.generation_by_progress_message(replied_to)
        if progress is None:
            key = "error.reply_not_video"
        elif not progress.status.finished:
            key = "error.reply_not_finished"
        elif progress.status is GenerationStatus.SUCCEEDED:
            key = "error.reply_to_result"  # the progress message of a finished video: point at the video itself
        else:
            key = "error.reply_failed"
        await self._answer(message, key, progress)

    async def _being_posted(self, resolved: object) -> Generation | None:
        """A result message the database doesn't know yet: its job is storing it right now. Its own Remix
        button names the generation; the reply waits for that job to finish."""
        if not isinstance(resolved, discord.Message) or self.bot.user is None or resolved.author != self.bot.user:
            return None
        for row in resolved.components:
            for component in getattr(row, "children", ()):
                parsed = parse_custom_id(getattr(component, "custom_id", None) or "")
                if parsed is not None and parsed[0] == REMIX:
                    generation = await settled_generation(self.bot.jobs, parsed[1])
                    if generation is not None and generation.result_message_id == resolved.id:
                        return generation
                    return None
        return None

    async def _answer(self, message: discord.Message, key: str, generation: Generation | None) -> None:
        """One short reply, in the replier's language as far as we know it; never pings."""
        guild_locale = message.guild.preferred_locale if message.guild is not None else None
        own = generation is not None and generation.user_id == message.author.id
        locale = resolve_locale(generation.locale if own and generation else None, guild_locale)
        try:
            await message.reply(t(key, locale), mention_author=False)
        except discord.HTTPException as exc:
            log.debug("could not answer a reply in %s: %s", message.channel.id, exc)


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(Remix(bot))
