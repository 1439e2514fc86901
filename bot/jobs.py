"""A job: reserve quota → wait for a slot → run upstream → stream progress → deliver → charge or refund.

`JobManager` is the only place that sequences a job. Cogs validate input and hand over a `JobSpec` with an
`Origin` (a deferred interaction, or a member's reply); everything after that happens here, including resume
after a restart and the buttons on progress/result messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import discord

from bot.config import ApiFormat, ModelSpec
from bot.delivery import TempVideo, open_thread, post_result
from bot.i18n import interaction_locale, resolve_locale, t
from bot.permissions import missing_permissions
from bot.render import JobView, Phase, ResultInfo, failure_sentence, progress_payload, truncate
from bot.streamer import (
    ChannelMessageTarget,
    EditScheduler,
    EditTarget,
    InteractionTarget,
    MessagePayload,
    Priority,
    ProgressStreamer,
)
from bot.upstream import UpstreamClient, make_client
from bot.upstream.types import (
    ChatTurn,
    Event,
    Failed,
    FailureKind,
    Preview,
    Progress,
    Queued,
    ReferenceImage,
    Succeeded,
    TaskId,
    UpstreamError,
    VideoRequest,
)
from storage import Generation, LedgerState, NewGeneration, QuotaDenied, Settlement

if TYPE_CHECKING:
    from bot.client import SoraBot

log = logging.getLogger(__name__)

PROGRESS_SAVE_INTERVAL = 15.0  # seconds between progress writes to the database (shown again after a restart)
CLOSE_GRACE = 15.0  # seconds a job that is already posting its video may take to finish when the bot stops


# --- what a job is made of -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated request: what to make, for whom, where."""

    guild_id: int
    channel_id: int
    user_id: int
    locale: str
    model: ModelSpec
    prompt: str
    seconds: int
    size: str
    orientation: str
    images: tuple[ReferenceImage, ...] = ()
    image_urls: tuple[str, ...] = ()
    parent: Generation | None = None  # the video this one continues (remix); a re-roll shares its original's
    parent_channel_id: int | None = None  # when channel_id is a thread
    is_admin: bool = False
    role_ids: tuple[int, ...] = ()


class Origin(Protocol):
    """Where a request came from, and so how to answer it."""

    async def refuse(self, text: str) -> None:
        """Tell the member why nothing happened (privately where Discord allows)."""

    async def first_target(self, payload: MessagePayload, scheduler: EditScheduler) -> EditTarget:
        """Show the first progress state and return what the streamer edits from then on."""


class InteractionOrigin:
    """A slash command, button or modal that was already deferred publicly."""

    def __init__(self, interaction: discord.Interaction[SoraBot], created_at: float) -> None:
        self.interaction = interaction
        self.created_at = created_at

    async def refuse(self, text: str) -> None:
        with contextlib.suppress(discord.HTTPException):
            await self.interaction.delete_original_response()
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
            content=payload.content, embeds=payload.embeds, view=payload.view, mention_author=False  # type: ignore[arg-type]
        )
        return ChannelMessageTarget(sent)


class SlotQueue:
    """At most `slots` jobs talk to the gateway at once; the rest wait in order and know their position."""

    def __init__(self, slots: int) -> None:
        self.free = slots
        self.waiting: deque[tuple[Job, asyncio.Future[None]]] = deque()

    async def acquire(self, job: Job) -> None:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((job, future))
        self._announce()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # we were handed a slot just as we were cancelled: pass it on
            else:
                self.waiting = deque(entry for entry in self.waiting if entry[1] is not future)
                self._announce()
            raise

    def release(self) -> None:
        while self.waiting:
            _, future = self.waiting.popleft()
            if not future.done():
                future.set_result(None)
                self._announce()
                return
        self.free += 1

    def _announce(self) -> None:
        for position, (job, _) in enumerate(self.waiting, start=1):
            job.on_wait_position(position)


# --- one job -------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Job:
    manager: JobManager
    generation: Generation
    spec: JobSpec
    started: float
    phase: Phase = Phase.WAITING
    percent: float | None = None
    position: int | None = None
    task_id: str | None = None
    assistant_text: str = ""
    cancelled_by: int | None = None
    streamer: ProgressStreamer | None = None
    task: asyncio.Task[None] | None = None
    combined_prompt: bool = False
    _last_saved: float = field(default=0.0)

    @property
    def id(self) -> int:
        return self.generation.id

    def view(self, **changes: Any) -> JobView:
        view = JobView(
            generation_id=self.id,
            prompt=self.spec.prompt,
            model_label=self.spec.model.label or self.spec.model.name,
            seconds=self.spec.seconds,
            size=self.spec.size,
            requester_id=self.spec.user_id,
            phase=self.phase,
            elapsed=self.manager.clock.time() - self.started,
            percent=self.percent,
            position=self.position,
            cancelled_by=self.cancelled_by,
        )
        return replace(view, **changes) if changes else view

    def show(self, priority: Priority = Priority.PROGRESS) -> None:
        if self.streamer is not None:
            # Rendered only when the edit goes out: most updates are coalesced away.
            self.streamer.update(self.render, priority)

    def render(self) -> MessagePayload:
        return progress_payload(self.view(), self.spec.locale)

    def on_wait_position(self, position: int) -> None:
        if self.phase is Phase.WAITING and position != self.position:
            self.position = position
            self.show(Priority.STATE)


class JobManager:
    """Runs every job of this process. Reached by cogs and buttons as `bot.jobs`."""

    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot
        self.settings = bot.settings
        self.clock = bot.clock
        self.scheduler: EditScheduler = bot.scheduler
        self.slots = SlotQueue(bot.settings.sora_max_concurrent_jobs)
        self.jobs: dict[int, Job] = {}
        self.started_at = bot.clock.time()  # generations created since then belong to this process
        self._clients: dict[ApiFormat, UpstreamClient] = {}
        self._closing = False

    @property
    def db(self) -> Any:
        assert self.bot.db is not None, "the bot runs with a database"
        return self.bot.db

    def client_for(self, model: ModelSpec) -> UpstreamClient:
        api_format = self.settings.format_for(model)
        client = self._clients.get(api_format)
        if client is None:
            from bot.upstream import options_from_settings

            client = make_client(api_format, self.bot.session, options_from_settings(self.settings))
            self._clients[api_format] = client
        return client

    # --- accepting a request ---------------------------------------------------------------------------

    async def submit(self, spec: JobSpec, origin: Origin) -> Job | None:
        """Reserve quota and start the job; or tell the member why not. Returns the job when accepted."""
        cost = spec.model.cost_for(spec.seconds)
        client = self.client_for(spec.model)
        new = NewGeneration(
            guild_id=spec.guild_id,
            channel_id=spec.channel_id,
            parent_channel_id=spec.parent_channel_id,
            user_id=spec.user_id,
            locale=spec.locale,
            model=spec.model.name,
            api_format=str(client.api_format),
            seconds=spec.seconds,
            size=spec.size,
            orientation=spec.orientation,
            prompt=spec.prompt,
            reference_urls=spec.image_urls,
            cost=cost,
            parent_id=spec.parent.id if spec.parent else None,
        )
        outcome = await self.db.create_generation(new, role_ids=spec.role_ids, is_admin=spec.is_admin)
        if isinstance(outcome, QuotaDenied):
            await origin.refuse(self.denial_text(outcome, spec.locale))
            return None
        generation = await self.db.get_generation(outcome.generation_id)
        assert generation is not None
        job = Job(self, generation, spec, started=self.clock.time())
        self.jobs[job.id] = job
        try:
            target = await origin.first_target(progress_payload(job.view(), spec.locale), self.scheduler)
        except discord.HTTPException as exc:
            log.warning("job %s: could not show progress (%s); refunding", job.id, exc)
            await self.db.mark_failed(job.id, FailureKind.UPSTREAM.value, "could not post progress", charge=False)
            self.jobs.pop(job.id, None)
            return None
        await self._remember_progress_message(job, target)
        job.streamer = self._streamer(job, target)
        job.streamer.mark_edited()
        job.task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        return job

    def denial_text(self, denied: QuotaDenied, locale: str) -> str:
        from bot.quota_text import denial_sentence

        return denial_sentence(denied, locale, self.clock)

    def _streamer(self, job: Job, target: EditTarget) -> ProgressStreamer:
        async def handover() -> EditTarget | None:
            return await self._move_to_channel_message(job)

        return ProgressStreamer(self.scheduler, target, handover=handover)

    async def _remember_progress_message(self, job: Job, target: EditTarget) -> None:
        message = getattr(target, "message", None)
        if message is not None:
            await self.db.set_progress_message(job.id, message.id)

    async def _move_to_channel_message(self, job: Job) -> EditTarget | None:
        """The interaction token is about to die: continue in an ordinary message sent with the bot token."""
        channel = await self._channel(job.spec.channel_id)
        if channel is None:
            return None
        payload = progress_payload(job.view(), job.spec.locale)
        await self.scheduler.reserve((f"channel:{job.spec.channel_id}",))
        message = await channel.send(content=payload.content, embeds=payload.embeds, view=payload.view)  # type: ignore[union-attr]
        old = job.streamer.target if job.streamer else None
        if isinstance(old, InteractionTarget):
            with contextlib.suppress(discord.HTTPException):
                await old.interaction.edit_original_response(
                    content=t("progress.moved", job.spec.locale), embeds=[], view=None
                )
        await self.db.set_progress_message(
            job.id, message.id, channel_id=job.spec.channel_id, forget_interaction=True
        )
        return ChannelMessageTarget(message)

    async def _channel(self, channel_id: int) -> discord.abc.Messageable | None:
        channel = self.bot.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.bot.fetch_channel(channel_id)
            except discord.HTTPException:
                return None
        return channel if isinstance(channel, discord.abc.Messageable) else None

    # --- running -----------------------------------------------------------------------------------------

    async def _run(self, job: Job, *, resume_task_id: str | None = None) -> None:
        holding_slot = False
        try:
            job.show(Priority.STATE)
            await self.slots.acquire(job)
            holding_slot = True
            job.phase, job.position = Phase.STARTING, None
            job.show(Priority.STATE)
            await self.db.mark_running(job.id)
            client = self.client_for(job.spec.model)
            if resume_task_id is not None:
                events = client.resume(resume_task_id)
            else:
                request = await self._request_for(job, client)
                events = client.generate(request)
            final = await self._consume(job, events)
            if isinstance(final, Succeeded):
                await self._deliver(job, client, final)
            else:
                await self._fail(job, final)
        except asyncio.CancelledError:
            if self._closing:
                raise  # the bot is shutting down: leave the job as it is for resume on the next start
            await self._finish_cancelled(job)
        except Exception:
            log.exception("job %s failed unexpectedly", job.id)
            await self._fail(job, Failed(FailureKind.UPSTREAM, "internal error"), internal=True)
        finally:
            if holding_slot:
                self.slots.release()
            self.jobs.pop(job.id, None)

    async def _request_for(self, job: Job, client: UpstreamClient) -> VideoRequest:
        spec = job.spec
        request = VideoRequest(
            prompt=spec.prompt,
            model=spec.model.wire_name,
            seconds=spec.seconds,
            size=spec.size,
            orientation=spec.orientation,  # type: ignore[arg-type]
            images=spec.images,
        )
        source = spec.parent
        if source is None:
            return request
        chain = await self.db.chain(source.id, max_depth=self.settings.sora_remix_depth)
        if client.api_format == ApiFormat.CHAT and all(g.assistant_text for g in chain):
            # Seed 001: the earlier turns verbatim (the assistant text names the parent's task), then the change.
            history = tuple(ChatTurn(g.prompt, g.assistant_text or "") for g in chain)
            return replace(request, history=history)
        if client.supports_remix and source.task_id and source.api_format == client.api_format:
            return replace(request, remix_of=source.task_id)
        # No native remix (or the parent came from another format): one prompt made of the whole chain.
        job.combined_prompt = True
        combined = "\n".join([*(g.prompt for g in chain), spec.prompt])
        return replace(request, prompt=combined)

    async def _consume(self, job: Job, events: AsyncIterator[Event]) -> Succeeded | Failed:
        async for event in events:
            match event:
                case Queued(position=position):
                    job.phase, job.position = Phase.QUEUED, position
                    job.show(Priority.STATE)
                case Progress(percent=percent):
                    entering = job.phase is not Phase.RUNNING
                    job.phase, job.percent, job.position = Phase.RUNNING, percent, None
                    job.show(Priority.STATE if entering else Priority.PROGRESS)
                    await self._save_progress(job)
                case TaskId(task_id=task_id, resumable=resumable):
                    job.task_id = task_id
                    await self.db.set_task_id(job.id, task_id, resumable=resumable)
                case Preview():
                    pass
                case Succeeded() | Failed():
                    job.assistant_text = event.assistant_text
                    return event
        return Failed(FailureKind.UPSTREAM, "the gateway ended the job without a result")

    async def _save_progress(self, job: Job) -> None:
        now = self.clock.monotonic()
        if job.percent is not None and now - job._last_saved >= PROGRESS_SAVE_INTERVAL:
            job._last_saved = now
            await self.db.update_generation_progress(job.id, job.percent)

    async def _deliver(self, job: Job, client: UpstreamClient, result: Succeeded) -> None:
        job.phase = Phase.FINISHING
        job.show(Priority.STATE)
        channel = await self._channel(job.spec.channel_id)
        async with TempVideo() as path:
            try:
                video = await client.download(result, path)
            except UpstreamError as exc:
                kind = "not_a_video" if type(exc).__name__ == "NotAVideo" else exc.kind.value
                await self._fail(job, Failed(exc.kind, exc.message, result.task_id), reason_key=kind)
                return
            if channel is None:
                await self._fail(job, Failed(FailureKind.UPSTREAM, "the channel is gone"))
                return
            info = ResultInfo(
                generation_id=job.id,
                prompt=job.spec.prompt,
                model_label=job.spec.model.label or job.spec.model.name,
                seconds=job.spec.seconds,
                size=job.spec.size,
                requester_id=job.spec.user_id,
                elapsed=self.clock.time() - job.started,
                video_bytes=video.size,
                attached=True,
                video_url=None if result.authenticated else result.video_url,
                thumbnail_url=None if result.thumbnail_authenticated else result.thumbnail_url,
                combined_prompt=job.combined_prompt,
            )
            posted = await self._post_result(job, channel, video, info)
        await self.db.mark_succeeded(
            job.id,
            result_message_id=posted.message.id,
            result_url=result.video_url,
            result_bytes=video.size,
            thumbnail_url=result.thumbnail_url,
            assistant_text=result.assistant_text,
            task_id=result.task_id or job.task_id,
        )
        job.phase, job.percent = Phase.DONE, 100.0
        if job.streamer is not None:
            await job.streamer.close(progress_payload(job.view(result_url=posted.message.jump_url), job.spec.locale))
        if not isinstance(posted.message.channel, discord.Thread):
            await self.scheduler.reserve((f"threads:{posted.message.channel.id}",))
            thread = await open_thread(
                posted.message, job.spec.prompt, t("result.thread_name", job.spec.locale, prompt=job.spec.prompt)
            )
            if thread is not None:
                await self.db.set_thread(job.id, thread.id)

    async def _post_result(
        self, job: Job, channel: discord.abc.Messageable, video: Any, info: ResultInfo
    ) -> Any:
        guild = self.bot.get_guild(job.spec.guild_id)
        upload_limit = guild.filesize_limit if guild is not None else 10 * 1024 * 1024
        try:
            return await post_result(
                channel,
                video,
                info,
                job.spec.locale,
                upload_limit=upload_limit,
                scheduler=self.scheduler,
                channel_id=job.spec.channel_id,
            )
        except discord.HTTPException as exc:
            if exc.code != 50083 or job.spec.parent_channel_id is None:  # archived thread → post in its parent
                raise
            parent = await self._channel(job.spec.parent_channel_id)
            if parent is None:
                raise
            return await post_result(parent, video, info, job.spec.locale, upload_limit=upload_limit)

    async def _fail(
        self, job: Job, failure: Failed, *, internal: bool = False, reason_key: str | None = None
    ) -> None:
        task_id = failure.task_id or job.task_id
        if failure.kind is FailureKind.TIMEOUT and task_id is not None:
            # We gave up waiting; stop the gateway rendering (and billing) a video nobody will fetch.
            with contextlib.suppress(Exception):
                await self.client_for(job.spec.model).cancel(task_id)
        settled = await self.db.mark_failed(
            job.id,
            failure.kind.value,
            failure.reason,
            assistant_text=failure.assistant_text or job.assistant_text,
        )
        refunded = was_refunded(settled)
        job.phase = Phase.FAILED
        locale = job.spec.locale
        if internal:
            sentence = t("error.internal", locale, reference=f"#{job.id}")
        elif reason_key == "not_a_video":
            sentence = t("failed.not_a_video", locale)
        else:
            sentence = failure_sentence(failure.kind, failure.reason, locale)
        view = job.view(failure=failure.kind, reason=failure.reason, refunded=refunded)
        payload = progress_payload(view, locale)
        payload.embeds[0].description = "\n".join(
            [f"**{sentence}**", t("failed.refunded" if refunded else "failed.charged", locale)]
        )
        await self._close_or_post(job, payload)

    async def _finish_cancelled(self, job: Job) -> None:
        if job.task_id is not None:
            with contextlib.suppress(Exception):
                await self.client_for(job.spec.model).cancel(job.task_id)
        await self.db.mark_cancelled(job.id)
        job.phase = Phase.CANCELLED
        await self._close_or_post(job, progress_payload(job.view(), job.spec.locale))

    async def _close_or_post(self, job: Job, payload: MessagePayload) -> None:
        """Put the final state on the progress message, or in a new message if that one is gone."""
        landed = False
        if job.streamer is not None:
            landed = await job.streamer.close(payload)
        if not landed:
            channel = await self._channel(job.spec.channel_id)
            if channel is not None:
                with contextlib.suppress(discord.HTTPException):
                    await self.scheduler.reserve((f"channel:{job.spec.channel_id}",))
                    await channel.send(content=payload.content, embeds=payload.embeds)

    # --- buttons ------------------------------------------------------------------------------------------

    async def press_cancel(self, interaction: discord.Interaction[SoraBot], generation_id: int) -> None:
        locale = interaction_locale(interaction)
        generation = await self.db.get_generation(generation_id)
        if generation is None:
            await interaction.response.send_message(t("error.generation_gone", locale), ephemeral=True)
            return
        if not self.may_manage(interaction, generation.user_id):
            await interaction.response.send_message(
                t("error.not_yours", locale, owner=f"<@{generation.user_id}>"), ephemeral=True
            )
            return
        job = self.jobs.get(generation_id)
        if job is None or job.task is None or job.task.done() or job.phase in (Phase.FINISHING, Phase.DONE):
            # Gone, or already posting its video: a cancel now would refund a video the member gets anyway.
            key = "error.already_finished" if generation.finished or job is not None else "error.generation_gone"
            await interaction.response.send_message(t(key, locale), ephemeral=True)
            return
        await interaction.response.defer()
        job.cancelled_by = interaction.user.id
        job.task.cancel()

    def may_manage(self, interaction: discord.Interaction[SoraBot], owner_id: int) -> bool:
        if interaction.user.id == owner_id or self.bot.is_bot_owner(interaction.user.id):
            return True
        permissions = getattr(interaction.user, "guild_permissions", None)
        return bool(permissions and permissions.manage_guild)

    async def press_reroll(self, interaction: discord.Interaction[SoraBot], generation_id: int) -> None:
        from bot.requests import reroll_spec

        await reroll_spec(self, interaction, generation_id)

    async def submit_remix_modal(
        self, interaction: discord.Interaction[SoraBot], generation_id: int, change: str
    ) -> None:
        from bot.requests import remix_from_interaction

        await remix_from_interaction(self, interaction, generation_id, change)

    # --- restarts -------------------------------------------------------------------------------------

    async def resume_unfinished(self) -> None:
        """Pick up the jobs a previous run left: resume what can be resumed, refund and tell the rest."""
        unfinished = await self.db.unfinished_generations()
        # Jobs accepted by this process (requests can arrive before on_ready) are not leftovers: keep them as
        # they are, or they would be refunded while running, or resumed a second time.
        ours = {g.id for g in unfinished if g.id in self.jobs or g.created_at >= self.started_at}
        resume_ids = ours | {g.id for g in unfinished if self._can_resume(g)}
        report = await self.db.reconcile(resume_ids=resume_ids)
        # Concurrently: the rate budgets pace the messages, and 100 leftovers shouldn't take 100 round trips.
        await asyncio.gather(
            *(self._tell_restart_failure(generation) for generation in report.failed),
            *(self._resume_or_refund(generation) for generation in report.resumable if generation.id not in ours),
        )

    async def _resume_or_refund(self, generation: Generation) -> None:
        try:
            await self._resume_one(generation)
        except Exception:
            if self._closing:
                return  # shutting down mid-resume: leave it for the next start
            log.exception("could not resume job %s", generation.id)
            settled = await self.db.mark_failed(generation.id, "restart", "could not resume", charge=False)
            if settled.changed:
                await self._tell_restart_failure(generation)

    def _can_resume(self, generation: Generation) -> bool:
        model = self.settings.models.get(generation.model)
        if model is None or not generation.can_resume:
            return False
        api_format = self.settings.format_for(model)
        if generation.api_format is not None and generation.api_format != api_format:
            return False  # the gateway's format was changed since: its task id means nothing to the new client
        return self.client_for(model).supports_resume

    async def _tell_restart_failure(self, generation: Generation) -> None:
        """Show the failure on the job's progress message (when the bot token may edit it) and tell the member
        in the channel, pinging them (a reply to the old progress message when it still exists)."""
        channel = await self._channel(generation.channel_id)
        if channel is None:
            return
        locale = resolve_locale(generation.locale)
        sentence = t("failed.restart", locale)
        if generation.progress_message_id is not None:
            view = JobView(
                generation_id=generation.id,
                prompt=generation.prompt,
                model_label=self._model_label(generation.model),
                seconds=generation.seconds or 0,
                size=generation.size or "?",
                requester_id=generation.user_id,
                phase=Phase.FAILED,
                elapsed=max(0.0, (generation.finished_at or self.clock.time()) - generation.created_at),
            )
            payload = progress_payload(view, locale)
            payload.embeds[0].description = f"**{sentence}**\n{t('failed.refunded', locale)}"
            await self._edit_progress_message(channel, generation.progress_message_id, payload)
        prompt = truncate(generation.prompt, 200)
        text = f"<@{generation.user_id}> **{prompt}** — {sentence} {t('failed.refunded', locale)}"
        try:
            await self.scheduler.reserve((f"channel:{generation.channel_id}",))
            await channel.send(
                text,
                reference=self._reference_to(channel, generation.progress_message_id),  # type: ignore[arg-type]
                allowed_mentions=discord.AllowedMentions(users=[discord.Object(generation.user_id)]),
            )
        except discord.HTTPException as exc:
            log.warning("could not tell the member about job %s after the restart: %s", generation.id, exc)

    def _model_label(self, name: str) -> str:
        model = self.settings.models.get(name)
        return (model.label or model.name) if model is not None else name

    @staticmethod
    def _reference_to(channel: Any, message_id: int | None) -> discord.MessageReference | None:
        if message_id is None:
            return None
        return discord.MessageReference(message_id=message_id, channel_id=channel.id, fail_if_not_exists=False)

    async def _edit_progress_message(
        self, channel: Any, message_id: int, payload: MessagePayload
    ) -> discord.Message | None:
        """Edit a progress message from an earlier run with the bot token. None when that isn't possible: it was
        deleted, or it is an interaction response (only its interaction's token, long gone, may edit it)."""
        await self.scheduler.reserve((f"channel:{channel.id}",))
        try:
            return await channel.get_partial_message(message_id).edit(  # type: ignore[no-any-return]
                content=payload.content, embeds=payload.embeds, view=payload.view
            )
        except discord.HTTPException as exc:
            log.debug("progress message %s can't be edited after the restart (%s)", message_id, exc)
            return None

    async def _resume_one(self, generation: Generation) -> None:
        model = self.settings.models[generation.model]
        channel = await self._channel(generation.channel_id)
        if channel is None or generation.task_id is None:
            raise RuntimeError(f"the channel {generation.channel_id} is gone")
        posted = await self._posted_result(channel, generation.id)
        if posted is not None:
            # Killed between posting the video and recording it: it was delivered, so settle instead of redoing.
            await self.db.mark_succeeded(generation.id, result_message_id=posted.id, task_id=generation.task_id)
            log.info("job %s had already been delivered (message %s) before the restart", generation.id, posted.id)
            return
        locale = resolve_locale(generation.locale)
        spec = JobSpec(
            guild_id=generation.guild_id,
            channel_id=generation.channel_id,
            user_id=generation.user_id,
            locale=locale,
            model=model,
            prompt=generation.prompt,
            seconds=generation.seconds or model.seconds_default,
            size=generation.size or model.size_default,
            orientation=generation.orientation or "landscape",
            parent_channel_id=generation.parent_channel_id,
        )
        job = Job(self, generation, spec, started=generation.created_at, task_id=generation.task_id)
        job.phase, job.percent = Phase.RUNNING, generation.progress or None
        client = self.client_for(model)
        # A remix that went out as one combined prompt says so on its result, after a restart too.
        job.combined_prompt = generation.parent_id is not None and client.api_format not in (
            ApiFormat.CHAT,
            ApiFormat.VIDEOS,
        )
        self.jobs[job.id] = job
        try:
            message = await self._resumed_progress_message(job, channel)
        except BaseException:
            self.jobs.pop(job.id, None)
            raise
        job.streamer = ProgressStreamer(self.scheduler, ChannelMessageTarget(message))
        job.streamer.mark_edited()
        job.task = asyncio.create_task(self._run(job, resume_task_id=generation.task_id), name=f"job-{job.id}")

    async def _posted_result(self, channel: Any, generation_id: int, *, look_back: int = 100) -> discord.Message | None:
        """Our result message for `generation_id` among the channel's recent messages, if it was posted."""
        wanted = f"sora:remix:{generation_id}"
        try:
            async for message in channel.history(limit=look_back):
                if self.bot.user is None or message.author.id != self.bot.user.id:
                    continue
                for row in message.components:
                    if any(getattr(child, "custom_id", None) == wanted for child in getattr(row, "children", ())):
                        return message  # type: ignore[no-any-return]
        except discord.HTTPException as exc:
            log.warning("could not read channel %s to check for a delivered result: %s", channel.id, exc)
        return None

    async def _resumed_progress_message(self, job: Job, channel: Any) -> discord.Message:
        """The progress message of a resumed job: the old one edited in place when the bot token may (a reply's
        or a moved one), else a new one replying to it (an interaction response is only editable with its token)."""
        generation = job.generation
        payload = progress_payload(job.view(), job.spec.locale)
        if generation.progress_message_id is not None:
            message = await self._edit_progress_message(channel, generation.progress_message_id, payload)
            if message is not None:
                return message
        await self.scheduler.reserve((f"channel:{channel.id}",))
        message = await channel.send(
            content=payload.content,
            embeds=payload.embeds,
            view=payload.view,
            reference=self._reference_to(channel, generation.progress_message_id),
            mention_author=False,
        )
        await self.db.set_progress_message(job.id, message.id, forget_interaction=True)
        return message  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Stop running jobs without settling them: they are resumed (or refunded) on the next start.

        A job already posting its video gets a moment to finish, so it isn't delivered again after the restart."""
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_GRACE
        finishing = [job.task for job in self.jobs.values() if job.task is not None and job.phase is Phase.FINISHING]
        if finishing:
            await asyncio.wait(finishing, timeout=CLOSE_GRACE)
        # A job still being submitted (its progress message on the way) gets its task in a moment: wait for it,
        # or that task would start after this and run on in a closed bot.
        while any(job.task is None for job in self.jobs.values()) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        tasks = [job.task for job in self.jobs.values() if job.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.scheduler.close()


def was_refunded(settlement: Settlement) -> bool:
    return settlement.ledger == LedgerState.REFUNDED


def member_is_admin(member: discord.abc.User) -> bool:
    permissions = getattr(member, "guild_permissions", None)
    return bool(permissions and permissions.manage_guild)


def bot_missing_permissions(interaction: discord.Interaction[Any]) -> list[str]:
    """Permissions the bot lacks in the interaction's channel to post progress and results."""
    needed = discord.Permissions(embed_links=True, attach_files=True)
    if isinstance(interaction.channel, discord.Thread):
        needed.send_messages_in_threads = True
    else:
        needed.send_messages = True
    return missing_permissions(interaction.app_permissions, needed)


__all__ = [
    "InteractionOrigin",
    "Job",
    "JobManager",
    "JobSpec",
    "ReplyOrigin",
    "bot_missing_permissions",
    "member_is_admin",
]
