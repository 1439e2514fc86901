"""The jobs of this process: accept (reserve → lease → first message → run), cancel (a request), pick up jobs
whose lease expired, and stop cleanly. Sequencing lives in `runner`, the heartbeat in `leases`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace

import aiohttp
import discord

from bot.clock import Clock
from bot.config import ApiFormat, ModelSpec, Settings
from bot.i18n import resolve_locale, t
from bot.jobs.discord_side import DiscordSide
from bot.jobs.leases import LeaseKeeper, new_owner_id
from bot.jobs.model import Job, JobSpec, Start
from bot.jobs.origins import Origin
from bot.jobs.runner import JobRunner
from bot.jobs.slots import SharedSlots
from bot.jobs.spool import Spool
from bot.quota_text import denial_sentence
from bot.render import Phase, progress_payload
from bot.streamer import ChannelMessageTarget, EditScheduler, EditTarget, ProgressStreamer
from bot.upstream import UpstreamClient, make_client, options_from_settings
from bot.upstream.remix import RemixStrategy, RemixTurn, choose_remix_strategy
from bot.upstream.types import ReferenceImage
from bot.validation import sniff_image
from storage import (
    RESTART,
    CancelOutcome,
    Database,
    Generation,
    GenerationStatus,
    Lease,
    LeaseGrant,
    LeaseLost,
    NewGeneration,
    QuotaDenied,
    ShardSlice,
)

log = logging.getLogger(__name__)

CLOSE_GRACE = 20.0  # seconds the uploads and settlements under way may take to finish when the bot stops
REFERENCE_IMAGE_LIMIT = 20 * 1024 * 1024


class JobManager:
    """Runs every job of this process. Reached by the request intake as `bot.jobs`."""

    def __init__(
        self,
        *,
        client: discord.Client,
        settings: Settings,
        db: Database,
        session: aiohttp.ClientSession,
        scheduler: EditScheduler,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.db = db
        self.session = session
        self.clock = clock
        self.scheduler = scheduler
        self.owner = new_owner_id()
        self.slots = SharedSlots(db, self.owner, settings.sora_max_concurrent_jobs)
        self.discord = DiscordSide(client, scheduler, clock)
        self.runner = JobRunner(
            db, self, self.discord, self.slots, clock, remix_depth=settings.sora_remix_depth
        )
        self.keeper = LeaseKeeper(
            db,
            clock,
            owner=self.owner,
            lease_seconds=settings.sora_lease_seconds,
            sweep_interval=settings.sora_sweep_interval,
            held=self._held,
            on_lost=self._lost,
            on_cancel_requested=self._cancel_requested_elsewhere,
            on_claimed=self._adopt_all,
            shards=shard_slice(settings),
        )
        self.jobs: dict[int, Job] = {}
        self._clients: dict[ApiFormat, UpstreamClient] = {}
        self._closing = False

    # --- upstream clients ---------------------------------------------------------------------------

    def client_for(self, model: ModelSpec) -> UpstreamClient:
        api_format = self.settings.format_for(model)
        client = self._clients.get(api_format)
        if client is None:
            client = make_client(api_format, self.session, options_from_settings(self.settings))
            self._clients[api_format] = client
        return client

    @property
    def busy(self) -> bool:
        """The local queue is full: new requests are turned away with a "try again in a moment"."""
        waiting = sum(1 for job in self.jobs.values() if job.phase is Phase.WAITING)
        return waiting >= self.settings.sora_max_queued_jobs

    # --- accepting a request ---------------------------------------------------------------------------

    async def submit(self, spec: JobSpec, origin: Origin) -> Job | None:
        """Reserve quota and start the job; or tell the member why not. Returns the job when accepted."""
        if self._closing:
            await origin.refuse(t("error.restarting", spec.locale))
            return None
        client = self.client_for(spec.model)
        spec = await self._with_remix_strategy(spec, client)
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
            cost=spec.model.cost_for(spec.seconds),
            parent_id=spec.parent.id if spec.parent else None,
            remix_strategy=spec.remix_strategy.value if spec.remix_strategy else None,
        )
        outcome = await self.db.create_generation(
            new,
            role_ids=spec.role_ids,
            is_admin=spec.is_admin,
            lease=LeaseGrant(self.owner, self.settings.sora_lease_seconds),
        )
        if isinstance(outcome, QuotaDenied):
            await origin.refuse(denial_sentence(outcome, spec.locale, self.clock))
            return None
        generation = await self.db.get_generation(outcome.generation_id)
        assert generation is not None
        spool = await Spool.write(spec.images) if spec.images else None
        spec = replace(spec, images=())  # waiting jobs keep their images on disk, not in memory
        job = Job(generation, spec, Lease(generation.id, generation.attempt, self.owner), self.clock, self.clock.time())
        job.spool = spool
        self.jobs[job.id] = job
        try:
            try:
                target = await origin.first_target(progress_payload(job.view(), spec.locale), self.scheduler)
            except discord.HTTPException as exc:
                log.warning("job %s: could not show progress (%s); refunding", job.id, exc)
                await self.db.mark_failed(job.id, "upstream", "could not post progress", charge=False, lease=job.lease)
                raise _NotStarted from None
            message = getattr(target, "message", None)
            if message is not None:
                await self.db.set_progress_message(job.id, message.id, lease=job.lease)
        except (_NotStarted, LeaseLost):
            # LeaseLost: this process stalled past the new job's lease and another attempt holds it now.
            if self.jobs.get(job.id) is job:
                del self.jobs[job.id]
            if job.spool is not None:
                await job.spool.discard()
            return None
        self._start(job, target, Start.FRESH)
        return job

    async def _with_remix_strategy(self, spec: JobSpec, client: UpstreamClient) -> JobSpec:
        if spec.parent is None:
            return spec
        chain = await self.db.chain(spec.parent.id, max_depth=self.settings.sora_remix_depth)
        turns = [RemixTurn(g.prompt, g.assistant_text, g.task_id, g.api_format) for g in chain]
        return replace(spec, remix_strategy=choose_remix_strategy(client, turns))

    def _start(self, job: Job, target: EditTarget, start: Start) -> None:
        async def handover() -> EditTarget | None:
            return await self._move_to_channel_message(job)

        job.streamer = ProgressStreamer(self.scheduler, target, handover=handover)
        job.streamer.mark_edited()
        job.task = asyncio.create_task(self._run(job, start), name=f"job-{job.id}")

    async def _run(self, job: Job, start: Start) -> None:
        try:
            await self.runner.run(job, start)
        finally:
            if self.jobs.get(job.id) is job:
                del self.jobs[job.id]
            if job.spool is not None:
                await asyncio.shield(job.spool.discard())

    async def _move_to_channel_message(self, job: Job) -> EditTarget | None:
        """The interaction token is about to die: continue in an ordinary message sent with the bot token."""
        message = await self.discord.move_to_channel_message(job.spec.channel_id, job.render())
        if message is None:
            return None
        old = job.streamer.target if job.streamer else None
        interaction = getattr(old, "interaction", None)
        if interaction is not None:
            with contextlib.suppress(discord.HTTPException):
                await interaction.edit_original_response(
                    content=t("progress.moved", job.spec.locale), embeds=[], view=None
                )
        await self.db.set_progress_message(
            job.id, message.id, channel_id=job.spec.channel_id, forget_interaction=True, lease=job.lease
        )
        return ChannelMessageTarget(message)

    # --- cancel: a request, honoured at the runner's safe points ---------------------------------------

    async def request_cancel(self, generation_id: int, user_id: int) -> CancelOutcome:
        outcome = await self.db.request_cancel(generation_id, user_id)
        if outcome is CancelOutcome.REQUESTED:
            job = self.jobs.get(generation_id)
            if job is not None:
                job.request_cancel(user_id)
        return outcome

    def _cancel_requested_elsewhere(self, generation_id: int, user_id: int) -> None:
        """A cancel pressed on another process (or before this one held the job): honour it here."""
        job = self.jobs.get(generation_id)
        if job is not None and job.cancelled_by is None:
            job.request_cancel(user_id)

    def job_being_posted(self, generation_id: int) -> asyncio.Task[None] | None:
        """The task of a job of ours that is posting its video right now (its message exists a moment before
        the database knows it)."""
        job = self.jobs.get(generation_id)
        if job is None or job.task is None or job.task.done() or not job.delivering:
            return None
        return job.task

    # --- leases ------------------------------------------------------------------------------------------

    def start_background(self) -> None:
        """Start the heartbeat: it claims every job whose lease expired (a previous run's, or a dead process's)."""
        self.keeper.start()

    def _held(self) -> dict[int, int]:
        return {job.id: job.lease.attempt for job in self.jobs.values() if not job.settled}

    def _lost(self, generation_id: int) -> None:
        job = self.jobs.pop(generation_id, None)
        if job is not None and job.task is not None and not job.task.done():
            log.warning("job %s: lease lost to another process; stopping this attempt", generation_id)
            if job.publishing is None:
                job.task.cancel()

    async def _adopt_all(self, claimed: list[Generation]) -> None:
        # Concurrently: the rate budgets pace the messages, and 100 leftovers shouldn't take 100 round trips.
        await asyncio.gather(*(self._adopt_or_refund(generation) for generation in claimed))

    async def _adopt_or_refund(self, generation: Generation) -> None:
        lease = Lease(generation.id, generation.attempt, self.owner)
        try:
            await self._adopt(generation, lease)
        except LeaseLost:
            return
        except Exception:
            if self._closing:
                return  # stopping mid-adoption: the lease is released and the job picked up next time
            log.exception("could not pick up job %s", generation.id)
            await self._give_up(generation, lease)

    async def _adopt(self, generation: Generation, lease: Lease) -> None:
        """A job claimed from an expired lease: decide where it picks up, or end it with a clear message."""
        model = self.settings.models.get(generation.model)
        if model is None:
            await self._give_up(generation, lease)
            return
        if generation.cancel_requested_by is not None and generation.status is not GenerationStatus.DELIVERING:
            if generation.task_id is not None:
                with contextlib.suppress(Exception):
                    await self.client_for(model).cancel(generation.task_id)
            await self.db.mark_cancelled(generation.id, lease=lease)
            return
        start = self._start_point(generation, model)
        if start is None:
            await self._give_up(generation, lease)
            return
        if start is Start.SETTLE:
            await self.db.mark_succeeded(generation.id, result_message_id=generation.result_message_id, lease=lease)
            return
        spec = await self._spec_of(generation, model)
        job = Job(generation, spec, lease, self.clock, generation.created_at, task_id=generation.task_id)
        if spec.images:
            job.spool = await Spool.write(spec.images)
            job.spec = replace(spec, images=())
        if start is Start.FRESH:
            job.phase = Phase.WAITING
        else:
            job.phase, job.percent = Phase.RUNNING, generation.progress or None
        self.jobs[job.id] = job
        try:
            shown = await self.discord.resumed_progress_message(generation, job.render())
            if shown is None:
                raise RuntimeError(f"the channel {generation.channel_id} is gone")
            target, new_message = shown
            if new_message:
                await self.db.set_progress_message(job.id, target.message.id, forget_interaction=True, lease=lease)
        except BaseException:
            self.jobs.pop(job.id, None)
            raise
        self._start(job, target, start)

    def _start_point(self, generation: Generation, model: ModelSpec) -> Start | None:
        match generation.status:
            case GenerationStatus.DELIVERING:
                if generation.result_message_id is not None:
                    return Start.SETTLE
                return Start.REDELIVER if generation.result_json else None
            case GenerationStatus.RUNNING:
                if generation.result_json:
                    return Start.DOWNLOAD
                return Start.RESUME_TASK if self._can_resume(generation, model) else None
            case GenerationStatus.QUEUED:
                return Start.FRESH  # nothing reached the gateway: it can simply be run
        return None

    def _can_resume(self, generation: Generation, model: ModelSpec) -> bool:
        if not generation.can_resume:
            return False
        api_format = self.settings.format_for(model)
        if generation.api_format is not None and generation.api_format != api_format:
            return False  # the gateway's format was changed since: its task id means nothing to the new client
        return self.client_for(model).supports_resume

    async def _spec_of(self, generation: Generation, model: ModelSpec) -> JobSpec:
        parent = await self.db.get_generation(generation.parent_id) if generation.parent_id else None
        never_started = generation.status is GenerationStatus.QUEUED
        images = await self._reference_images(generation.reference_urls) if never_started else ()
        return JobSpec(
            guild_id=generation.guild_id,
            channel_id=generation.channel_id,
            user_id=generation.user_id,
            locale=resolve_locale(generation.locale),
            model=model,
            prompt=generation.prompt,
            seconds=generation.seconds or model.seconds_default,
            size=generation.size or model.size_default,
            orientation=generation.orientation or "landscape",
            images=images,
            image_urls=generation.reference_urls,
            parent=parent,
            parent_channel_id=generation.parent_channel_id,
            remix_strategy=RemixStrategy(generation.remix_strategy) if generation.remix_strategy else None,
        )

    async def _reference_images(self, urls: tuple[str, ...]) -> tuple[ReferenceImage, ...]:
        """The member's images again (a job that never started keeps only their Discord attachment links)."""
        images = []
        for url in urls:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as response:
                response.raise_for_status()
                data = await response.content.read(REFERENCE_IMAGE_LIMIT + 1)
            content_type = sniff_image(data)
            if content_type is None or len(data) > REFERENCE_IMAGE_LIMIT:
                raise RuntimeError("a reference image can't be read again")
            name = url.rsplit("/", 1)[-1].split("?", 1)[0] or "image"
            images.append(ReferenceImage(data=data, filename=name, content_type=content_type))
        return tuple(images)

    async def _give_up(self, generation: Generation, lease: Lease) -> None:
        with contextlib.suppress(LeaseLost):
            settled = await self.db.mark_failed(
                generation.id, RESTART, "the bot restarted and could not resume this job", charge=False, lease=lease
            )
            if settled.changed:
                model = self.settings.models.get(generation.model)
                label = (model.label or model.name) if model is not None else generation.model
                await self.discord.tell_not_resumed(generation, label, "failed.restart")

    # --- stopping ----------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop claiming; let uploads and settlements under way finish (within `CLOSE_GRACE`); stop every other
        job without settling it and release its lease at once, so the next start (or another process) resumes
        it without waiting for the lease to run out."""
        self._closing = True
        await self.keeper.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_GRACE
        publishing = [job.task for job in self.jobs.values() if job.task is not None and job.delivering]
        if publishing:
            await asyncio.wait(publishing, timeout=CLOSE_GRACE)
        # A job still being submitted (its progress message on the way) gets its task in a moment: wait for it,
        # or that task would start after this and run on in a closed bot.
        while any(job.task is None for job in self.jobs.values()) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        jobs = list(self.jobs.values())
        tasks = [job.task for job in jobs if job.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for job in jobs:
            with contextlib.suppress(Exception):
                await self.db.release_lease(job.lease)
        await self.slots.close()
        await self.scheduler.close()


def shard_slice(settings: Settings) -> ShardSlice | None:
    """The shards this process runs, when it runs a slice of them (its jobs then go first to it)."""
    if settings.sora_shard_count is None:
        return None
    ids = settings.sora_shard_ids or list(range(settings.sora_shard_count))
    return ShardSlice(settings.sora_shard_count, tuple(ids))


class _NotStarted(Exception):
    """The job's first message couldn't be shown: it was refunded and is not run."""


__all__ = ["JobManager"]
