"""What progress and result messages look like: pure functions from a job's state + locale to a payload.

Everything here fits Discord's limits by construction (content ≤ 2000, embed title ≤ 256, description ≤ 4096,
field values ≤ 1024, footer ≤ 2048, whole embed ≤ 6000) and is easy to test without Discord.

Member text the bot reposts (prompts, remix changes, ban reasons, the gateway's words) goes through `literal()`, so
it renders exactly as typed: no markdown, no masked links, no mentions. Thread names, where Discord shows raw text,
go through `plain()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import discord

from bot.components import JobControls
from bot.i18n import t
from bot.streamer import MessagePayload
from bot.upstream.types import FailureKind

BAR_CELLS = 16
COLOR_RUNNING = discord.Colour.blurple()
COLOR_DONE = discord.Colour.green()
COLOR_FAILED = discord.Colour.red()
COLOR_CANCELLED = discord.Colour.dark_grey()

CONTENT_LIMIT = 2000
EMBED_TITLE_LIMIT = 256
EMBED_DESCRIPTION_LIMIT = 4096
EMBED_FIELD_LIMIT = 1024
EMBED_FOOTER_LIMIT = 2048
EMBED_TOTAL_LIMIT = 6000
THREAD_NAME_LIMIT = 100
RESULT_PROMPT_LIMIT = 600  # of the result message's 2000 characters
REASON_LIMIT = 300
LABEL_LIMIT = 100
ELLIPSIS = "…"

# Bidi embeddings, overrides and isolates (they reorder the text around them: a spoofing tool) and C0 controls.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
# Discord parses a bare URL as one link and no markdown inside it, so escaping there would only break the link.
# Unlike Discord's own rule, brackets end a URL here, so a masked link can never hide inside one.
_URL = re.compile(r"""(?:https?|steam)://[^\s<\[\]]+[^<.,:;"')\[\]\s]""")
_INLINE_MARKDOWN = re.compile(r"[\\*_~|`\[\]]")
_MENTION_OPENER = re.compile(r"<(?=[@#/])")  # <@user> <@!user> <@&role> <#channel> </command:id>
_MASS_MENTION = re.compile(r"@(?=everyone|here)")
_LINE_MARKER = re.compile(r"^([ \t]*)([#>+-])", re.MULTILINE)  # headers, -# subtext, quotes, bullets
_ORDERED_ITEM = re.compile(r"^([ \t]*\d+)\.(?=[ \t])", re.MULTILINE)
ZERO_WIDTH_SPACE = "\u200b"

_MASKED_LINK = re.compile(r"\[([^\]\n]*)\]\(\s*<?[^)\s]*>?\s*\)")
_COMMAND_MENTION = re.compile(r"</([^:<>]+):\d+>")
_ANGLE_MENTION = re.compile(r"<(@[!&]?|#)(\d+)>")
_CUSTOM_EMOJI = re.compile(r"<a?(:\w+:)\d+>")
_EMPHASIS = re.compile(r"\*+|`+|_{2,}|~{2,}|\|{2,}")
_BLOCK_MARKER = re.compile(r"^(?:#{1,3}|-#|>>>|>|[-+*]|\d+\.)\s+")
_BACKSLASH_ESCAPE = re.compile(r"\\([^\w\s])")
FULLWIDTH_AT = "\uff20"


def _normalise(text: str) -> str:
    return _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _escape_inline(segment: str) -> str:
    segment = _INLINE_MARKDOWN.sub(r"\\\g<0>", segment)
    segment = _MENTION_OPENER.sub(r"\\<", segment)
    return _MASS_MENTION.sub("@" + ZERO_WIDTH_SPACE, segment)


def cut(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, ending in "…" when shortened, never inside a backslash escape."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    head = text[: limit - len(ELLIPSIS)]
    while True:
        head = head.rstrip()
        backslashes = len(head) - len(head.rstrip("\\"))
        if backslashes % 2 == 0:
            return head + ELLIPSIS
        head = head[:-1]  # a lone trailing backslash would escape the ellipsis


def literal(text: str, limit: int | None = None, *, single_line: bool = False) -> str:
    """Member text escaped so Discord shows it exactly as typed, then shortened to `limit` characters.

    Markdown (bold, italics, strikethrough, spoilers, code, masked links, headers, `-#` subtext, quotes, lists)
    is escaped and mentions are broken visually (the bot also sends no allowed mentions); URLs stay links.
    `single_line` folds all whitespace into single spaces first, for titles and inline use.
    """
    text = _normalise(text)
    if single_line:
        text = " ".join(text.split())
    pieces: list[str] = []
    position = 0
    for url in _URL.finditer(text):
        pieces += [_escape_inline(text[position : url.start()]), url.group()]
        position = url.end()
    pieces.append(_escape_inline(text[position:]))
    escaped = _ORDERED_ITEM.sub(r"\1\\.", _LINE_MARKER.sub(r"\1\\\2", "".join(pieces)))
    return escaped if limit is None else cut(escaped, limit)


def plain(text: str, limit: int = THREAD_NAME_LIMIT) -> str:
    """Member text for places that show raw text (thread names): one line, no markdown, no mentions."""
    lines = []
    for line in _normalise(text).split("\n"):
        line = line.strip()
        while (stripped := _BLOCK_MARKER.sub("", line)) != line:
            line = stripped
        lines.append(line)
    text = " ".join(" ".join(lines).split())
    text = _MASKED_LINK.sub(r"\1", text)
    text = _COMMAND_MENTION.sub(r"/\1", text)
    text = _ANGLE_MENTION.sub(lambda match: match.group(1).replace("!", "") + match.group(2), text)
    text = _CUSTOM_EMOJI.sub(r"\1", text)
    text = _EMPHASIS.sub("", text)
    text = _BACKSLASH_ESCAPE.sub(r"\1", text)
    text = _MASS_MENTION.sub(FULLWIDTH_AT, text)
    text = " ".join(text.split())
    while (stripped := _BLOCK_MARKER.sub("", text)) != text:  # markers that only the steps above uncovered
        text = stripped
    return cut(text, limit)


def thread_name(prompt: str, locale: str) -> str:
    """The name of a result's remix thread (Discord: 1–100 characters of raw text)."""
    return plain(t("result.thread_name", locale, prompt=plain(prompt))) or "sora"


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
    """The bot's own text on one line, shortened to `limit` (member text goes through `literal` or `plain`)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def progress_bar(percent: float | None) -> str:
    if percent is None:
        return "▱" * BAR_CELLS
    filled = round(BAR_CELLS * max(0.0, min(100.0, percent)) / 100)
    return "▰" * filled + "▱" * (BAR_CELLS - filled) + f"  {percent:.0f}%"


def format_duration(seconds: float, locale: str | None = None) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return t("duration.seconds", locale, seconds=seconds)
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return t("duration.minutes", locale, minutes=minutes, seconds=seconds)
    hours, minutes = divmod(minutes, 60)
    return t("duration.hours", locale, hours=hours, minutes=minutes)


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
    # The gateway's words can quote the prompt back: shown as typed, like the prompt itself.
    reason_text = literal(reason or "", REASON_LIMIT, single_line=True) or "?"
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
    embed = discord.Embed(
        title=literal(view.prompt, EMBED_TITLE_LIMIT, single_line=True),
        description=cut("\n".join(lines), EMBED_DESCRIPTION_LIMIT),
        colour=colour,
    )
    embed.add_field(name=t("progress.model", locale), value=truncate(view.model_label, LABEL_LIMIT))
    embed.add_field(name="⏱", value=format_duration(view.seconds, locale))
    embed.add_field(name="📐", value=truncate(view.size, LABEL_LIMIT))
    elapsed = t("progress.elapsed", locale, elapsed=format_duration(view.elapsed, locale))
    embed.set_footer(text=cut(f"{elapsed} · #{view.generation_id}", EMBED_FOOTER_LIMIT))
    requester = t("progress.requested_by", locale, user=f"<@{view.requester_id}>")
    view_obj = None
    if cancellable and not terminal:
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
        t(
            "result.details",
            locale,
            model=truncate(info.model_label, LABEL_LIMIT),
            seconds=info.seconds,
            size=truncate(info.size, LABEL_LIMIT),
            elapsed=format_duration(info.elapsed, locale),
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
    details = "\n".join(line for line in lines if line)
    heading = "🎬 **{}**"
    # The prompt gets what the rest leaves, so the link and the notes are never the part cut off.
    room = min(RESULT_PROMPT_LIMIT, CONTENT_LIMIT - len(details) - len(heading.format("")) - 1)
    return cut(heading.format(literal(info.prompt, room, single_line=True)) + "\n" + details, CONTENT_LIMIT)


def result_payload(info: ResultInfo, locale: str) -> MessagePayload:
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
    "cut",
    "failure_sentence",
    "format_bytes",
    "format_duration",
    "literal",
    "plain",
    "progress_bar",
    "progress_payload",
    "result_payload",
    "thread_name",
    "truncate",
]
