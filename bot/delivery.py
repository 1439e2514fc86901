"""Getting a finished video to the members: download to a temp file, verify, attach if it fits, else link."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import discord

from bot.render import ResultInfo, result_payload
from bot.streamer import EditScheduler
from bot.upstream.types import DownloadedVideo, UpstreamError

log = logging.getLogger(__name__)

THREAD_ARCHIVE_MINUTES = 1440


@dataclass(slots=True)
class PostedResult:
    message: discord.Message
    attached: bool


class TempVideo:
    """A temporary file for one download, removed when the block ends."""

    def __init__(self, directory: str | None = None, suffix: str = ".mp4") -> None:
        self.directory = directory
        self.suffix = suffix
        self.path: Path | None = None

    async def __aenter__(self) -> Path:
        fd, name = await asyncio.to_thread(tempfile.mkstemp, suffix=self.suffix, prefix="sora-", dir=self.directory)
        os.close(fd)
        self.path = Path(name)
        return self.path

    async def __aexit__(self, *exc: object) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(self.path.unlink)


async def post_result(
    channel: discord.abc.Messageable,
    video: DownloadedVideo,
    info: ResultInfo,
    locale: str,
    *,
    upload_limit: int,
    scheduler: EditScheduler | None = None,
    channel_id: int | None = None,
    nonce: str | None = None,
) -> PostedResult:
    """Post the result message: the video attached when it fits `upload_limit`, otherwise a link.

    With a `nonce` (the job's, the same for every attempt) Discord answers a repeated post within its dedup
    window with the message that already exists, so a delivery cut short by a crash can simply be done again."""
    attach = video.size <= upload_limit
    if scheduler is not None and channel_id is not None:
        await scheduler.reserve((f"channel:{channel_id}",))
    if attach:
        payload = result_payload(_with(info, attached=True, video_bytes=video.size), locale)
        file = discord.File(video.path, filename=f"sora-{info.generation_id}.mp4")
        try:
            message = await channel.send(
                content=payload.content,
                embeds=payload.embeds,
                view=payload.view,  # type: ignore[arg-type]
                file=file,
                nonce=nonce,  # type: ignore[arg-type]
            )
            return PostedResult(message, attached=True)
        except discord.HTTPException as exc:
            if exc.status != 413 and exc.code not in (40005, 50013):
                raise
            log.info("video %s could not be attached (%s); posting a link", info.generation_id, exc.code)
        finally:
            file.close()
    payload = result_payload(_with(info, attached=False, video_bytes=video.size, upload_limit=upload_limit), locale)
    # The link post is another message than the refused attachment: it gets its own nonce, derived from the job's.
    link_nonce = f"{nonce}L" if nonce else None
    message = await channel.send(
        content=payload.content,
        embeds=payload.embeds,
        view=payload.view,  # type: ignore[arg-type]
        nonce=link_nonce,  # type: ignore[arg-type]
    )
    return PostedResult(message, attached=False)


def _with(info: ResultInfo, **changes: object) -> ResultInfo:
    return replace(info, **changes)  # type: ignore[arg-type]


async def open_thread(message: discord.Message, thread_name: str) -> discord.Thread | None:
    """A thread for the remix conversation, unless the message is already in one (or we may not)."""
    if not isinstance(message.channel, discord.TextChannel):
        return None
    try:
        return await message.create_thread(
            name=thread_name or "sora", auto_archive_duration=THREAD_ARCHIVE_MINUTES
        )
    except discord.HTTPException as exc:
        log.warning("could not open a thread on result %s: %s", message.id, exc)
        return None


__all__ = ["PostedResult", "TempVideo", "UpstreamError", "open_thread", "post_result"]
