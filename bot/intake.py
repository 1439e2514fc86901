"""Request intake: from a Discord input (slash command, reply, remix modal, a button press) to a validated
`JobSpec` handed to the jobs, or a short answer saying why not.

Cheap checks run before the interaction is acknowledged so mistakes get an instant private answer; anything
that needs I/O (reading an attached image, the database) runs after the deferral, within Discord's 3 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import discord

from bot.i18n import interaction_locale, resolve_locale, t
from bot.jobs import InteractionOrigin, JobManager, JobSpec, Origin, ReplyOrigin, ThreadOrigin
from bot.permissions import bot_missing_permissions, is_bot_owner, member_is_admin
from bot.quota_text import denial_sentence
from bot.replies import send_ephemeral
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
from storage import CancelOutcome, Generation, GenerationStatus, QuotaDenied

log = logging.getLogger(__name__)

SETTLE_WAIT = 2.0  # seconds a press or reply waits for a video that is being posted right now (Discord's 3 s rule)
EARLY_CHECK_TIMEOUT = 1.0  # seconds the ban / channel check may take before the interaction is acknowledged

CANCEL_ANSWERS = {
    CancelOutcome.ALREADY_REQUESTED: "error.cancel_pending",
    CancelOutcome.DELIVERING: "error.cancel_too_late",
    CancelOutcome.FINISHED: "error.already_finished",
}


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


def may_manage(manager: JobManager, interaction: discord.Interaction[Any], owner_id: int) -> bool:
    """The requester, a server admin, or the bot's owner."""
    owner_of_app = getattr(interaction.client, "owner_id", None)
    if interaction.user.id == owner_id or is_bot_owner(
        interaction.user.id, manager.settings.bot_owner_ids, owner_of_app
    ):
        return True
    return member_is_admin(interaction.user)


def member_spec(
    guild_id: int,
    channel: Any,
    member: discord.abc.User,
    locale: str,
    prompt: str,
    params: VideoParameters,
    *,
    parent: Generation | None = None,
) -> JobSpec:
    """The one way a request becomes a `JobSpec`: who asks, where the job lives (a thread knows its channel)."""
    return JobSpec(
        guild_id=guild_id,
        channel_id=channel.id,
        parent_channel_id=channel.parent_id if isinstance(channel, discord.Thread) else None,
        user_id=member.id,
        locale=locale,
        model=params.model,
        prompt=prompt,
        seconds=params.seconds,
        size=params.size,
        orientation=params.orientation,
        parent=parent,
        is_admin=member_is_admin(member),
        role_ids=member_roles(member),
    )


async def start_from_interaction(
    manager: JobManager,
    interaction: discord.Interaction[Any],
    prompt: str | None,
    params_factory: Callable[[], VideoParameters],
    *,
    attachments: Sequence[discord.Attachment] = (),
    parent: Generation | None = None,
    remix_of: Generation | None = None,
) -> None:
    """The shared path of /sora, the remix modal and re-roll: check, defer, read images, submit. A remix
    (`remix_of`) of a video with a thread continues in that thread."""
    created_at = manager.clock.time()
    locale = interaction_locale(interaction)
    try:
        if interaction.guild_id is None:
            raise InvalidRequest("error.guild_only")
        cleaned = clean_prompt(prompt, manager.settings.sora_max_prompt_chars)
        params = params_factory()
        check_attachments(manager, attachments, params)
        missing = bot_missing_permissions(interaction)
        if missing:
            raise InvalidRequest("error.no_permission", permissions=", ".join(missing))
        if manager.busy:
            raise InvalidRequest("error.busy")
    except InvalidRequest as problem:
        await send_ephemeral(interaction, t(problem.key, locale, **problem.values))
        return
    # A banned member or a closed channel is told before anything is deferred publicly or downloaded.
    channel = interaction.channel
    denied = await early_access_check(
        manager,
        interaction.guild_id,
        interaction.user.id,
        interaction.channel_id or 0,
        channel.parent_id if isinstance(channel, discord.Thread) else None,
    )
    if denied is not None:
        await send_ephemeral(interaction, denial_sentence(denied, locale, manager.clock))
        return
    thread = await remix_thread(manager, remix_of, interaction.channel_id) if remix_of is not None else None
    origin: Origin
    if thread is not None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        pointer = t("progress.in_thread", locale, link=thread.jump_url)
        origin = ThreadOrigin(thread, pointer=pointer, interaction=interaction)
    else:
        await interaction.response.defer(thinking=True)
        origin = InteractionOrigin(interaction, created_at)
    try:
        images = await read_images(attachments)
    except InvalidRequest as problem:
        await origin.refuse(t(problem.key, locale, **problem.values))
        return
    assert interaction.guild_id is not None and interaction.channel is not None
    home = thread or interaction.channel
    spec = member_spec(interaction.guild_id, home, interaction.user, locale, cleaned, params, parent=parent)
    if images:
        spec = replace(spec, images=images, image_urls=tuple(a.url for a in attachments))
    await manager.submit(spec, origin)


async def remix_thread(manager: JobManager, video: Generation, here: int | None) -> discord.Thread | None:
    """The conversation thread of the video being remixed, when the remix is asked from outside it."""
    if video.thread_id is None or video.thread_id == here:
        return None
    client = manager.discord.client
    thread = client.get_channel(video.thread_id)
    if thread is None:
        try:
            thread = await client.fetch_channel(video.thread_id)
        except discord.HTTPException:
            return None
    if not isinstance(thread, discord.Thread) or thread.archived or thread.locked:
        return None
    return thread


async def early_access_check(
    manager: JobManager, guild_id: int, user_id: int, channel_id: int, parent_channel_id: int | None
) -> QuotaDenied | None:
    """Ban and channel rules, read before the interaction is acknowledged. Bounded: on a database busy enough to
    threaten Discord's 3 s, the request goes on (the reservation checks the same rules again, atomically)."""
    try:
        return await asyncio.wait_for(
            manager.db.check_access(guild_id, user_id, channel_id, parent_channel_id), EARLY_CHECK_TIMEOUT
        )
    except TimeoutError:
        log.warning("the early access check took over %.1f s; deferring first", EARLY_CHECK_TIMEOUT)
        return None


async def settled_generation(manager: JobManager, generation_id: int) -> Generation | None:
    """The generation as stored; when its job is just posting the video (the result message, and so its buttons
    and replies to it, exist a moment before the database says so), after that job has finished."""
    generation = await manager.db.get_generation(generation_id)
    if generation is None or generation.finished:
        return generation
    posting = manager.job_being_posted(generation_id)
    if posting is not None:
        await asyncio.wait([posting], timeout=SETTLE_WAIT)
        generation = await manager.db.get_generation(generation_id)
    return generation


async def generation_of_press(
    manager: JobManager, interaction: discord.Interaction[Any], generation_id: int
) -> Generation | None:
    """The generation a button or modal names, if it belongs to where the press came from: its guild, and its
    channel (or the video's thread, or that channel's threads). A forged custom_id from elsewhere is refused
    before anything is read or spent."""
    generation = await manager.db.get_generation(generation_id)
    if generation is None or not pressed_where_it_lives(generation, interaction):
        await send_ephemeral(interaction, t("error.generation_gone", interaction_locale(interaction)))
        return None
    return generation


def pressed_where_it_lives(generation: Generation, interaction: discord.Interaction[Any]) -> bool:
    if generation.guild_id != interaction.guild_id:
        return False
    channel = interaction.channel
    here = {interaction.channel_id}
    if isinstance(channel, discord.Thread):
        here.add(channel.parent_id)
    homes = {generation.channel_id, generation.parent_channel_id, generation.thread_id} - {None}
    return bool(here & homes)


async def finished_generation(
    manager: JobManager, interaction: discord.Interaction[Any], generation_id: int
) -> Generation | None:
    locale = interaction_locale(interaction)
    if await generation_of_press(manager, interaction, generation_id) is None:
        return None
    generation = await settled_generation(manager, generation_id)
    if generation is None:
        await send_ephemeral(interaction, t("error.generation_gone", locale))
        return None
    if generation.status != GenerationStatus.SUCCEEDED:
        await send_ephemeral(interaction, t("error.reply_not_finished", locale))
        return None
    return generation


async def press_cancel(manager: JobManager, interaction: discord.Interaction[Any], generation_id: int) -> None:
    """Cancel is a request: the database decides it against the start of the delivery, so the answer is true."""
    locale = interaction_locale(interaction)
    generation = await generation_of_press(manager, interaction, generation_id)
    if generation is None:
        return
    if not may_manage(manager, interaction, generation.user_id):
        await send_ephemeral(interaction, t("error.not_yours", locale, owner=f"<@{generation.user_id}>"))
        return
    if generation.finished:
        await send_ephemeral(interaction, t("error.already_finished", locale))
        return
    await interaction.response.defer()
    outcome = await manager.request_cancel(generation_id, interaction.user.id)
    key = CANCEL_ANSWERS.get(outcome)
    if key is not None:
        await send_ephemeral(interaction, t(key, locale))
    # REQUESTED: the job's runner stops, refunds and shows it on the progress message.


async def submit_remix_modal(
    manager: JobManager, interaction: discord.Interaction[Any], generation_id: int, change: str
) -> None:
    generation = await finished_generation(manager, interaction, generation_id)
    if generation is None:
        return
    await start_from_interaction(
        manager,
        interaction,
        change,
        lambda: parameters_of(manager, generation),
        parent=generation,
        remix_of=generation,
    )


async def press_reroll(manager: JobManager, interaction: discord.Interaction[Any], generation_id: int) -> None:
    """Re-roll: the same prompt and parameters again, as a sibling of the original in the remix tree."""
    generation = await finished_generation(manager, interaction, generation_id)
    if generation is None:
        return
    if not may_manage(manager, interaction, generation.user_id):
        locale = interaction_locale(interaction)
        await send_ephemeral(interaction, t("error.not_yours", locale, owner=f"<@{generation.user_id}>"))
        return
    parent = await manager.db.get_generation(generation.parent_id) if generation.parent_id else None
    await start_from_interaction(
        manager, interaction, generation.prompt, lambda: parameters_of(manager, generation), parent=parent
    )


async def remix_from_reply(
    manager: JobManager, message: discord.Message, generation: Generation, *, bot_user_id: int | None,
    message_content: bool,
) -> None:
    """A member replied to one of our videos: remix it with the reply's text (and image, if any)."""
    assert message.guild is not None
    own = message.author.id == generation.user_id
    locale = resolve_locale(generation.locale if own else None, message.guild.preferred_locale)
    origin: Origin = ReplyOrigin(message)
    text = message.content
    if bot_user_id is not None:
        text = text.replace(f"<@{bot_user_id}>", "").replace(f"<@!{bot_user_id}>", "")
    if generation.status != GenerationStatus.SUCCEEDED:
        await origin.refuse(t("error.reply_not_finished", locale))
        return
    if not text.strip() and not message.attachments and not message_content:
        # Without the message-content intent Discord blanks replies that don't mention the bot.
        await origin.refuse(t("error.reply_needs_ping", locale))
        return
    channel = message.channel
    try:
        prompt = clean_prompt(text, manager.settings.sora_max_prompt_chars)
        params = parameters_of(manager, generation)
        attachments = list(message.attachments)
        check_attachments(manager, attachments, params)
        if manager.busy:
            raise InvalidRequest("error.busy")
        denied = await early_access_check(
            manager,
            message.guild.id,
            message.author.id,
            channel.id,
            channel.parent_id if isinstance(channel, discord.Thread) else None,
        )
        if denied is not None:
            await origin.refuse(denial_sentence(denied, locale, manager.clock))
            return
        images = await read_images(attachments)
    except InvalidRequest as problem:
        await origin.refuse(t(problem.key, locale, **problem.values))
        return
    thread = await remix_thread(manager, generation, channel.id)
    if thread is not None:
        pointer = t("progress.in_thread", locale, link=thread.jump_url)
        origin = ThreadOrigin(thread, pointer=pointer, message=message)
    spec = member_spec(message.guild.id, thread or channel, message.author, locale, prompt, params, parent=generation)
    if images:
        spec = replace(spec, images=images, image_urls=tuple(a.url for a in attachments))
    await manager.submit(spec, origin)


__all__ = [
    "may_manage",
    "press_cancel",
    "press_reroll",
    "remix_from_reply",
    "settled_generation",
    "start_from_interaction",
    "submit_remix_modal",
]
