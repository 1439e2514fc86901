"""Helpers for the end-to-end job tests (remix, restart, cancel, failures): start the bot with short rate-limit
windows on both sides, wait until every job has settled, read the ledger, and rebuild what the fake gateway
streamed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import make_mocked_request

from bot.client import INITIAL_EXTENSIONS, SoraBot
from bot.fake_upstream import FakeUpstream
from bot.fake_upstream.chat import job_script
from storage import Database
from tests.bot.helpers import FAST
from tests.discord_double import Channel, DiscordDouble, Message, MessageFlag
from tests.fixtures.discord import BotHarness
from tests.fixtures.upstream import TEST_API_KEY

# Discord's observed windows (5 per 5 s per channel, 5 per 2 s per webhook) would make a test that posts a
# dozen messages in one channel take half a minute. Both the double and the bot's scheduler use the same,
# shorter windows here; tests/bot/test_sora.py covers the real numbers.
CHANNEL_WINDOW = 0.5
WEBHOOK_WINDOW = 0.2
THREAD_WINDOW = 0.5


def tune_budgets(bot: SoraBot) -> None:
    bot.scheduler.channel_budget = (5, CHANNEL_WINDOW)
    bot.scheduler.webhook_budget = (5, WEBHOOK_WINDOW)
    bot.scheduler.thread_budget = (10, THREAD_WINDOW)


async def start(bot_harness: BotHarness, *, message_content: bool = True, **overrides: Any) -> SoraBot:
    """The real bot with every cog, fast polling, and short rate-limit windows on the bot and the double."""
    double = bot_harness.double
    double.set_rate_limit("message_create", window=CHANNEL_WINDOW)
    double.set_rate_limit("webhook", window=WEBHOOK_WINDOW)
    double.set_rate_limit("thread_create", window=THREAD_WINDOW)
    return await bot_harness.start(
        extensions=INITIAL_EXTENSIONS,
        settings_overrides={**FAST, **overrides},
        message_content=message_content,
        setup=tune_budgets,
    )


async def until(predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "") -> Any:  # noqa: ASYNC109
    """Poll an async or sync predicate until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


async def generation_count(db: Database) -> int:
    row = await db._fetchone("SELECT COUNT(*) AS n FROM generations")
    return int(row["n"]) if row is not None else 0


async def settled(
    bot_harness: BotHarness,
    db: Database,
    *,
    jobs: int = 1,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> None:
    """At least `jobs` generations exist and every one has finished: nothing in flight, nothing unfinished."""

    async def idle() -> bool:
        bot = bot_harness.bot
        if bot is None or bot.jobs.jobs or await generation_count(db) < jobs:
            return False
        return not await db.unfinished_generations()

    await until(idle, timeout=timeout, what="every job to settle")


async def ledger(db: Database) -> list[str]:
    """The ledger's states, oldest reservation first."""
    rows = await db._fetchall("SELECT state FROM ledger ORDER BY id")
    return [row["state"] for row in rows]


def is_result(double: DiscordDouble, message: Message) -> bool:
    return message.author.id == double.bot_user.id and "sora:remix:" in str(message.components)


def results(double: DiscordDouble, channel: Channel | None = None) -> list[Message]:
    """The bot's result messages in `channel` (the guild's default channel), oldest first."""
    return [m for m in double.messages(channel) if is_result(double, m)]


async def next_result(double: DiscordDouble, after: int, channel: Channel | None = None) -> Message:
    """The first result message newer than message id `after`: in `channel`, or in any channel or thread (a remix
    of a video that has a thread lands in that thread)."""
    if channel is not None:
        return await double.wait_for_message(channel, lambda m: m.id > after and is_result(double, m), timeout=10)

    def anywhere() -> Message | None:
        found = [
            m
            for c in list(double.world.channels.values())
            for m in double.world.channel_messages(c)
            if m.id > after and is_result(double, m)
        ]
        return min(found, key=lambda m: m.id) if found else None

    return await double.wait_for(anywhere, 10, what=f"a result newer than {after}")


def text_of(message: Message) -> str:
    """Everything a member sees of a message: content, embeds (title, description, fields, footer), buttons."""
    return "\n".join([message.content, json.dumps(message.embeds, ensure_ascii=False), json.dumps(message.components)])


def everything_said(double: DiscordDouble) -> str:
    """Every revision of every message the bot sent anywhere, ephemeral ones included."""
    parts: list[str] = []
    for message in double.world.messages.values():
        if message.author.id != double.bot_user.id:
            continue
        for revision in message.history:
            parts.append(revision.content)
            parts.append(json.dumps(revision.embeds, ensure_ascii=False))
    return "\n".join(parts)


def assert_nothing_leaked(double: DiscordDouble) -> None:
    said = everything_said(double)
    assert TEST_API_KEY not in said
    assert "Traceback" not in said and 'File "' not in said


def ephemeral(message: Message) -> bool:
    return bool(message.flags & MessageFlag.EPHEMERAL)


def streamed_text(fake_upstream: FakeUpstream, task_id: str) -> str:
    """The assistant text the fake chat gateway streamed for `task_id`, rebuilt from its own job script."""
    state = fake_upstream.state
    video = state.videos[task_id]
    request = make_mocked_request(
        "POST", "/v1/chat/completions", headers={"Host": f"{fake_upstream.host}:{fake_upstream.port}"}
    )
    script = job_script(request, state, video, video.prompt)
    return "".join(step.text for step in script if step.action == "content")
