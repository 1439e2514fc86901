"""What a job is made of: the validated request (`JobSpec`) and the in-memory state of one attempt (`Job`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from bot.clock import Clock
from bot.config import ModelSpec
from bot.jobs.spool import Spool
from bot.render import JobView, Phase, progress_payload
from bot.streamer import MessagePayload, Priority, ProgressStreamer
from bot.upstream.remix import RemixStrategy
from bot.upstream.types import ReferenceImage
from storage import Generation, Lease


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
    remix_strategy: RemixStrategy | None = None  # decided on submit, kept for a resumed job


class Start(StrEnum):
    """Where an attempt picks a job up."""

    FRESH = "fresh"  # nothing was sent to the gateway yet
    RESUME_TASK = "resume_task"  # the gateway has the task: poll it again
    DOWNLOAD = "download"  # the gateway said the video is ready: fetch it
    REDELIVER = "redeliver"  # the result post was under way: post again with the same nonce (Discord dedups)
    SETTLE = "settle"  # the result message is known: only the charge is left


@dataclass(eq=False)
class Job:
    """One attempt at one generation, in this process."""

    generation: Generation
    spec: JobSpec
    lease: Lease
    clock: Clock
    started: float
    phase: Phase = Phase.WAITING
    percent: float | None = None
    position: int | None = None
    task_id: str | None = None
    assistant_text: str = ""
    cancelled_by: int | None = None
    delivering: bool = False  # the upload started: Cancel is no longer offered
    failure_key: str | None = None  # a catalogue key that says the failure better than its kind
    spool: Spool | None = None  # the reference images, on disk while the job waits
    settled: bool = False  # its final state and ledger entry are written: no lease to keep any more
    streamer: ProgressStreamer | None = None
    task: asyncio.Task[None] | None = None  # the whole attempt
    work: asyncio.Task[Any] | None = None  # the cancellable part: waiting, generating, downloading
    publishing: asyncio.Task[Any] | None = None  # post + record + charge: shielded, never split
    last_saved: float = field(default=0.0)

    @property
    def id(self) -> int:
        return self.generation.id

    @property
    def combined_prompt(self) -> bool:
        return self.spec.remix_strategy is RemixStrategy.COMBINED

    def view(self, **changes: Any) -> JobView:
        view = JobView(
            generation_id=self.id,
            prompt=self.spec.prompt,
            model_label=self.spec.model.label or self.spec.model.name,
            seconds=self.spec.seconds,
            size=self.spec.size,
            requester_id=self.spec.user_id,
            phase=self.phase,
            elapsed=self.clock.time() - self.started,
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
        return progress_payload(self.view(), self.spec.locale, cancellable=not self.delivering)

    def on_wait_position(self, position: int) -> None:
        if self.phase is Phase.WAITING and position != self.position:
            self.position = position
            self.show(Priority.STATE)

    def request_cancel(self, user_id: int) -> bool:
        """Stop the cancellable part now (the runner settles); False when there is nothing left to stop here."""
        self.cancelled_by = user_id
        if self.work is not None and not self.work.done():
            self.work.cancel()
            return True
        return False


__all__ = ["Job", "JobSpec", "Start"]
