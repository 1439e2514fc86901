"""`sora-bot run` as a process: the Message Content intent refused, a real job, and `sora-bot invite`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlparse

import discord

from bot.permissions import REQUIRED_PERMISSIONS
from tests.discord_double import DiscordDouble
from tests.fixtures.discord import BotProcess


async def test_refused_intent_is_one_log_line_and_the_bot_keeps_working(
    bot_process: Callable[..., Awaitable[BotProcess]], discord_double: DiscordDouble
) -> None:
    discord_double.message_content_enabled = False  # the toggle is off in the Developer Portal
    process = await bot_process()
    await discord_double.wait_for(lambda: "logged in as" in process.output, timeout=30, what="the bot to log in")
    hints = [line for line in process.output.splitlines() if "Message Content Intent" in line]
    assert len(hints) == 1, process.output
    assert "Traceback" not in process.output
    session = discord_double.sessions[-1]
    assert not session.intents & (1 << 15)

    alice = discord_double.add_member(name="alice")
    await discord_double.slash("sora", user=alice, prompt="a paper boat")
    result = await discord_double.wait_for_message(
        predicate=lambda m: m.author.id == discord_double.bot_user.id and m.attachments, timeout=30
    )
    assert result.attachments[0].filename.endswith(".mp4")
    assert await process.stop() == 0, process.output
    assert discord_double.token not in process.output


def test_invite_prints_the_exact_permissions() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bot", "--env-file", "/nonexistent", "invite", "--client-id", "1234"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    url = urlparse(completed.stdout.strip())
    query = parse_qs(url.query)
    assert url.netloc == "discord.com"
    assert query["client_id"] == ["1234"]
    assert query["scope"] == ["bot applications.commands"]
    granted = discord.Permissions(int(query["permissions"][0]))
    assert granted == REQUIRED_PERMISSIONS
    assert granted.attach_files and granted.create_public_threads and granted.send_messages_in_threads
    assert not granted.administrator and not granted.manage_messages
