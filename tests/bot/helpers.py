"""Shared pieces of the end-to-end tests: the real bot ↔ Discord double ↔ fake gateway ↔ SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.client import INITIAL_EXTENSIONS, SoraBot
from tests.discord_double import DiscordDouble, Message
from tests.fixtures.discord import BotHarness

ASSETS = Path(__file__).resolve().parents[2] / "bot" / "fake_upstream" / "assets"
MP4 = (ASSETS / "sample.mp4").read_bytes()
PNG = (ASSETS / "thumb.png").read_bytes()

FAST = {"sora_edit_interval": 0.2, "sora_poll_interval": 0.02}


async def start_bot(bot_harness: BotHarness, **overrides: Any) -> SoraBot:
    return await bot_harness.start(extensions=INITIAL_EXTENSIONS, settings_overrides={**FAST, **overrides})


def bot_messages(double: DiscordDouble, channel: Any = None) -> list[Message]:
    return [m for m in double.messages(channel) if m.author.id == double.bot_user.id and not m.ephemeral]


async def wait_result(double: DiscordDouble, channel: Any = None, timeout: float = 10.0) -> Message:  # noqa: ASYNC109
    """The bot's result message: a message carrying the video attachment or the remix buttons."""
    return await double.wait_for_message(
        channel,
        predicate=lambda m: m.author.id == double.bot_user.id and "sora:remix:" in str(m.components),
        timeout=timeout,
    )


async def ledger_states(db: Any) -> list[str]:
    rows = await db._fetchall("SELECT state FROM ledger ORDER BY id")
    return [row["state"] for row in rows]


async def wait_ledger(db: Any, expected: list[str], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait until the ledger reads `expected` (settling happens just after the result is posted)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (states := await ledger_states(db)) != expected:
        if loop.time() > deadline:
            raise AssertionError(f"ledger is {states}, expected {expected}")
        await asyncio.sleep(0.02)
