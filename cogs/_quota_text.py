"""Helpers for the text of `/sora-quota` and `/sora-admin`. The sentences themselves live in `bot.i18n`'s one
catalogue (English and Simplified Chinese); `text` is `bot.i18n.t` under the name these cogs use."""

from __future__ import annotations

from bot.i18n import CATALOGUE, EN, ZH_CN
from bot.i18n import t as text


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
