"""Member-facing text of `/sora-quota` and `/sora-admin`, keyed and formattable, in English and Simplified
Chinese. (A later change folds these into `bot.i18n`'s catalogue; keep keys stable.)"""

from __future__ import annotations

import logging
from typing import Any

from bot.i18n import DEFAULT_LOCALE

log = logging.getLogger(__name__)

EN: dict[str, str] = {
    # shared words
    "unlimited": "unlimited",
    "none": "none",
    "yes": "yes",
    "no": "no",
    "credits.one": "{n} credit",
    "credits.other": "{n} credits",
    "more": "… and {n} more",
    "period.daily": "day (resets at {hour:02d}:00 UTC)",
    "period.rolling": "rolling 24 hours",
    "source.default": "the server default",
    "source.role": "your role {role}",
    "source.override": "set for you by an admin",
    "source.exempt": "none — admins are exempt here",
    # /sora-quota
    "quota.title": "Your video credits",
    "quota.field.credits": "Credits",
    "quota.field.limit": "Your limit comes from",
    "quota.field.resets": "Resets",
    "quota.field.jobs": "Jobs running",
    "quota.field.budget": "Server budget",
    "quota.credits": "**{used}** of **{limit}** used · **{left}** left",
    "quota.credits_unlimited": "**{used}** used · no limit",
    "quota.in_flight": "{n} of them held for videos in progress",
    "quota.resets.daily": "every day at {hour:02d}:00 UTC — next {when}",
    "quota.resets.rolling": "rolling 24 h window — credits free up {when}",
    "quota.resets.rolling_idle": "rolling 24 h window — nothing counted right now",
    "quota.jobs": "{running} of {max} (you)",
    "quota.jobs_unlimited": "{running} (no personal limit)",
    "quota.jobs_guild": "{running} of {max} (server)",
    "quota.budget": "{used} of {limit} used · {left} left",
    "quota.banned": "You're banned from making videos in this server{reason}.",
    # /sora-admin: access
    "admin.not_admin": "Only members with the **Manage Server** permission can use /sora-admin.",
    "admin.conflict": "Give either a number of credits or `unlimited`, not both.",
    # quota default|role|member|budget
    "admin.default.set": "Members now get {credits} per {period}.",
    "admin.default.show": "Members get {credits} per {period}.",
    "admin.role.set": "{role} now gets {credits} per period. A member gets the most generous of their roles.",
    "admin.role.show": "{role} gets {credits} per period.",
    "admin.role.cleared": "{role} no longer has an allowance of its own.",
    "admin.role.not_set": "{role} has no allowance of its own.",
    "admin.member.set": "{member} now gets {credits} per period, whatever their roles.",
    "admin.member.show": "{member} gets {credits} per period (set for them).",
    "admin.member.cleared": "{member} no longer has an allowance of their own; their roles or the default apply.",
    "admin.member.not_set": "{member} has no allowance of their own.",
    "admin.budget.set": "The server budget is now {credits} per {period}.",
    "admin.budget.off": "The server has no budget now: only member allowances apply.",
    "admin.budget.show": "The server budget is {credits} per {period}; {used} used so far.",
    "admin.budget.show_off": "The server has no budget: only member allowances apply.",
    # quota period|concurrency|reset|policy
    "admin.period.daily": "Credits now reset every day at {hour:02d}:00 UTC (next {when}).",
    "admin.period.rolling": "Credits now count over a rolling 24-hour window.",
    "admin.concurrency": "Each member can run {member} video(s) at a time; the server {guild}.",
    "admin.concurrency.guild": "at most {n} at a time",
    "admin.concurrency.guild_none": "has no overall limit",
    "admin.concurrency.conflict": "Give either a server limit or `no_server_limit`, not both.",
    "admin.reset.member": "{member}'s usage for this period was reset.",
    "admin.reset.guild": "Everyone's usage and the server budget for this period were reset.",
    "admin.policy": "Admins exempt from member limits: **{exempt}**. Moderation rejections are **{moderation}**.",
    "moderation.charge": "charged",
    "moderation.refund": "refunded",
    # channels
    "admin.channels.allowed": "/sora now works in {channel}. Allowed: {channels}.",
    "admin.channels.already": "{channel} is already allowed. Allowed: {channels}.",
    "admin.channels.removed": "{channel} is off the list. Allowed: {channels}.",
    "admin.channels.removed_empty": "{channel} is off the list, which is now empty: /sora works in every channel.",
    "admin.channels.not_listed": "{channel} wasn't on the list.",
    "admin.channels.list": "/sora works only in: {channels}",
    "admin.channels.list_empty": "/sora works in every channel (no allow-list).",
    # bans
    "admin.ban.done": "{member} can no longer make videos here{reason}.",
    "admin.ban.updated": "{member} was already banned; the reason is now updated{reason}.",
    "admin.unban.done": "{member} can make videos again.",
    "admin.unban.not_banned": "{member} isn't banned.",
    "admin.bans.title": "Banned from /sora",
    "admin.bans.empty": "Nobody is banned from /sora here.",
    "admin.bans.line": "{member} — {reason} ({when})",
    "admin.bans.no_reason": "no reason given",
    # usage
    "usage.title": "Usage — {period}",
    "usage.period.current": "this period",
    "usage.period.previous": "the previous period",
    "usage.period.7d": "the last 7 days",
    "usage.period.30d": "the last 30 days",
    "usage.period.all": "all time",
    "usage.field.totals": "Totals",
    "usage.field.top": "Top members",
    "usage.field.models": "Per model",
    "usage.field.failures": "Failures and refunds",
    "usage.totals": (
        "{jobs} videos: {succeeded} made, {failed} failed, {cancelled} cancelled, {unfinished} in progress\n"
        "{charged} credits charged · {reserved} held · {refunded} refunded"
    ),
    "usage.line": "{name}: {credits} ({jobs} videos)",
    "usage.failure": "{kind}: {count}",
    "usage.refunds": "{refunds} refunds, {refunded} credits back",
    "usage.nothing": "Nothing yet.",
    "usage.since": "Since {when}",
    # settings
    "settings.title": "sora-bot settings",
    "settings.field.default": "Default allowance",
    "settings.field.roles": "Role allowances",
    "settings.field.members": "Member allowances",
    "settings.field.budget": "Server budget",
    "settings.field.period": "Period",
    "settings.field.concurrency": "Concurrent videos",
    "settings.field.policy": "Policy",
    "settings.field.channels": "Allowed channels",
    "settings.field.bans": "Bans",
    "settings.per_period": "{credits} per period",
    "settings.concurrency": "{member} per member · {guild} per server",
    "settings.channels_all": "every channel",
    "settings.bans": "{n} banned (see /sora-admin bans)",
    "settings.line": "{who}: {credits}",
}

ZH_CN: dict[str, str] = {
    "unlimited": "无限",
    "none": "无",
    "yes": "是",
    "no": "否",
    "credits.one": "{n} 点额度",
    "credits.other": "{n} 点额度",
    "more": "…… 另有 {n} 项",
    "period.daily": "天(每天 UTC {hour:02d}:00 重置)",
    "period.rolling": "滚动 24 小时",
    "source.default": "服务器默认值",
    "source.role": "你的身份组 {role}",
    "source.override": "管理员为你单独设置",
    "source.exempt": "无 — 本服务器的管理员不受限制",
    "quota.title": "你的视频额度",
    "quota.field.credits": "额度",
    "quota.field.limit": "你的上限来自",
    "quota.field.resets": "重置",
    "quota.field.jobs": "进行中的任务",
    "quota.field.budget": "服务器预算",
    "quota.credits": "已用 **{used}** / **{limit}** · 剩余 **{left}**",
    "quota.credits_unlimited": "已用 **{used}** · 无上限",
    "quota.in_flight": "其中 {n} 点为进行中的视频预留",
    "quota.resets.daily": "每天 UTC {hour:02d}:00 — 下次 {when}",
    "quota.resets.rolling": "滚动 24 小时窗口 — {when} 释放额度",
    "quota.resets.rolling_idle": "滚动 24 小时窗口 — 目前没有计入的用量",
    "quota.jobs": "{running} / {max}(你)",
    "quota.jobs_unlimited": "{running}(无个人上限)",
    "quota.jobs_guild": "{running} / {max}(服务器)",
    "quota.budget": "已用 {used} / {limit} · 剩余 {left}",
    "quota.banned": "你已被禁止在本服务器生成视频{reason}。",
    "admin.not_admin": "只有拥有 **管理服务器** 权限的成员才能使用 /sora-admin。",
    "admin.conflict": "请给出额度数量或 `unlimited`,不要同时给出。",
    "admin.default.set": "成员现在每{period}获得 {credits}。",
    "admin.default.show": "成员每{period}获得 {credits}。",
    "admin.role.set": "{role} 现在每个周期获得 {credits}。成员按其身份组中最宽松的额度计算。",
    "admin.role.show": "{role} 每个周期获得 {credits}。",
    "admin.role.cleared": "{role} 不再有单独的额度。",
    "admin.role.not_set": "{role} 没有单独的额度。",
    "admin.member.set": "{member} 现在每个周期获得 {credits},不受身份组影响。",
    "admin.member.show": "{member} 每个周期获得 {credits}(单独设置)。",
    "admin.member.cleared": "{member} 不再有单独的额度,按身份组或默认值计算。",
    "admin.member.not_set": "{member} 没有单独的额度。",
    "admin.budget.set": "服务器预算现在为每{period} {credits}。",
    "admin.budget.off": "服务器现在没有预算,只按成员额度限制。",
    "admin.budget.show": "服务器预算为每{period} {credits},目前已用 {used}。",
    "admin.budget.show_off": "服务器没有预算,只按成员额度限制。",
    "admin.period.daily": "额度现在每天 UTC {hour:02d}:00 重置(下次 {when})。",
    "admin.period.rolling": "额度现在按滚动 24 小时窗口计算。",
    "admin.concurrency": "每位成员最多同时生成 {member} 个视频;服务器{guild}。",
    "admin.concurrency.guild": "最多同时 {n} 个",
    "admin.concurrency.guild_none": "没有总数限制",
    "admin.concurrency.conflict": "请给出服务器上限或 `no_server_limit`,不要同时给出。",
    "admin.reset.member": "{member} 本周期的用量已重置。",
    "admin.reset.guild": "所有人本周期的用量和服务器预算已重置。",
    "admin.policy": "管理员不受成员限制:**{exempt}**。内容审核拒绝的请求:**{moderation}**。",
    "moderation.charge": "扣除额度",
    "moderation.refund": "退还额度",
    "admin.channels.allowed": "/sora 现在可以在 {channel} 使用。允许的频道:{channels}。",
    "admin.channels.already": "{channel} 已在允许列表中。允许的频道:{channels}。",
    "admin.channels.removed": "{channel} 已移出列表。允许的频道:{channels}。",
    "admin.channels.removed_empty": "{channel} 已移出列表,列表现已为空:/sora 可以在所有频道使用。",
    "admin.channels.not_listed": "{channel} 不在列表中。",
    "admin.channels.list": "/sora 只能在以下频道使用:{channels}",
    "admin.channels.list_empty": "/sora 可以在所有频道使用(没有允许列表)。",
    "admin.ban.done": "{member} 不能再在本服务器生成视频{reason}。",
    "admin.ban.updated": "{member} 已被禁止,原因已更新{reason}。",
    "admin.unban.done": "{member} 可以重新生成视频了。",
    "admin.unban.not_banned": "{member} 没有被禁止。",
    "admin.bans.title": "被禁止使用 /sora 的成员",
    "admin.bans.empty": "本服务器没有人被禁止使用 /sora。",
    "admin.bans.line": "{member} — {reason}({when})",
    "admin.bans.no_reason": "未说明原因",
    "usage.title": "用量 — {period}",
    "usage.period.current": "本周期",
    "usage.period.previous": "上一周期",
    "usage.period.7d": "最近 7 天",
    "usage.period.30d": "最近 30 天",
    "usage.period.all": "全部",
    "usage.field.totals": "总计",
    "usage.field.top": "用量最多的成员",
    "usage.field.models": "按模型",
    "usage.field.failures": "失败与退还",
    "usage.totals": (
        "{jobs} 个视频:成功 {succeeded},失败 {failed},取消 {cancelled},进行中 {unfinished}\n"
        "扣除 {charged} 点 · 预留 {reserved} 点 · 退还 {refunded} 点"
    ),
    "usage.line": "{name}:{credits}({jobs} 个视频)",
    "usage.failure": "{kind}:{count}",
    "usage.refunds": "退还 {refunds} 次,共 {refunded} 点",
    "usage.nothing": "暂无。",
    "usage.since": "自 {when} 起",
    "settings.title": "sora-bot 设置",
    "settings.field.default": "默认额度",
    "settings.field.roles": "身份组额度",
    "settings.field.members": "成员额度",
    "settings.field.budget": "服务器预算",
    "settings.field.period": "周期",
    "settings.field.concurrency": "同时生成的视频",
    "settings.field.policy": "规则",
    "settings.field.channels": "允许的频道",
    "settings.field.bans": "禁止名单",
    "settings.per_period": "每周期 {credits}",
    "settings.concurrency": "每位成员 {member} 个 · 服务器 {guild} 个",
    "settings.channels_all": "所有频道",
    "settings.bans": "{n} 人被禁止(见 /sora-admin bans)",
    "settings.line": "{who}:{credits}",
}

CATALOGUE: dict[str, dict[str, str]] = {"en": EN, "zh-CN": ZH_CN}


def text(key: str, locale: str | None = None, /, **values: Any) -> str:
    """The text for `key` in `locale` (English when missing), formatted with `values`."""
    template = CATALOGUE.get(locale or DEFAULT_LOCALE, EN).get(key) or EN.get(key)
    if template is None:
        log.error("missing text key %r", key)
        return key
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        log.error("text key %r is missing a value (%s)", key, ", ".join(values))
        return template


def credits(n: int | None, locale: str | None) -> str:
    """ "3 credits", "1 credit", or "unlimited"."""
    if n is None:
        return text("unlimited", locale)
    return text("credits.one" if n == 1 else "credits.other", locale, n=n)


def timestamp(epoch: float, style: str = "f") -> str:
    """A Discord timestamp: every member sees it in their own time zone and language."""
    return f"<t:{int(epoch)}:{style}>"


def when(epoch: float) -> str:
    """ "Thursday 00:00 (in 3 hours)", rendered by Discord for each reader."""
    return f"{timestamp(epoch, 'f')} ({timestamp(epoch, 'R')})"


def listing(lines: list[str], locale: str | None, *, limit: int = 1000) -> str:
    """Lines joined for an embed field (≤1024 chars), with "… and N more" when they don't fit."""
    out: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        rest = len(lines) - index
        tail = len(text("more", locale, n=rest)) + 1
        if used + len(line) + 1 + tail > limit:
            out.append(text("more", locale, n=rest))
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out) or text("none", locale)


__all__ = ["CATALOGUE", "EN", "ZH_CN", "credits", "listing", "text", "timestamp", "when"]
