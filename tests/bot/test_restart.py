"""Restarts mid-job, end to end: formats with a task id resume polling and deliver exactly once; a chat stream
can't be picked up again, so its job is failed, refunded and the member told."""

from __future__ import annotations

import json

import pytest

from bot.fake_upstream import FakeUpstream
from bot.fake_upstream.chat import stats_of
from storage import Database, GenerationStatus
from tests.bot.flow import assert_nothing_leaked, ledger, next_result, results, settled, start, until
from tests.discord_double import DiscordDouble, Message
from tests.fixtures.discord import BotHarness

SLOW = "fake:steps=15 fake:interval=0.1"  # a second and a half upstream (real time): restarted mid-way
ENDLESS = "fake:steps=600 fake:interval=0.1"  # a job that would outlast the test
CREATE = {"videos": "/v1/videos", "task": "/sora/v1/video/create"}
POLL = {"videos": "/v1/videos/video_000001", "task": "/sora/v1/video/feed/task_000001"}


async def running_upstream(db: Database, generation_id: int) -> None:
    """Wait until the job has its upstream task id (and so is resumable)."""

    async def has_task() -> bool:
        generation = await db.get_generation(generation_id)
        return generation is not None and generation.task_id is not None

    await until(has_task, what=f"generation {generation_id} to have a task id")


def description(message: Message) -> str:
    return str(message.embeds[0].get("description", "")) if message.embeds else ""


@pytest.mark.parametrize("api_format", ["videos", "task"])
async def test_a_job_with_a_task_id_is_resumed_and_delivered_once(
    api_format: str, bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness, sora_api_format=api_format)
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, prompt=f"a lighthouse at dusk {SLOW}")
    await running_upstream(db, 1)
    polls_before = len(fake_upstream.state.requests_to(POLL[api_format], "GET"))

    await bot_harness.restart()
    result = await next_result(discord_double, 0)
    await settled(bot_harness, db)

    assert results(discord_double) == [result]  # delivered exactly once
    assert result.content.startswith("🎬 **a lighthouse at dusk") and result.attachments
    generation = await db.get_generation(1)
    assert generation.status == GenerationStatus.SUCCEEDED and generation.result_message_id == result.id
    assert await ledger(db) == ["charged"]  # charged once
    assert len(fake_upstream.state.requests_to(CREATE[api_format], "POST")) == 1  # never started twice
    assert len(fake_upstream.state.requests_to(POLL[api_format], "GET")) > polls_before  # polled after the restart

    # The old progress message was an interaction response (only its token may edit it): the resumed job
    # continues in a new message that replies to it, and ends by linking the video.
    old = handle.original
    (continued,) = [m for m in discord_double.messages() if m.reference is old]
    assert continued.author.id == discord_double.bot_user.id and continued.content == f"Requested by <@{alice.id}>"
    assert "Your video is ready" in description(continued) and result.jump_url in description(continued)
    assert continued.components == []
    assert_nothing_leaked(discord_double)


async def test_a_remix_in_a_thread_is_resumed_in_its_own_progress_message(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness, sora_api_format="videos")
    alice = discord_double.add_member(name="alice")
    thread = discord_double.add_thread(name="ideas", owner=alice)
    await discord_double.slash("sora", user=alice, channel=thread, prompt="a lighthouse at dusk")
    root = await next_result(discord_double, 0, thread)
    await settled(bot_harness, db)
    reply = await discord_double.reply(root, f"now in a storm {SLOW}", user=alice, ping=False)
    progress = await discord_double.wait_for_message(thread, lambda m: m.reference is reply)
    await running_upstream(db, 2)

    await bot_harness.restart()
    remix = await next_result(discord_double, root.id, thread)
    await settled(bot_harness, db, jobs=2)

    # A progress message the bot posted itself is edited in place: no second progress message, one result.
    assert [m for m in discord_double.messages(thread) if m.reference is reply] == [progress]
    assert "Your video is ready" in description(progress) and remix.jump_url in description(progress)
    assert results(discord_double, thread) == [root, remix]
    assert fake_upstream.state.requests_to("/v1/videos/video_000001/remix", "POST")[0].json == {
        "prompt": f"now in a storm {SLOW}"
    }
    assert await ledger(db) == ["charged", "charged"]


async def test_a_chat_stream_cut_by_a_restart_is_refunded_and_the_member_told(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness)  # chat format
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, prompt=f"a lighthouse at dusk {ENDLESS}")
    await running_upstream(db, 1)  # the gateway named its task in the stream, but a stream can't be resumed

    await bot_harness.restart()
    notice = await discord_double.wait_for_message(predicate=lambda m: "restarted" in m.content)
    await settled(bot_harness, db)

    assert notice.content == (
        f"<@{alice.id}> **a lighthouse at dusk {ENDLESS}** — "
        "The bot restarted and this job couldn't be picked up again. Your credit was refunded."
    )
    assert notice.mentions == [alice.user]  # the member is pinged, nobody else
    assert notice.reference is handle.original  # under the job's own progress message
    generation = await db.get_generation(1)
    assert generation.status == GenerationStatus.FAILED and generation.error_kind == "restart"
    assert await ledger(db) == ["refunded"]
    assert results(discord_double) == []
    assert len(fake_upstream.state.requests_to("/v1/chat/completions")) == 1  # not sent again (a second bill)
    await until(lambda: stats_of(fake_upstream.app).active == 0, what="the old stream to be closed")
    assert_nothing_leaked(discord_double)


async def test_a_job_still_waiting_for_a_slot_is_run_after_the_restart_and_the_running_one_resumed(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness, sora_api_format="videos", sora_max_concurrent_jobs=1)
    alice = discord_double.add_member(name="alice")
    bob = discord_double.add_member(name="bob")
    await discord_double.slash("sora", user=alice, prompt=f"a lighthouse at dusk {SLOW}")
    await running_upstream(db, 1)
    waiting = await discord_double.slash("sora", user=bob, prompt="a harbour at dawn")
    await waiting.wait_original(lambda m: "Waiting for a free slot" in json.dumps(m.embeds))

    await bot_harness.restart()
    await settled(bot_harness, db, jobs=2, timeout=20)

    # Bob's job never reached the gateway, so it is simply run now: nobody loses a video to a restart.
    delivered = results(discord_double)
    assert sorted(m.content.split("**")[1] for m in delivered) == ["a harbour at dawn", f"a lighthouse at dusk {SLOW}"]
    assert [g.status for g in (await db.get_generation(1), await db.get_generation(2))] == [
        GenerationStatus.SUCCEEDED,
        GenerationStatus.SUCCEEDED,
    ]
    assert await ledger(db) == ["charged", "charged"]
    creates = fake_upstream.state.requests_to("/v1/videos", "POST")
    assert len(creates) == 2  # alice's job once (resumed, not created again), bob's once
    assert not [m for m in discord_double.messages() if "restarted" in m.content]


async def test_jobs_accepted_before_ready_are_not_taken_for_leftovers(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    bot = await start(bot_harness, sora_api_format="videos")
    alice = discord_double.add_member(name="alice")
    await discord_double.slash("sora", user=alice, prompt=f"a lighthouse at dusk {SLOW}")
    await running_upstream(db, 1)
    # The restart clean-up runs while this process's own job is in flight (as when a request beats on_ready).
    await bot.jobs.keeper.tick()
    result = await next_result(discord_double, 0)
    await settled(bot_harness, db)

    assert results(discord_double) == [result]  # not resumed a second time
    generation = await db.get_generation(1)
    assert generation is not None and generation.status == GenerationStatus.SUCCEEDED
    assert await ledger(db) == ["charged"]  # not refunded as a leftover
