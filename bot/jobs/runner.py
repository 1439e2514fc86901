"""The sequencer of one attempt: wait for a slot → run upstream → (slot freed) download → deliver → settle.

Every database write carries the attempt's lease and is refused when a newer attempt exists (`LeaseLost`): the
runner then stops without touching anything. The member's Cancel stops only the cancellable part (`job.work`:
waiting, generating, downloading); posting the result, recording its message and charging form one shielded
step that nothing splits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import discord

from bot.clock import Clock
from bot.delivery import PostedResult, TempVideo
from bot.i18n import t
from bot.jobs.discord_side import DiscordSide
from bot.jobs.model import Job, Start
from bot.jobs.ports import JobStore, Upstreams
from bot.jobs.slots import SharedSlots
from bot.render import Phase, ResultInfo, failure_sentence, progress_payload
from bot.streamer import MessagePayload, Priority
from bot.upstream import UpstreamClient
from bot.upstream.remix import RemixTurn, remix_request
from bot.upstream.types import (
    DownloadedVideo,
    Event,
    Failed,
    FailureKind,
    Preview,
    Progress,
    Queued,
    Succeeded,
    TaskId,
    UpstreamError,
    VideoRequest,
)
from storage import DeliveryStart, LeaseLost, Settlement

log = logging.getLogger(__name__)

PROGRESS_SAVE_INTERVAL = 15.0  # seconds between progress writes to the database (shown again after a restart)
PUBLISH_GRACE = 20.0  # seconds a result post under way may take to finish when the attempt is stopped


@dataclass(frozen=True, slots=True)
class Ready:
    """The cancellable part ended with a video on disk."""

    result: Succeeded
    video: DownloadedVideo


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        upstreams: Upstreams,
        discord_side: DiscordSide,
        slots: SharedSlots,
        clock: Clock,
        *,
        remix_depth: int,
    ) -> None:
        self.store = store
        self.upstreams = upstreams
        self.discord = discord_side
        self.slots = slots
        self.clock = clock
        self.remix_depth = remix_depth

    async def run(self, job: Job, start: Start) -> None:
        try:
            await self._run(job, start)
        except LeaseLost:
            log.warning("job %s: attempt %s was taken over; it stops here", job.id, job.lease.attempt)
            if job.streamer is not None:
                # Stop editing: the newer attempt owns the message now.
                job.streamer.lost = True
                job.streamer.scheduler.withdraw(job.streamer)
        except asyncio.CancelledError:
            raise  # the bot is stopping: the lease is released and the job resumed elsewhere
        except Exception as exc:
            if job.settled:
                # Settled already (charged or refunded, the member told or about to be): what failed is a
                # courtesy after it, such as the thread on the result, typically while the bot stops.
                log.warning("job %s: a step after its settlement failed: %r", job.id, exc)
                return
            log.exception("job %s failed unexpectedly", job.id)
            try:
                await self._fail(job, Failed(FailureKind.UPSTREAM, "internal error"), internal=True)
            except LeaseLost:
                pass
            except Exception:
                # The database is unusable: the lease runs out and the sweeper settles the job.
                log.exception("job %s could not be settled now; its lease will expire and it is retried", job.id)

    async def _run(self, job: Job, start: Start) -> None:
        client = self.upstreams.client_for(job.spec.model)
        if start is Start.SETTLE:
            await self._settle_posted(job)
            return
        async with TempVideo() as path:
            try:
                if start is Start.REDELIVER:
                    ready = await self._download(job, client, self._stored_result(job), path)
                    if isinstance(ready, Failed):
                        await self._fail(job, ready)
                        return
                else:
                    outcome = await self._cancellable(job, client, start, path)
                    if outcome is None:
                        await self._finish_cancelled(job)
                        return
                    if isinstance(outcome, Failed):
                        await self._fail(job, outcome)
                        return
                    ready = outcome
                await self._deliver(job, ready)
            finally:
                # The temp file must outlive an upload that is still going (a shutdown waits for it).
                if job.publishing is not None and not job.publishing.done():
                    await asyncio.wait([job.publishing], timeout=PUBLISH_GRACE)

    # --- the cancellable part ---------------------------------------------------------------------------

    async def _cancellable(self, job: Job, client: UpstreamClient, start: Start, path: str) -> Ready | Failed | None:
        """Run waiting + generating + downloading as `job.work`. None when the member cancelled it."""
        job.work = asyncio.create_task(self._work(job, client, start, path), name=f"job-{job.id}-work")
        try:
            await asyncio.wait([job.work])
        except asyncio.CancelledError:
            job.work.cancel()
            with contextlib.suppress(BaseException):
                await job.work
            raise
        if job.work.cancelled():
            return None
        return job.work.result()

    async def _work(self, job: Job, client: UpstreamClient, start: Start, path: str) -> Ready | Failed:
        if start is Start.DOWNLOAD:
            result = self._stored_result(job)
        else:
            job.show(Priority.STATE)
            async with self.slots.hold(job):
                job.phase, job.position = Phase.STARTING, None
                job.show(Priority.STATE)
                if start is Start.FRESH:
                    await self.store.mark_running(job.id, lease=job.lease)
                    events = client.generate(await self._request_for(job))
                else:
                    assert job.task_id is not None
                    events = client.resume(job.task_id)
                final = await self._consume(job, events)
                if isinstance(final, Failed):
                    return final
                await self.store.record_result(job.lease, dataclasses.asdict(final))
            result = final  # the gateway slot is free again: downloading doesn't block other members
        return await self._download(job, client, result, path)

    async def _download(self, job: Job, client: UpstreamClient, result: Succeeded, path: str) -> Ready | Failed:
        job.phase = Phase.FINISHING
        job.show(Priority.STATE)
        try:
            video = await client.download(result, path)  # type: ignore[arg-type]
        except UpstreamError as exc:
            if type(exc).__name__ == "NotAVideo":
                job.failure_key = "failed.not_a_video"
            elif exc.kind is FailureKind.TIMEOUT:
                job.failure_key = "failed.download_slow"  # not the gateway's slowness: the video's host's
            return Failed(exc.kind, exc.message, result.task_id)
        return Ready(result, video)

    def _stored_result(self, job: Job) -> Succeeded:
        data = json.loads(job.generation.result_json or "{}")
        fields = {f.name for f in dataclasses.fields(Succeeded)}
        return Succeeded(**{name: value for name, value in data.items() if name in fields})

    async def _request_for(self, job: Job) -> VideoRequest:
        spec = job.spec
        images = spec.images
        if job.spool is not None:
            images = await job.spool.read()  # back in memory only for as long as the request takes
        request = VideoRequest(
            prompt=spec.prompt,
            model=spec.model.wire_name,
            seconds=spec.seconds,
            size=spec.size,
            orientation=spec.orientation,  # type: ignore[arg-type]
            images=images,
        )
        if spec.parent is None or spec.remix_strategy is None:
            return request
        chain = await self.store.chain(spec.parent.id, max_depth=self.remix_depth)
        turns = [RemixTurn(g.prompt, g.assistant_text, g.task_id, g.api_format) for g in chain]
        return remix_request(request, spec.remix_strategy, turns)

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
                    await self.store.set_task_id(job.id, task_id, resumable=resumable, lease=job.lease)
                case Preview():
                    pass
                case Succeeded() | Failed():
                    job.assistant_text = event.assistant_text
                    return event
        job.failure_key = "failed.no_result"
        return Failed(FailureKind.UPSTREAM, "the gateway ended the job without a result")

    async def _save_progress(self, job: Job) -> None:
        now = self.clock.monotonic()
        if job.percent is not None and now - job.last_saved >= PROGRESS_SAVE_INTERVAL:
            job.last_saved = now
            await self.store.update_generation_progress(job.id, job.percent, lease=job.lease)

    # --- delivering ------------------------------------------------------------------------------------------

    async def _deliver(self, job: Job, ready: Ready) -> None:
        if await self.store.begin_delivery(job.lease) is DeliveryStart.CANCEL_REQUESTED:
            await self._finish_cancelled(job)  # the member pressed Cancel first
            return
        job.delivering = True
        job.show(Priority.STATE)
        job.publishing = asyncio.ensure_future(self._publish(job, ready))
        posted = await asyncio.shield(job.publishing)
        if posted is None:
            return
        job.phase, job.percent = Phase.DONE, 100.0
        if job.streamer is not None:
            payload = progress_payload(job.view(result_url=posted.message.jump_url), job.spec.locale)
            await job.streamer.close(payload)
        thread = await self.discord.open_thread(posted.message, job.spec.prompt, job.spec.locale)
        if thread is not None:
            await self.store.set_thread(job.id, thread.id, lease=job.lease)

    async def _publish(self, job: Job, ready: Ready) -> PostedResult | None:
        """Post the result and record it with the charge: one step, run to its end even when the attempt is
        stopped. A repeat of it (another attempt) posts with the same nonce and so finds the same message."""
        client = self.upstreams.client_for(job.spec.model)
        channel = await self.discord.channel(job.spec.channel_id)
        if channel is None:
            job.failure_key = "failed.channel_gone"
            await self._fail(job, Failed(FailureKind.UPSTREAM, "the channel is gone"))
            return None
        result, video = ready.result, ready.video
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
            video_url=client.publishable_url(result),
            thumbnail_url=client.publishable_url(result, thumbnail=True),
            combined_prompt=job.combined_prompt,
        )
        try:
            posted = await self.discord.post_result(
                channel,
                video,
                info,
                job.spec.locale,
                guild_id=job.spec.guild_id,
                channel_id=job.spec.channel_id,
                parent_channel_id=job.spec.parent_channel_id,
                nonce=job.generation.delivery_nonce,
            )
        except discord.HTTPException as exc:
            log.warning("job %s: the result could not be posted: %s", job.id, exc)
            job.failure_key = "failed.post_refused"
            await self._fail(job, Failed(FailureKind.UPSTREAM, "Discord refused the result message"))
            return None
        await self.store.mark_succeeded(
            job.id,
            result_message_id=posted.message.id,
            result_url=result.video_url,
            result_bytes=video.size,
            thumbnail_url=result.thumbnail_url,
            assistant_text=result.assistant_text or job.assistant_text or None,
            task_id=result.task_id or job.task_id,
            lease=job.lease,
        )
        job.settled = True
        return posted

    async def _settle_posted(self, job: Job) -> None:
        """The result message is already recorded: only make sure it is charged."""
        await self.store.mark_succeeded(job.id, result_message_id=job.generation.result_message_id, lease=job.lease)
        job.settled = True

    # --- ending otherwise ---------------------------------------------------------------------------------

    async def _fail(self, job: Job, failure: Failed, *, internal: bool = False) -> Settlement:
        task_id = failure.task_id or job.task_id
        if failure.kind is FailureKind.TIMEOUT and task_id is not None:
            # We gave up waiting; stop the gateway rendering (and billing) a video nobody will fetch.
            with contextlib.suppress(Exception):
                await self.upstreams.client_for(job.spec.model).cancel(task_id)
        settled = await self.store.mark_failed(
            job.id,
            failure.kind.value,
            failure.reason,
            assistant_text=failure.assistant_text or job.assistant_text or None,
            lease=job.lease,
        )
        job.settled = True
        job.phase = Phase.FAILED
        locale = job.spec.locale
        if internal:
            sentence = t("error.internal", locale, reference=f"#{job.id}")
        elif job.failure_key is not None:
            sentence = t(job.failure_key, locale, reason=failure.reason)
        else:
            sentence = failure_sentence(failure.kind, failure.reason, locale)
        view = job.view(failure=failure.kind, reason=failure.reason, refunded=settled.refunded)
        payload = progress_payload(view, locale)
        payload.embeds[0].description = "\n".join(
            [f"**{sentence}**", t("failed.refunded" if settled.refunded else "failed.charged", locale)]
        )
        await self._close_or_post(job, payload)
        return settled

    async def _finish_cancelled(self, job: Job) -> None:
        if job.task_id is not None:
            with contextlib.suppress(Exception):
                await self.upstreams.client_for(job.spec.model).cancel(job.task_id)
        settled = await self.store.mark_cancelled(job.id, lease=job.lease)
        job.settled = True
        job.phase = Phase.CANCELLED
        if job.cancelled_by is None:
            generation = await self.store.get_generation(job.id)
            job.cancelled_by = generation.cancel_requested_by if generation is not None else None
        # The message says what the settlement did (a refund), not what was hoped for.
        payload = progress_payload(job.view(refunded=settled.refunded), job.spec.locale)
        await self._close_or_post(job, payload)

    async def _close_or_post(self, job: Job, payload: MessagePayload) -> None:
        """Put the final state on the progress message, or in a new message if that one is gone."""
        landed = False
        if job.streamer is not None:
            landed = await job.streamer.close(payload)
        if not landed:
            await self.discord.post_final(job.spec.channel_id, payload)


__all__ = ["JobRunner", "Ready"]
