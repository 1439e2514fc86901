"""Everything a job says in Discord with the bot token: channels, result posts, threads, final states, notices
for jobs picked up after a restart or a takeover. No decisions about the job live here."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import discord

from bot.clock import Clock
from bot.delivery import PostedResult, open_thread, post_result
from bot.i18n import resolve_locale, t
from bot.render import JobView, Phase, ResultInfo, literal, progress_payload, thread_name
from bot.streamer import ChannelMessageTarget, EditScheduler, MessagePayload
from bot.upstream.types import DownloadedVideo
from storage import Generation

log = logging.getLogger(__name__)

ARCHIVED_THREAD = 50083
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


class DiscordSide:
    def __init__(self, client: discord.Client, scheduler: EditScheduler, clock: Clock) -> None:
        self.client = client
        self.scheduler = scheduler
        self.clock = clock

    async def channel(self, channel_id: int) -> discord.abc.Messageable | None:
        channel = self.client.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.client.fetch_channel(channel_id)
            except discord.HTTPException:
                return None
        return channel if isinstance(channel, discord.abc.Messageable) else None

    def upload_limit(self, guild_id: int) -> int:
        guild = self.client.get_guild(guild_id)
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT

    async def post_result(
        self,
        channel: discord.abc.Messageable,
        video: DownloadedVideo,
        info: ResultInfo,
        locale: str,
        *,
        guild_id: int,
        channel_id: int,
        parent_channel_id: int | None,
        nonce: str | None,
    ) -> PostedResult:
        upload_limit = self.upload_limit(guild_id)
        try:
            return await post_result(
                channel,
                video,
                info,
                locale,
                upload_limit=upload_limit,
                scheduler=self.scheduler,
                channel_id=channel_id,
                nonce=nonce,
            )
        except discord.HTTPException as exc:
            if exc.code != ARCHIVED_THREAD or parent_channel_id is None:  # archived thread → post in its parent
                raise
            parent = await self.channel(parent_channel_id)
            if parent is None:
                raise
            return await post_result(
                parent,
                video,
                info,
                locale,
                upload_limit=upload_limit,
                scheduler=self.scheduler,
                channel_id=parent_channel_id,
                nonce=f"{nonce}P" if nonce else None,
            )

    async def open_thread(self, message: discord.Message, prompt: str, locale: str) -> discord.Thread | None:
        """A thread for the remix conversation on a result in a text channel (none inside a thread)."""
        if isinstance(message.channel, discord.Thread):
            return None
        await self.scheduler.reserve((f"threads:{message.channel.id}",))
        return await open_thread(message, thread_name(prompt, locale))

    async def post_final(self, channel_id: int, payload: MessagePayload) -> None:
        """The final state of a job whose progress message is gone: as a new message."""
        channel = await self.channel(channel_id)
        if channel is None:
            return
        with contextlib.suppress(discord.HTTPException):
            await self.scheduler.reserve((f"channel:{channel_id}",))
            await channel.send(content=payload.content, embeds=payload.embeds)

    async def move_to_channel_message(
        self, channel_id: int, payload: MessagePayload
    ) -> discord.Message | None:
        """The interaction token is about to die: continue in an ordinary message sent with the bot token."""
        channel = await self.channel(channel_id)
        if channel is None:
            return None
        await self.scheduler.reserve((f"channel:{channel_id}",))
        return await channel.send(content=payload.content, embeds=payload.embeds, view=payload.view)  # type: ignore[arg-type]

    async def tell_not_resumed(self, generation: Generation, model_label: str, sentence_key: str) -> None:
        """A job picked up after a restart that can't go on: show it on its progress message (when the bot token
        may edit it) and tell the member in the channel, pinging them (under the old progress message)."""
        channel = await self.channel(generation.channel_id)
        if channel is None:
            return
        locale = resolve_locale(generation.locale)
        sentence = t(sentence_key, locale)
        if generation.progress_message_id is not None:
            view = JobView(
                generation_id=generation.id,
                prompt=generation.prompt,
                model_label=model_label,
                seconds=generation.seconds or 0,
                size=generation.size or "?",
                requester_id=generation.user_id,
                phase=Phase.FAILED,
                elapsed=max(0.0, self.clock.time() - generation.created_at),
            )
            payload = progress_payload(view, locale)
            payload.embeds[0].description = f"**{sentence}**\n{t('failed.refunded', locale)}"
            await self.edit_old_progress_message(channel, generation.progress_message_id, payload)
        prompt = literal(generation.prompt, 200, single_line=True)
        text = f"<@{generation.user_id}> **{prompt}** — {sentence} {t('failed.refunded', locale)}"
        try:
            await self.scheduler.reserve((f"channel:{generation.channel_id}",))
            await channel.send(
                text,
                reference=reference_to(channel, generation.progress_message_id),  # type: ignore[arg-type]
                allowed_mentions=discord.AllowedMentions(users=[discord.Object(generation.user_id)]),
            )
        except discord.HTTPException as exc:
            log.warning("could not tell the member about job %s after the restart: %s", generation.id, exc)

    async def edit_old_progress_message(
        self, channel: Any, message_id: int, payload: MessagePayload
    ) -> discord.Message | None:
        """Edit a progress message of an earlier attempt with the bot token. None when that isn't possible: it was
        deleted, or it is an interaction response (only its interaction's token, long gone, may edit it)."""
        await self.scheduler.reserve((f"channel:{channel.id}",))
        try:
            return await channel.get_partial_message(message_id).edit(  # type: ignore[no-any-return]
                content=payload.content, embeds=payload.embeds, view=payload.view
            )
        except discord.HTTPException as exc:
            log.debug("progress message %s can't be edited by this attempt (%s)", message_id, exc)
            return None

    async def resumed_progress_message(
        self, generation: Generation, payload: MessagePayload
    ) -> tuple[ChannelMessageTarget, bool] | None:
        """The progress message of a job picked up again: the old one edited in place when the bot token may (a
        reply's or a moved one), else a new one replying to it. Returns the target and whether it is new."""
        channel = await self.channel(generation.channel_id)
        if channel is None:
            return None
        if generation.progress_message_id is not None:
            message = await self.edit_old_progress_message(channel, generation.progress_message_id, payload)
            if message is not None:
                return ChannelMessageTarget(message), False
        await self.scheduler.reserve((f"channel:{generation.channel_id}",))
        message = await channel.send(
            content=payload.content,
            embeds=payload.embeds,
            view=payload.view,  # type: ignore[arg-type]
            reference=reference_to(channel, generation.progress_message_id),  # type: ignore[arg-type]
            mention_author=False,
        )
        return ChannelMessageTarget(message), True


def reference_to(channel: Any, message_id: int | None) -> discord.MessageReference | None:
    if message_id is None:
        return None
    return discord.MessageReference(message_id=message_id, channel_id=channel.id, fail_if_not_exists=False)


__all__ = ["DiscordSide", "reference_to"]
