"""What progress and result messages look like: pure functions from a job's state + locale to a payload.

Everything here fits Discord's limits by construction (content ≤ 2000, embed title ≤ 256, description ≤ 4096,
field values ≤ 1024) and is easy to test without Discord.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import discord

from bot.i18n import t
from bot.streamer import MessagePayload
from bot.upstream.types import FailureKind

BAR_CELLS = 16
COLOR_RUNNING = discord.Colour.blurple()
COLOR_DONE = discord.Colour.green()
COLOR_FAILED = discord.Colour.red()
COLOR_CANCELLED = discord.Colour.dark_grey()


class Phase(StrEnum):
    WAITING = "waiting"  # in our local queue, for a free upstream slot
    STARTING = "starting"
    QUEUED = "queued"  # accepted by the gateway, waiting there
    RUNNING = "running"
    FINISHING = "finishing"  # downloading and posting the video
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class JobView:
    """Everything a progress message shows, as plain values."""

    generation_id: int
    prompt: str
    model_label: str
    seconds: int
    size: str
    requester_id: int
    phase: Phase
    elapsed: float
    percent: float | None = None
    position: int | None = None  # local queue position (WAITING) or the gateway's (QUEUED)
    failure: FailureKind | None = None
    reason: str | None = None
    refunded: bool = True
    cancelled_by: int | None = None
    result_url: str | None = None  # jump URL of the result message, once posted
    remix_of_url: str | None = None


def truncate(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def progress_bar(percent: float | None) -> str:
    if percent is None:
        return "▱" * BAR_CELLS
    filled = round(BAR_CELLS * max(0.0, min(100.0, percent)) / 100)
    return "▰" * filled + "▱" * (BAR_CELLS - filled) + f"  {percent:.0f}%"


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_bytes(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KiB"
    return f"{size / 2**20:.1f} MiB"


def status_line(view: JobView, locale: str) -> str:
    match view.phase:
        case Phase.WAITING:
            return t("progress.waiting", locale, position=view.position or 1)
        case Phase.STARTING:
            return t("progress.starting", locale)
        case Phase.QUEUED:
            if view.position:
                return t("progress.queued_position", locale, position=view.position)
            return t("progress.queued", locale)
        case Phase.RUNNING:
            return t("progress.running", locale)
        case Phase.FINISHING:
            return t("progress.finishing", locale)
        case Phase.DONE:
            return t("result.title", locale)
        case Phase.FAILED:
            return failure_sentence(view.failure or FailureKind.UPSTREAM, view.reason, locale)
        case Phase.CANCELLED:
            return t("failed.cancelled", locale, user=f"<@{view.cancelled_by or view.requester_id}>")


def failure_sentence(kind: FailureKind | str, reason: str | None, locale: str) -> str:
    """One short sentence saying what happened (the gateway's words where they help)."""
    key = f"failed.{kind}"
    reason_text = truncate(reason or "", 300) or "?"
    return t(key, locale, reason=reason_text, user="?")


def progress_payload(view: JobView, locale: str, *, cancellable: bool = True) -> MessagePayload:
    """The live progress message (also its final state when the job fails or is cancelled)."""
    terminal = view.phase in (Phase.DONE, Phase.FAILED, Phase.CANCELLED)
    colour = {Phase.DONE: COLOR_DONE, Phase.FAILED: COLOR_FAILED, Phase.CANCELLED: COLOR_CANCELLED}.get(
        view.phase, COLOR_RUNNING
    )
    lines = [f"**{status_line(view, locale)}**"]
    if view.phase in (Phase.RUNNING, Phase.FINISHING, Phase.QUEUED, Phase.STARTING):
        lines.append(progress_bar(100.0 if view.phase is Phase.FINISHING else view.percent))
    if view.phase in (Phase.FAILED, Phase.CANCELLED):
        lines.append(t("failed.refunded" if view.refunded else "failed.charged", locale))
    if view.phase is Phase.DONE and view.result_url:
        lines.append(f"→ {view.result_url}")
    if view.remix_of_url:
        lines.append(t("result.remix_of", locale, link=view.remix_of_url))
    embed = discord.Embed(title=truncate(view.prompt, 240), description="\n".join(lines), colour=colour)
    embed.add_field(name="Model", value=truncate(view.model_label, 100))
    embed.add_field(name="⏱", value=f"{view.seconds}s")
    embed.add_field(name="📐", value=view.size)
    embed.set_footer(
        text=f"{t('progress.elapsed', locale, elapsed=format_duration(view.elapsed))} · #{view.generation_id}"
    )
    requester = t("progress.requested_by", locale, user=f"<@{view.requester_id}>")
    view_obj = None
    if cancellable and not terminal:
        from bot.ui import JobControls

        view_obj = JobControls.for_progress(view.generation_id, locale)
    return MessagePayload(content=requester, embeds=[embed], view=view_obj)


@dataclass(frozen=True, slots=True)
class ResultInfo:
    generation_id: int
    prompt: str
    model_label: str
    seconds: int
    size: str
    requester_id: int
    elapsed: float
    video_bytes: int
    attached: bool
    video_url: str | None = None
    thumbnail_url: str | None = None
    upload_limit: int | None = None
    remix_of_url: str | None = None
    combined_prompt: bool = False


def result_content(info: ResultInfo, locale: str) -> str:
    """The text of the result message; the video is attached or linked beside it."""
    lines = [
        f"🎬 **{truncate(info.prompt, 600)}**",
        t(
            "result.details",
            locale,
            model=info.model_label,
            seconds=info.seconds,
            size=info.size,
            elapsed=format_duration(info.elapsed),
        ),
        t("result.requested_by", locale, user=f"<@{info.requester_id}>"),
    ]
    if info.remix_of_url:
        lines.append(t("result.remix_of", locale, link=info.remix_of_url))
    if info.combined_prompt:
        lines.append(t("result.combined_prompt", locale))
    if not info.attached:
        lines.append(
            t(
                "result.link_only",
                locale,
                size=format_bytes(info.video_bytes),
                limit=format_bytes(info.upload_limit or 0),
            )
        )
        if info.video_url:
            lines.append(f"<{info.video_url}>" if len(info.video_url) < 1200 else "")
        lines.append(t("result.link_expires", locale))
    return truncate_lines(lines, 2000)


def truncate_lines(lines: list[str], limit: int) -> str:
    text = "\n".join(line for line in lines if line)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def result_payload(info: ResultInfo, locale: str) -> MessagePayload:
    from bot.ui import JobControls

    embeds: list[discord.Embed] = []
    if not info.attached and info.thumbnail_url:
        embed = discord.Embed(colour=COLOR_DONE)
        embed.set_image(url=info.thumbnail_url)
        embeds.append(embed)
    link = info.video_url if not info.attached else None
    return MessagePayload(
        content=result_content(info, locale),
        embeds=embeds,
        view=JobControls.for_result(info.generation_id, locale, link=link),
    )


__all__ = [
    "JobView",
    "Phase",
    "ResultInfo",
    "failure_sentence",
    "format_bytes",
    "format_duration",
    "progress_bar",
    "progress_payload",
    "result_payload",
    "truncate",
]
