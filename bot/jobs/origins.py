"""Where a request came from, and so how to answer it."""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import discord

from bot.streamer import ChannelMessageTarget, EditScheduler, EditTarget, InteractionTarget, MessagePayload


class Origin(Protocol):
    async def refuse(self, text: str) -> None:
        """Tell the member why nothing happened (privately where Discord allows)."""

    async def first_target(self, payload: MessagePayload, scheduler: EditScheduler) -> EditTarget:
        """Show the first progress state and return what the streamer edits from then on."""


class InteractionOrigin:
    """A slash command, button or modal that was already deferred publicly."""

    def __init__(self, interaction: discord.Interaction[Any], created_at: float) -> None:
        self.interaction = interaction
        self.created_at = created_at

    async def refuse(self, text: str) -> None:
        with contextlib.suppress(discord.HTTPException):
            await self.interaction.delete_original_response()
        with contextlib.suppress(discord.HTTPException):
            await self.interaction.followup.send(text, ephemeral=True)

    async def first_target(self, payload: MessagePayload, scheduler: EditScheduler) -> EditTarget:
        target = InteractionTarget(self.interaction, self.created_at)
        await scheduler.reserve(target.budget_keys)
        await target.edit(payload)
        return target


class ReplyOrigin:
    """A member's reply to one of the bot's videos: answered with a reply of the bot's own."""

    def __init__(self, message: discord.Message) -> None:
        self.message = message

    async def refuse(self, text: str) -> None:
        with contextlib.suppress(discord.HTTPException):
            await self.message.reply(text, mention_author=False)

    async def first_target(self, payload: MessagePayload, scheduler: EditScheduler) -> EditTarget:
        await scheduler.reserve((f"channel:{self.message.channel.id}",))
        sent = await self.message.reply(
            content=payload.content,
            embeds=payload.embeds,
            view=payload.view,  # type: ignore[arg-type]
            mention_author=False,
        )
        return ChannelMessageTarget(sent)





class ThreadOrigin:
    """A remix of a video that has a conversation thread, asked from outside it: progress and result go into the
    thread, and the member is told where (privately for an interaction, in a short reply for a message)."""

    def __init__(
        self, thread: discord.Thread, *, pointer: str, interaction: discord.Interaction[Any] | None = None,
        message: discord.Message | None = None,
    ) -> None:
        self.thread = thread
        self.pointer = pointer
        self.interaction = interaction
        self.message = message

    async def refuse(self, text: str) -> None:
        with contextlib.suppress(discord.HTTPException):
            if self.interaction is not None:
                await self.interaction.edit_original_response(content=text)
            elif self.message is not None:
                await self.message.reply(text, mention_author=False)

    async def first_target(self, payload: MessagePayload, scheduler: EditScheduler) -> EditTarget:
        await scheduler.reserve((f"channel:{self.thread.id}",))
        sent = await self.thread.send(
            content=payload.content, embeds=payload.embeds, view=payload.view  # type: ignore[arg-type]
        )
        with contextlib.suppress(discord.HTTPException):
            if self.interaction is not None:
                await self.interaction.edit_original_response(content=self.pointer)
            elif self.message is not None:
                await scheduler.reserve((f"channel:{self.message.channel.id}",))
                await self.message.reply(self.pointer, mention_author=False)
        return ChannelMessageTarget(sent)
__all__ = ["InteractionOrigin", "Origin", "ReplyOrigin", "ThreadOrigin"]
