"""Cancel (who may, what it stops, the refund) and every upstream fault mode, end to end: the progress message
ends with one short sentence, the credit comes back, and no traceback or secret ever reaches Discord."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.fake_upstream import FakeUpstream
from bot.fake_upstream.chat import stats_of
from storage import Database, GenerationStatus
from tests.bot.flow import (
    assert_nothing_leaked,
    ephemeral,
    ledger,
    results,
    settled,
    start,
    until,
)
from tests.discord_double import DiscordDouble, InteractionHandle, Message, Permission
from tests.fixtures.discord import BotHarness

LONG = "fake:steps=200 fake:interval=0.05"  # ten seconds upstream: long enough to be cancelled mid-way
REFUNDED = "Your credit was refunded."


def description(message: Message) -> str:
    return str(message.embeds[0].get("description", "")) if message.embeds else ""


async def running(handle: InteractionHandle, db: Database, generation_id: int = 1) -> Message:
    """The job's progress message once it shows the Cancel button and the gateway has its task."""
    progress = await handle.wait_original(lambda m: f"sora:cancel:{generation_id}" in json.dumps(m.components))

    async def has_task() -> bool:
        generation = await db.get_generation(generation_id)
        return generation is not None and generation.task_id is not None

    await until(has_task, what="the job to reach the gateway")
    return progress


async def final_state(handle: InteractionHandle) -> Message:
    return await handle.wait_original(lambda m: m.components == [] and "Generating" not in description(m))


# --- cancel -----------------------------------------------------------------------------------------------------


async def test_the_requester_cancels_a_videos_job_upstream_and_is_refunded(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness, sora_api_format="videos")
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, prompt=f"a lighthouse at dusk {LONG}")
    progress = await running(handle, db)

    press = await discord_double.click(progress, "sora:cancel:1", user=alice)
    assert await press.wait_response() == 6  # acknowledged silently; the progress message says the rest
    final = await final_state(handle)
    await settled(bot_harness, db)

    assert description(final) == f"**Cancelled by <@{alice.id}>.**\n{REFUNDED}"
    assert [r.path for r in fake_upstream.state.requests if r.method == "DELETE"] == ["/v1/videos/video_000001"]
    assert fake_upstream.state.videos["video_000001"].cancelled
    assert (await db.get_generation(1)).status == GenerationStatus.CANCELLED
    assert await ledger(db) == ["refunded"]
    assert results(discord_double) == []


async def test_cancelling_a_chat_job_hangs_up_the_stream(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness)  # chat: no cancel call exists, closing the stream is all there is
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, prompt=f"a lighthouse at dusk {LONG}")
    progress = await running(handle, db)
    assert stats_of(fake_upstream.app).active == 1

    await discord_double.click(progress, "sora:cancel:1", user=alice)
    final = await final_state(handle)
    await settled(bot_harness, db)

    assert description(final) == f"**Cancelled by <@{alice.id}>.**\n{REFUNDED}"
    await until(lambda: stats_of(fake_upstream.app).active == 0, what="the stream to be closed")
    assert stats_of(fake_upstream.app).disconnected == 1
    assert [r.method for r in fake_upstream.state.requests] == ["POST"]
    assert await ledger(db) == ["refunded"]


async def test_only_the_requester_or_an_admin_may_cancel(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness, sora_api_format="videos")
    alice = discord_double.add_member(name="alice")
    bob = discord_double.add_member(name="bob")
    moderator = discord_double.add_member(name="moderator", permissions=Permission.MANAGE_GUILD)
    handle = await discord_double.slash("sora", user=alice, prompt=f"a lighthouse at dusk {LONG}")
    progress = await running(handle, db)

    refused = await discord_double.click(progress, "sora:cancel:1", user=bob)
    answer = await refused.wait_original()
    assert ephemeral(answer) and answer.content == f"Only <@{alice.id}> or a server admin can do that."
    assert bot_harness.bot is not None and 1 in bot_harness.bot.jobs.jobs  # still running
    assert not any(r.method == "DELETE" for r in fake_upstream.state.requests)

    await discord_double.click(progress, "sora:cancel:1", user=moderator)
    final = await final_state(handle)
    await settled(bot_harness, db)
    assert description(final) == f"**Cancelled by <@{moderator.id}>.**\n{REFUNDED}"
    assert final.mentions == []  # names, never pings
    assert await ledger(db) == ["refunded"]


async def test_a_cancel_button_left_from_before_a_restart_answers_briefly(
    bot_harness: BotHarness, discord_double: DiscordDouble, db: Database
) -> None:
    await start(bot_harness)  # a chat job can't survive the restart
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, prompt=f"a lighthouse at dusk {LONG}")
    progress = await running(handle, db)
    await bot_harness.restart()
    await settled(bot_harness, db)

    press = await discord_double.click(progress, "sora:cancel:1", user=alice)
    answer = await press.wait_original()
    assert ephemeral(answer) and answer.content == "That job has already finished."
    assert await ledger(db) == ["refunded"]


# --- upstream faults -----------------------------------------------------------------------------------------

FAULTS: list[Any] = [
    ("chat", "401", "auth", "The gateway refused our API key — an admin needs to check the bot's configuration."),
    ("chat", "429", "rate_limited", "The gateway is busy right now. Please try again in a few minutes."),
    ("chat", "500", "upstream", "The gateway failed: The server had an error while processing your request"),
    ("chat", "moderation", "moderation", "The gateway's content policy rejected this prompt."),
    ("chat", "stall", "timeout", "The gateway took too long and the job was stopped."),
    ("chat", "drop", "upstream", "The gateway failed: the gateway dropped the connection mid-stream"),
    ("chat", "html", "upstream", "The gateway's link didn't contain a video."),
    ("videos", "401", "auth", "The gateway refused our API key — an admin needs to check the bot's configuration."),
    ("videos", "429", "rate_limited", "The gateway is busy right now. Please try again in a few minutes."),
    ("videos", "500", "upstream", "The gateway failed: The server had an error while processing your request"),
    ("videos", "moderation", "moderation", "The gateway's content policy rejected this prompt."),
    ("videos", "stall", "timeout", "The gateway took too long and the job was stopped."),
    ("videos", "html", "upstream", "The gateway's link didn't contain a video."),
    ("task", "moderation", "moderation", "The gateway's content policy rejected this prompt."),
    ("task", "stall", "timeout", "The gateway took too long and the job was stopped."),
]


@pytest.mark.parametrize(
    ("api_format", "fault", "kind", "sentence"), FAULTS, ids=[f"{f[0]}-{f[1]}" for f in FAULTS]
)
async def test_an_upstream_fault_ends_in_one_sentence_and_a_refund(
    api_format: str,
    fault: str,
    kind: str,
    sentence: str,
    bot_harness: BotHarness,
    discord_double: DiscordDouble,
    fake_upstream: FakeUpstream,
    db: Database,
) -> None:
    await start(
        bot_harness,
        sora_api_format=api_format,
        sora_stall_timeout=0.3,  # chat: silence for this long is a stall
        sora_job_timeout=1.0 if fault == "stall" else 60.0,  # polled formats: a job this long is given up
        sora_retry_attempts=1,
    )
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, prompt=f"a lighthouse at dusk fake:{fault}")
    final = await final_state(handle)
    await settled(bot_harness, db)

    assert description(final) == f"**{sentence}**\n{REFUNDED}"
    assert final.content == f"Requested by <@{alice.id}>"
    generation = await db.get_generation(1)
    assert generation.status == GenerationStatus.FAILED and generation.error_kind == kind
    assert await ledger(db) == ["refunded"]
    assert results(discord_double) == []
    assert_nothing_leaked(discord_double)


async def test_a_poll_cut_mid_answer_is_retried_and_the_video_still_arrives(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness, sora_api_format="videos")
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, prompt="a lighthouse at dusk fake:drop")
    final = await handle.wait_original(lambda m: "Your video is ready" in description(m))
    await settled(bot_harness, db)
    (result,) = results(discord_double)
    assert result.jump_url in description(final) and result.attachments
    assert await ledger(db) == ["charged"]
