"""Quota refusals read as one clear sentence."""

from __future__ import annotations

from bot.clock import FakeClock
from bot.quota_text import denial_sentence
from storage import DenyReason, QuotaDenied

CLOCK = FakeClock(start=1_800_000_000)


def test_each_refusal_names_what_to_do() -> None:
    later = CLOCK.time() + 3600
    cases = {
        QuotaDenied(DenyReason.BANNED, ban_reason="spam"): "not allowed to make videos in this server: spam",
        QuotaDenied(DenyReason.CHANNEL_NOT_ALLOWED, allowed_channel_ids=(5, 6)): "<#5>, <#6>",
        QuotaDenied(DenyReason.MEMBER_CONCURRENCY, running=1): "1 video(s) in progress",
        QuotaDenied(DenyReason.GUILD_CONCURRENCY, running=8): "8 videos in progress",
        QuotaDenied(DenyReason.GUILD_BUDGET, resets_at=later): f"<t:{int(later)}:R>",
        QuotaDenied(DenyReason.MEMBER_QUOTA, cost=1, used=7, limit=7, resets_at=later): "used 7 of your 7",
        QuotaDenied(DenyReason.MEMBER_QUOTA, cost=5, used=3, limit=7, resets_at=later): "costs 5 credits and you",
        QuotaDenied(DenyReason.MEMBER_QUOTA, cost=20, used=0, limit=7): "more than your whole allowance of 7",
    }
    for denied, expected in cases.items():
        sentence = denial_sentence(denied, "en", CLOCK)
        assert expected in sentence, (denied.reason, sentence)
        assert not sentence.endswith("—") and "at —" not in sentence
    assert "额度" in denial_sentence(QuotaDenied(DenyReason.MEMBER_QUOTA, cost=20, limit=7), "zh-CN", CLOCK)
