"""The one message catalogue: every member-facing string, in English and Simplified Chinese.

`t(key, locale, **values)` picks the member's language (falling back to the guild's, then English).
Command names and descriptions are localized through `CatalogueTranslator`, a discord.py `Translator`:
declare them as `locale_str("English text", key="catalogue.key")`.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

log = logging.getLogger(__name__)

DEFAULT_LOCALE = "en"

EN: dict[str, str] = {
    # commands
    "cmd.sora.description": "Generate a video from a prompt",
    "cmd.sora.prompt": "What the video should show",
    "cmd.sora.model": "Which video model to use",
    "cmd.sora.seconds": "Length of the video in seconds",
    "cmd.sora.size": "Size (WIDTHxHEIGHT) or orientation",
    "cmd.sora.image": "A reference image to animate",
    "cmd.sora_quota.description": "Show your video credits and limits",
    "cmd.sora_admin.description": "Manage sora-bot for this server",
    # validation
    "error.prompt_empty": "Please describe the video: the prompt is empty.",
    "error.prompt_too_long": "That prompt is {length} characters; the limit is {limit}.",
    "error.unknown_model": "There's no model called “{model}”. Available: {models}.",
    "error.seconds_not_allowed": "{model} makes videos of {allowed} seconds — not {seconds}.",
    "error.size_not_allowed": "{model} makes videos in {allowed} — not {size}.",
    "error.no_images": "{model} doesn't take reference images.",
    "error.too_many_images": "{model} takes at most {limit} reference image(s).",
    "error.not_an_image": "“{filename}” isn't a supported image (PNG, JPEG, WebP or GIF).",
    "error.image_too_big": "“{filename}” is {size} — images can be at most {limit}.",
    "error.image_unreadable": "I couldn't read “{filename}”. Please attach it again.",
    "error.guild_only": "Videos can only be made in a server.",
    "error.not_yours": "Only {owner} or a server admin can do that.",
    "error.no_permission": "I can't post here: I'm missing the {permissions} permission. Ask an admin to grant it.",
    "error.reply_not_video": "That message isn't one of my videos, so there's nothing to remix.",
    "error.reply_not_finished": "That video isn't finished, so it can't be remixed yet.",
    "error.generation_gone": "I can't find that video any more.",
    "error.reply_failed": "That video couldn't be made, so there's nothing to remix. Try /sora again.",
    "error.reply_to_result": "That's the progress message — reply to the video itself to remix it.",
    "error.reply_needs_ping": "I can only read replies with the reply ping on (@ ON). Please reply again.",
    "error.already_finished": "That job has already finished.",
    "error.internal": "Something went wrong on our side (reference {reference}). Your credit was refunded.",
    # progress
    "progress.waiting": "Waiting for a free slot — #{position} in line",
    "progress.starting": "Starting…",
    "progress.queued": "Queued at the gateway",
    "progress.queued_position": "Queued at the gateway — #{position}",
    "progress.running": "Generating",
    "progress.finishing": "Finishing — fetching the video",
    "progress.elapsed": "{elapsed} elapsed",
    "progress.requested_by": "Requested by {user}",
    "progress.moved": "This job continues in a new message below (Discord's 15-minute limit).",
    "progress.continued": "Continued from {link}",
    "button.cancel": "Cancel",
    "button.remix": "Remix",
    "button.reroll": "Re-roll",
    "button.open": "Open video",
    "modal.remix.title": "Remix this video",
    "modal.remix.label": "What should change?",
    "modal.remix.placeholder": "e.g. make it night time, add snow",
    # results
    "result.title": "Your video is ready",
    "result.details": "{model} · {seconds} s · {size} · took {elapsed}",
    "result.requested_by": "Requested by {user}",
    "result.link_only": "The video is {size}, over this server's {limit} upload limit, so here's a link instead.",
    "result.link_expires": "Links from the gateway may expire — download it soon.",
    "result.remix_of": "Remix of {link}",
    "result.combined_prompt": "This gateway can't remix, so I combined the earlier prompts into a new video.",
    "result.thread_name": "🎬 {prompt}",
    "result.thread_hint": "Reply to the video to remix it.",
    "result.reposted": "(The progress message was gone, so here's the result as a new message.)",
    # failures (each says what happened and whether the credit came back)
    "failed.title": "The video couldn't be made",
    "failed.moderation": "The gateway's content policy rejected this prompt.",
    "failed.bad_request": "The gateway refused the request: {reason}",
    "failed.auth": "The gateway refused our API key — an admin needs to check the bot's configuration.",
    "failed.rate_limited": "The gateway is busy right now. Please try again in a few minutes.",
    "failed.upstream": "The gateway failed: {reason}",
    "failed.timeout": "The gateway took too long and the job was stopped.",
    "failed.cancelled": "Cancelled by {user}.",
    "failed.not_a_video": "The gateway's link didn't contain a video.",
    "failed.restart": "The bot restarted and this job couldn't be picked up again.",
    "failed.refunded": "Your credit was refunded.",
    "failed.charged": "The credit was used.",
    # quota
    "quota.banned": "You're not allowed to make videos in this server{reason}.",
    "quota.channel_not_allowed": "Videos can only be made in {channels}.",
    "quota.exhausted": "You've used {used} of your {limit} credits. More at {reset}.",
    "quota.too_expensive": "This video costs {cost} credits and you have {left} left. More at {reset}.",
    "quota.over_allowance": "This video costs {cost} credits, more than your whole allowance of {limit}.",
    "quota.budget_exhausted": "This server has used its video budget for now. More at {reset}.",
    "quota.concurrency_user": "You already have {running} video(s) in progress — wait for one to finish.",
    "quota.concurrency_guild": "This server has {running} videos in progress, its limit. Try again shortly.",
    "quota.not_configured": "Video credits aren't set up here yet — ask an admin.",
}

ZH_CN: dict[str, str] = {
    "cmd.sora.description": "根据提示词生成视频",
    "cmd.sora.prompt": "视频要展示的内容",
    "cmd.sora.model": "使用哪个视频模型",
    "cmd.sora.seconds": "视频时长(秒)",
    "cmd.sora.size": "尺寸(宽x高)或方向",
    "cmd.sora.image": "作为参考的图片",
    "cmd.sora_quota.description": "查看你的视频额度和限制",
    "cmd.sora_admin.description": "管理本服务器的 sora-bot",
    "error.prompt_empty": "请描述视频内容:提示词为空。",
    "error.prompt_too_long": "提示词有 {length} 个字符,上限是 {limit}。",
    "error.unknown_model": "没有名为“{model}”的模型。可用:{models}。",
    "error.seconds_not_allowed": "{model} 支持的时长为 {allowed} 秒,不支持 {seconds} 秒。",
    "error.size_not_allowed": "{model} 支持的尺寸为 {allowed},不支持 {size}。",
    "error.no_images": "{model} 不支持参考图片。",
    "error.too_many_images": "{model} 最多支持 {limit} 张参考图片。",
    "error.not_an_image": "“{filename}”不是支持的图片格式(PNG、JPEG、WebP 或 GIF)。",
    "error.image_too_big": "“{filename}”大小为 {size},图片最大 {limit}。",
    "error.image_unreadable": "无法读取“{filename}”,请重新上传。",
    "error.guild_only": "只能在服务器中生成视频。",
    "error.not_yours": "只有 {owner} 或服务器管理员可以这样做。",
    "error.no_permission": "我无法在这里发消息:缺少“{permissions}”权限,请联系管理员。",
    "error.reply_not_video": "这条消息不是我生成的视频,无法二次创作。",
    "error.reply_not_finished": "这个视频还没有完成,暂时无法二次创作。",
    "error.generation_gone": "找不到这个视频了。",
    "error.reply_failed": "这个视频没有生成成功,无法二次创作,请重新使用 /sora。",
    "error.reply_to_result": "这是进度消息,请回复视频本身来二次创作。",
    "error.reply_needs_ping": "我只能读取开启了提及(@ 开启)的回复,请重新回复。",
    "error.already_finished": "这个任务已经结束了。",
    "error.internal": "我们这边出了问题(编号 {reference}),额度已退还。",
    "progress.waiting": "等待空闲名额 — 排第 {position} 位",
    "progress.starting": "正在开始…",
    "progress.queued": "已在服务端排队",
    "progress.queued_position": "已在服务端排队 — 第 {position} 位",
    "progress.running": "生成中",
    "progress.finishing": "即将完成 — 正在获取视频",
    "progress.elapsed": "已用时 {elapsed}",
    "progress.requested_by": "由 {user} 发起",
    "progress.moved": "由于 Discord 的 15 分钟限制,此任务的进度将在下方新消息中继续。",
    "progress.continued": "接续自 {link}",
    "button.cancel": "取消",
    "button.remix": "二次创作",
    "button.reroll": "重新生成",
    "button.open": "打开视频",
    "modal.remix.title": "二次创作这个视频",
    "modal.remix.label": "需要修改什么?",
    "modal.remix.placeholder": "例如:改成夜晚,加上雪花",
    "result.title": "视频已生成",
    "result.details": "{model} · {seconds} 秒 · {size} · 用时 {elapsed}",
    "result.requested_by": "由 {user} 发起",
    "result.link_only": "视频大小为 {size},超过本服务器 {limit} 的上传限制,因此改为提供链接。",
    "result.link_expires": "服务端链接可能会过期,请尽快下载。",
    "result.remix_of": "二次创作自 {link}",
    "result.combined_prompt": "该服务端不支持二次创作,已将之前的提示词合并生成新视频。",
    "result.thread_name": "🎬 {prompt}",
    "result.thread_hint": "回复视频即可进行二次创作。",
    "result.reposted": "(进度消息已不存在,结果以新消息发送。)",
    "failed.title": "视频生成失败",
    "failed.moderation": "提示词未通过服务端的内容审核。",
    "failed.bad_request": "服务端拒绝了请求:{reason}",
    "failed.auth": "服务端拒绝了 API 密钥,请管理员检查机器人配置。",
    "failed.rate_limited": "服务端当前繁忙,请几分钟后再试。",
    "failed.upstream": "服务端出错:{reason}",
    "failed.timeout": "服务端耗时过长,任务已停止。",
    "failed.cancelled": "已被 {user} 取消。",
    "failed.not_a_video": "服务端返回的链接不是视频。",
    "failed.restart": "机器人重启后无法继续此任务。",
    "failed.refunded": "额度已退还。",
    "failed.charged": "额度已扣除。",
    "quota.banned": "你已被禁止在本服务器生成视频{reason}。",
    "quota.channel_not_allowed": "只能在 {channels} 中生成视频。",
    "quota.exhausted": "你已用完 {used}/{limit} 点额度,{reset} 恢复。",
    "quota.too_expensive": "此视频需要 {cost} 点额度,你还剩 {left} 点,{reset} 恢复。",
    "quota.over_allowance": "此视频需要 {cost} 点额度,超过了你的全部额度 {limit} 点。",
    "quota.budget_exhausted": "本服务器的视频预算已用完,{reset} 恢复。",
    "quota.concurrency_user": "你已有 {running} 个视频在生成中,请等待完成。",
    "quota.concurrency_guild": "本服务器已有 {running} 个视频在生成中,已达上限,请稍后再试。",
    "quota.not_configured": "本服务器尚未设置视频额度,请联系管理员。",
}

CATALOGUE: dict[str, dict[str, str]] = {"en": EN, "zh-CN": ZH_CN}

_LOCALE_ALIASES = {"zh": "zh-CN", "zh-Hans": "zh-CN", "zh-SG": "zh-CN"}


def resolve_locale(*candidates: discord.Locale | str | None) -> str:
    """The first candidate we have a catalogue for (member's locale, then the guild's), else English."""
    for candidate in candidates:
        if candidate is None:
            continue
        code = candidate.value if isinstance(candidate, discord.Locale) else str(candidate)
        code = _LOCALE_ALIASES.get(code, code)
        if code in CATALOGUE:
            return code
        base = code.split("-")[0]
        if base in CATALOGUE:
            return base
    return DEFAULT_LOCALE


def interaction_locale(interaction: discord.Interaction[Any]) -> str:
    return resolve_locale(interaction.locale, interaction.guild_locale)


def t(key: str, locale: str | None = None, /, **values: Any) -> str:
    """The catalogue text for `key` in `locale` (English when missing), formatted with `values`."""
    table = CATALOGUE.get(locale or DEFAULT_LOCALE, EN)
    template = table.get(key) or EN.get(key)
    if template is None:
        log.error("missing catalogue key %r", key)
        return key
    try:
        return template.format(**values)
    except (KeyError, IndexError):
        log.error("catalogue key %r is missing a value (%s)", key, ", ".join(values))
        return template


class CatalogueTranslator(app_commands.Translator):
    """Localizes command names/descriptions declared as `locale_str(text, key=...)`."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        key = string.extras.get("key")
        if key is None:
            return None
        code = _LOCALE_ALIASES.get(locale.value, locale.value)
        table = CATALOGUE.get(code)
        if table is None or code == DEFAULT_LOCALE:
            return None
        return table.get(key)


def cmd(text: str, key: str) -> app_commands.locale_str:
    """A command-facing string with its catalogue key."""
    return app_commands.locale_str(text, key=key)


__all__ = ["CATALOGUE", "CatalogueTranslator", "cmd", "interaction_locale", "resolve_locale", "t"]
