"""From a Discord input (slash command, reply, remix modal, re-roll button) to a validated `JobSpec`.

Cheap checks run before the interaction is acknowledged so mistakes get an instant private answer; anything
that needs I/O (reading an attached image, the database) runs after the deferral, within Discord's 3 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot.client import send_ephemeral
from bot.i18n import interaction_locale, resolve_locale, t
from bot.jobs import InteractionOrigin, JobManager, JobSpec, ReplyOrigin, bot_missing_permissions, member_is_admin
from bot.render import Phase
from bot.upstream.types import ReferenceImage
from bot.validation import (
    AttachmentInfo,
    InvalidRequest,
    VideoParameters,
    check_attachment_metadata,
    choose_parameters,
    clean_prompt,
    sniff_image,
)
from storage import Generation, GenerationStatus

if TYPE_CHECKING:
    from bot.client import SoraBot

log = logging.getLogger(__name__)

SETTLE_WAIT = 2.0  # seconds a press or reply waits for a video that is being posted right now (Discord's 3 s rule)


def parameters_of(manager: JobManager, generation: Generation) -> VideoParameters:
    """A stored generation's model and shape, as the models table sees them today."""
    return choose_parameters(manager.settings, generation.model, generation.seconds, generation.size)


def check_attachments(
    manager: JobManager, attachments: Sequence[discord.Attachment], params: VideoParameters
) -> None:
    limit = manager.settings.sora_max_image_mb * 1024 * 1024
    for attachment in attachments:
        info = AttachmentInfo(attachment.filename, attachment.size, attachment.content_type, attachment.url)
        check_attachment_metadata(info, params.model, count=len(attachments), max_bytes=limit)


async def read_images(attachments: Sequence[discord.Attachment]) -> tuple[ReferenceImage, ...]:
    """Download the attachments and make sure each really is an image (not a renamed or corrupt file)."""
    images = []
    for attachment in attachments:
        try:
            data = await attachment.read()
        except discord.HTTPException:
            raise InvalidRequest("error.image_unreadable", filename=attachment.filename) from None
        content_type = sniff_image(data)
        if content_type is None:
            raise InvalidRequest("error.not_an_image", filename=attachment.filename)
        images.append(ReferenceImage(data=data, filename=attachment.filename, content_type=content_type))
    return tuple(images)


def member_roles(member: Any) -> tuple[int, ...]:
    return tuple(role.id for role in getattr(member, "roles", ()) or ())


def interaction_spec(
    manager: JobManager,
    interaction: discord.Interaction[SoraBot],
    prompt: str,
    params: VideoParameters,
    *,
    parent: Generation | None = None,
) -> JobSpec:
    channel = interaction.channel
    parent_channel_id = channel.parent_id if isinstance(channel, discord.Thread) else None
    assert interaction.guild_id is not None and interaction.channel_id is not None
    return JobSpec(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        parent_channel_id=parent_channel_id,
        user_id=interaction.user.id,
        locale=interaction_locale(interaction),
        model=params.model,
        prompt=prompt,
        seconds=params.seconds,
        size=params.size,
        orientation=params.orientation,
        parent=parent,
        is_admin=member_is_admin(interaction.user),
        role_ids=member_roles(interaction.user),
    )


async def start_from_interaction(
    manager: JobManager,
    interaction: discord.Interaction[SoraBot],
    prompt: str | None,
    params_factory: Any,
    *,
    attachments: Sequence[discord.Attachment] = (),
    parent: Generation | None = None,
) -> None:
    """The shared path of /sora, the remix modal and re-roll: check, defer, read images, submit."""
    created_at = manager.clock.time()
    locale = interaction_locale(interaction)
    try:
        if interaction.guild_id is None:
            raise InvalidRequest("error.guild_only")
        cleaned = clean_prompt(prompt, manager.settings.sora_max_prompt_chars)
        params: VideoParameters = params_factory()
        check_attachments(manager, attachments, params)
        missing = bot_missing_permissions(interaction)
        if missing:
            raise InvalidRequest("error.no_permission", permissions=", ".join(missing))
    except InvalidRequest as problem:
        await send_ephemeral(interaction, t(problem.key, locale, **problem.values))
        return
    await interaction.response.defer(thinking=True)
    origin = InteractionOrigin(interaction, created_at)
    try:
        images = await read_images(attachments)
    except InvalidRequest as problem:
        await origin.refuse(t(problem.key, locale, **problem.values))
        return
    spec = interaction_spec(manager, interaction, cleaned, params, parent=parent)
    if images:
        spec = _with_images(spec, images, attachments)
    await manager.submit(spec, origin)


def _with_images(spec: JobSpec, images: tuple[ReferenceImage, ...], attachments: Sequence[Any]) -> JobSpec:
    from dataclasses import replace

    return replace(spec, images=images, image_urls=tuple(a.url for a in attachments))


async def settled_generation(manager: JobManager, generation_id: int) -> Generation | None:
    """The generation as stored; when its job is just posting the video (the result message, and so its buttons
    and replies to it, exist a moment before the database says so), after that job has finished."""
    generation = await manager.db.get_generation(generation_id)
    job = manager.jobs.get(generation_id)
    if generation is None or generation.finished or job is None or job.task is None:
        return generation
    if job.phase in (Phase.FINISHING, Phase.DONE):
        await asyncio.wait([job.task], timeout=SETTLE_WAIT)
        generation = await manager.db.get_generation(generation_id)
    return generation


async def finished_generation(
    manager: JobManager, interaction: discord.Interaction[SoraBot], generation_id: int
) -> Generation | None:
    locale = interaction_locale(interaction)
    generation = await settled_generation(manager, generation_id)
    if generation is None:
        await send_ephemeral(interaction, t("error.generation_gone", locale))
        return None
    if generation.status != GenerationStatus.SUCCEEDED:
        await send_ephemeral(interaction, t("error.reply_not_finished", locale))
        return None
    return generation


async def remix_from_interaction(
    manager: JobManager, interaction: discord.Interaction[SoraBot], generation_id: int, change: str
) -> None:
    generation = await finished_generation(manager, interaction, generation_id)
    if generation is None:
        return
    await start_from_interaction(
        manager, interaction, change, lambda: parameters_of(manager, generation), parent=generation
    )


async def reroll_spec(manager: JobManager, interaction: discord.Interaction[SoraBot], generation_id: int) -> None:
    """Re-roll: the same prompt and parameters again, as a sibling of the original in the remix tree."""
    generation = await finished_generation(manager, interaction, generation_id)
    if generation is None:
        return
    if not manager.may_manage(interaction, generation.user_id):
        locale = interaction_locale(interaction)
        await send_ephemeral(interaction, t("error.not_yours", locale, owner=f"<@{generation.user_id}>"))
        return
    parent = await manager.db.get_generation(generation.parent_id) if generation.parent_id else None
    await start_from_interaction(
        manager, interaction, generation.prompt, lambda: parameters_of(manager, generation), parent=parent
    )


async def remix_from_reply(manager: JobManager, message: discord.Message, generation: Generation) -> None:
    """A member replied to one of our videos: remix it with the reply's text (and image, if any)."""
    assert message.guild is not None
    own = message.author.id == generation.user_id
    locale = resolve_locale(generation.locale if own else None, message.guild.preferred_locale)
    origin = ReplyOrigin(message)
    bot_user = manager.bot.user
    text = message.content
    if bot_user is not None:
        text = text.replace(f"<@{bot_user.id}>", "").replace(f"<@!{bot_user.id}>", "")
    if generation.status != GenerationStatus.SUCCEEDED:
        await origin.refuse(t("error.reply_not_finished", locale))
        return
    if not text.strip() and not message.attachments and not manager.bot.intents.message_content:
        # Without the message-content intent Discord blanks replies that don't mention the bot.
        await origin.refuse(t("error.reply_needs_ping", locale))
        return
    channel = message.channel
    try:
        prompt = clean_prompt(text, manager.settings.sora_max_prompt_chars)
        params = parameters_of(manager, generation)
        attachments = list(message.attachments)
        check_attachments(manager, attachments, params)
        images = await read_images(attachments)
    except InvalidRequest as problem:
        await origin.refuse(t(problem.key, locale, **problem.values))
        return
    spec = JobSpec(
        guild_id=message.guild.id,
        channel_id=channel.id,
        parent_channel_id=channel.parent_id if isinstance(channel, discord.Thread) else None,
        user_id=message.author.id,
        locale=locale,
        model=params.model,
        prompt=prompt,
        seconds=params.seconds,
        size=params.size,
        orientation=params.orientation,
        images=images,
        image_urls=tuple(a.url for a in attachments),
        parent=generation,
        is_admin=member_is_admin(message.author),
        role_ids=member_roles(message.author),
    )
    await manager.submit(spec, origin)


__all__ = [
    "remix_from_interaction",
    "remix_from_reply",
    "reroll_spec",
    "settled_generation",
    "start_from_interaction",
]
