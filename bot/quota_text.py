"""Quota refusals as one short sentence in the member's language."""

from __future__ import annotations

from bot.clock import Clock
from bot.i18n import t
from bot.render import literal
from storage import DenyReason, QuotaDenied


def reset_phrase(resets_at: float | None, clock: Clock) -> str:
    """A Discord timestamp that every member sees in their own time zone: "at 00:00 (in 3 hours)"."""
    if resets_at is None:
        return "—"
    stamp = int(max(resets_at, clock.time()))
    return f"<t:{stamp}:t> (<t:{stamp}:R>)"


def denial_sentence(denied: QuotaDenied, locale: str, clock: Clock) -> str:
    reset = reset_phrase(denied.resets_at, clock)
    match denied.reason:
        case DenyReason.BANNED:
            # The admin's own words, reposted: shown as typed, never as markdown or mentions.
            reason = t("quota.reason", locale, reason=literal(denied.ban_reason)) if denied.ban_reason else ""
            return t("quota.denied_banned", locale, reason=reason)
        case DenyReason.CHANNEL_NOT_ALLOWED:
            channels = ", ".join(f"<#{channel_id}>" for channel_id in denied.allowed_channel_ids) or "—"
            return t("quota.channel_not_allowed", locale, channels=channels)
        case DenyReason.MEMBER_CONCURRENCY:
            return t("quota.concurrency_user", locale, running=denied.running)
        case DenyReason.GUILD_CONCURRENCY:
            return t("quota.concurrency_guild", locale, running=denied.running)
        case DenyReason.GUILD_BUDGET:
            return t("quota.budget_exhausted", locale, reset=reset)
        case DenyReason.MEMBER_QUOTA:
            limit = denied.limit or 0
            left = max(0, limit - denied.used)
            if denied.resets_at is None and denied.cost > limit:
                return t("quota.over_allowance", locale, cost=denied.cost, limit=limit)
            if left > 0:
                return t("quota.too_expensive", locale, cost=denied.cost, left=left, reset=reset)
            return t("quota.exhausted", locale, used=denied.used, limit=limit, reset=reset)
    return t("quota.exhausted", locale, used=denied.used, limit=denied.limit or 0, reset=reset)


__all__ = ["denial_sentence", "reset_phrase"]
